"""Naive loop versions of the kernels, written to be read beside the notes' formulas.

Same names, signatures and return values as :mod:`cnnkit.functional`; far slower. The fast
kernels are tested against these (and both against PyTorch).
"""

from .conv import conv2d_backward, conv2d_forward
from .layer_norm import (groupnorm_backward, groupnorm_forward, layernorm_backward,
                         layernorm_forward)
from .local import locally_connected2d_backward, locally_connected2d_forward
from .norm import (batchnorm_backward, batchnorm_eval_backward, batchnorm_eval_forward,
                   batchnorm_forward, spatial_batchnorm_backward, spatial_batchnorm_eval_backward,
                   spatial_batchnorm_eval_forward, spatial_batchnorm_forward)
from .pool import (avg_pool2d_backward, avg_pool2d_forward, l2_pool2d_backward, l2_pool2d_forward,
                   max_pool2d_backward, max_pool2d_forward)

__all__ = [
    "conv2d_forward", "conv2d_backward",
    "locally_connected2d_forward", "locally_connected2d_backward",
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "l2_pool2d_forward", "l2_pool2d_backward",
    "batchnorm_forward", "batchnorm_backward",
    "batchnorm_eval_forward", "batchnorm_eval_backward",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "spatial_batchnorm_eval_forward", "spatial_batchnorm_eval_backward",
    "layernorm_forward", "layernorm_backward", "groupnorm_forward", "groupnorm_backward",
]
