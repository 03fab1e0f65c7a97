"""Timing one kernel case (:mod:`benchmarks.cases`) on cnnkit and on PyTorch, both layouts.

What is measured, per case, with :func:`benchmarks.timing.measure` (median of repeats after
warm-up), in float32:

- ``fwd``: cnnkit's ``*_forward`` (which also builds the cache its backward needs); PyTorch's
  functional op with autograd on (x and the weights require grad, as inside a network being
  trained, so PyTorch too keeps what its backward needs);
- ``fwd+bwd``: the forward, then the backward with a fixed random upstream gradient ``dout``:
  cnnkit's ``*_backward(dout, cache)``; PyTorch's ``out.backward(dout)``. PyTorch's ``.grad``
  fields are set to None before each call, so it writes fresh gradients as cnnkit does instead of
  adding into old ones.

PyTorch runs twice: on NCHW-contiguous tensors (its default) and on channels_last tensors
(``x.contiguous(memory_format=torch.channels_last)``, the 4-D weights and ``dout`` too), the
layout its oneDNN convolutions prefer. Before anything is timed, the guard
(:mod:`benchmarks.guard`) checks that cnnkit's output and every gradient match each PyTorch
layout's.
"""

from __future__ import annotations

import numpy as np
import torch

from .guard import check_close, check_gradient
from .timing import measure

__all__ = ["LAYOUTS", "torch_tensors", "check_case", "time_case"]

LAYOUTS = ("nchw", "channels_last")


def torch_tensors(arrays: dict, inputs, layout: str) -> dict:
    """Copies of the arrays as tensors in ``layout``; those named in ``inputs`` require grad."""
    tensors = {}
    for name, a in arrays.items():
        t = torch.from_numpy(np.array(a, copy=True))
        if layout == "channels_last" and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        tensors[name] = t.requires_grad_(name in inputs)
    return tensors


def _layouts(case):
    return LAYOUTS if case.spatial else LAYOUTS[:1]


def _dout_tensor(dout: np.ndarray, layout: str):
    t = torch.from_numpy(dout)
    return t.contiguous(memory_format=torch.channels_last) if (
        layout == "channels_last" and t.ndim == 4) else t


def check_case(case, arrays: dict, dout: np.ndarray) -> None:
    """The guard: cnnkit's output and gradients equal PyTorch's in each layout, else
    :class:`benchmarks.guard.KernelMismatch`."""
    out, cache = case.cnnkit_forward(arrays)
    grads = case.cnnkit_backward(dout, cache)
    if len(grads) != len(case.inputs):
        raise ValueError(f"{case.name}: the cnnkit backward gave {len(grads)} gradients for "
                         f"inputs {case.inputs}")
    for layout in _layouts(case):
        tensors = torch_tensors(arrays, case.inputs, layout)
        out_t = case.torch_forward(tensors)
        check_close(f"{case.name} ({layout})", "forward output", out, out_t.detach().numpy())
        out_t.backward(_dout_tensor(dout, layout))
        for name, g in zip(case.inputs, grads):
            check_gradient(f"{case.name} ({layout})", f"gradient d{name}", g,
                           tensors[name].grad.numpy())


def time_case(case, *, repeats: int, warmup: int, budget: float, seed: int = 0) -> dict:
    """Check the case, then time it: ``{"fwd": {...}, "fwd+bwd": {...}}`` where each maps
    ``"cnnkit"``, ``"torch_nchw"``, ``"torch_channels_last"`` to a Timing (None where the layout
    does not apply)."""
    rng = np.random.default_rng(seed)
    arrays = case.setup(rng)
    out, _ = case.cnnkit_forward(arrays)
    dout = rng.standard_normal(out.shape, dtype=np.float32)
    check_case(case, arrays, dout)
    timed = dict(repeats=repeats, warmup=warmup, budget=budget)

    def cnnkit_step():
        _, cache = case.cnnkit_forward(arrays)
        case.cnnkit_backward(dout, cache)

    results = {"fwd": {"cnnkit": measure(lambda: case.cnnkit_forward(arrays), **timed)},
               "fwd+bwd": {"cnnkit": measure(cnnkit_step, **timed)}}
    for layout in LAYOUTS:
        key = f"torch_{layout}"
        if layout not in _layouts(case):
            results["fwd"][key] = results["fwd+bwd"][key] = None
            continue
        tensors = torch_tensors(arrays, case.inputs, layout)
        leaves = [tensors[name] for name in case.inputs]
        dout_t = _dout_tensor(dout, layout)

        def torch_step(tensors=tensors, leaves=leaves, dout_t=dout_t):
            for t in leaves:
                t.grad = None
            case.torch_forward(tensors).backward(dout_t)

        results["fwd"][key] = measure(lambda tensors=tensors: case.torch_forward(tensors), **timed)
        results["fwd+bwd"][key] = measure(torch_step, **timed)
    return results
