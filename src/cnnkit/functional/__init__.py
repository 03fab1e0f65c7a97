"""Pure kernels on NumPy arrays (NCHW): ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients`` in the forward's argument order.

No state, no global RNG, inputs never written to; see DESIGN.md for the conventions.
"""

from .activation import (leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward,
                         sigmoid_backward, sigmoid_forward, tanh_backward, tanh_forward)
from .conv import conv2d_backward, conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .linear import affine_backward, affine_forward
from .local import locally_connected2d_backward, locally_connected2d_forward
from .lrn import lrn_backward, lrn_forward
from .losses import get_loss, l2_regularization, softmax_loss, svm_loss
from .norm import (batchnorm_backward, batchnorm_eval_backward, batchnorm_eval_forward,
                   batchnorm_forward, batchnorm_running_update, spatial_batchnorm_backward,
                   spatial_batchnorm_eval_backward, spatial_batchnorm_eval_forward,
                   spatial_batchnorm_forward)
from .pool import (avg_pool2d_backward, avg_pool2d_forward, global_avg_pool2d_backward,
                   global_avg_pool2d_forward, l2_pool2d_backward, l2_pool2d_forward,
                   max_pool2d_backward, max_pool2d_forward)

__all__ = [
    "affine_forward", "affine_backward",
    "conv2d_forward", "conv2d_backward",
    "locally_connected2d_forward", "locally_connected2d_backward",
    "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d_forward", "avg_pool2d_backward",
    "l2_pool2d_forward", "l2_pool2d_backward",
    "global_avg_pool2d_forward", "global_avg_pool2d_backward",
    "relu_forward", "relu_backward",
    "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward",
    "tanh_forward", "tanh_backward",
    "batchnorm_forward", "batchnorm_backward",
    "batchnorm_eval_forward", "batchnorm_eval_backward",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "spatial_batchnorm_eval_forward", "spatial_batchnorm_eval_backward",
    "batchnorm_running_update",
    "lrn_forward", "lrn_backward",
    "dropout_forward", "dropout_backward",
    "softmax_loss", "svm_loss", "l2_regularization", "get_loss",
]
