"""PyTorch twins of cnnkit nets for the weights tests: the same layers under the same
state-dict names and shapes, with weights and batch-norm statistics unlike their defaults.

:func:`torch_twin` walks a cnnkit module tree (the translation of ``tests/nn/torch_models.py``:
a Sequential's children keep their indices, a Residual its ``body``/``shortcut``, a Concat its
branch indices; batch norm's momentum, ``strict=False`` size rules, average pooling counting
the padding and a flattening Linear translated), so ``twin.state_dict()`` has the keys of
``model.state_dict()``, in the same order. :func:`randomize_torch` and :func:`randomize_cnnkit`
give every weight and buffer values unlike the defaults (gamma 1, beta 0, mean 0, var 1 would
hide a swapped pair), so a wrong pairing shows in the logits.
"""

from __future__ import annotations

import numpy as np
import torch

from cnnkit import nn
from tests.nn.torch_models import _convert

__all__ = ["torch_twin", "randomize_torch", "randomize_cnnkit", "relative_error"]


def torch_twin(model: nn.Module) -> torch.nn.Module:
    """The float32 PyTorch module computing what ``model`` computes, with the same state-dict
    keys and shapes (torch's default weights): the module tree of
    :mod:`tests.nn.torch_models`, the module tier's oracle, which translates every layer.
    NotImplementedError for a layer without a twin."""
    return _convert(model).float()


def randomize_torch(twin: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and batch-norm statistics, unlike the defaults (gamma 0.5..1.5, beta and
    biases N(0, 0.2), running_mean N(0, 0.5), running_var 0.5..2, a random step count), then
    eval mode. Returns the twin."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.5 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(1, 10_000, (), generator=g)))
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(0.5 * torch.rand(m.weight.shape, generator=g))
    return twin.eval()


def randomize_cnnkit(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """As :func:`randomize_torch`, for a cnnkit model (biases, batch-norm weights and buffers,
    Linear weights; the conv weights keep their He initialisation), then eval mode. Returns the
    model."""
    state = model.state_dict()
    for name, value in state.items():
        leaf = name.rsplit(".", 1)[-1]
        shape, dtype = value.shape, value.dtype
        if leaf == "running_mean":
            state[name] = 0.5 * rng.standard_normal(shape)
        elif leaf == "running_var":
            state[name] = rng.uniform(0.5, 2.0, shape)
        elif leaf == "num_batches_tracked":
            state[name] = np.array(rng.integers(1, 10_000), np.int64)
        elif leaf == "bias":
            state[name] = 0.2 * rng.standard_normal(shape)
        elif leaf == "weight" and value.ndim == 1:          # batch norm's gamma
            state[name] = rng.uniform(0.5, 1.5, shape)
        elif leaf == "weight" and value.ndim == 2:       # He, the classifier's 0.01 too small
            state[name] = rng.standard_normal(shape) * (2 / shape[1]) ** 0.5
        state[name] = np.asarray(state[name]).astype(dtype)
    model.load_state_dict(state)
    return model.eval()


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|: the largest error relative to the output's
    scale (an elementwise relative error blows up where a logit happens to be near 0)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))
