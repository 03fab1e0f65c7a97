"""The kernel cases: one entry of ``CASES`` per kernel and shape; adding a case is one entry.

A case says how to make its float32 inputs and how each side computes the operation:

- ``setup(rng)`` returns the named input arrays (NCHW, float32);
- ``cnnkit_forward(arrays) -> (out, cache)`` and ``cnnkit_backward(dout, cache) -> grads`` call
  ``cnnkit.functional``; the grads come in the order of ``inputs`` and in the layout of the setup
  arrays;
- ``torch_forward(tensors) -> out`` calls ``torch.nn.functional`` on tensors made from the same
  arrays (``inputs`` require grad, as they would inside a network being trained);
- ``flops`` counts the forward's multiply-adds as 2 FLOPs for the GEMM-shaped cases (conv:
  ``2*N*F*C*KH*KW*H_out*W_out``; linear: ``2*N*D*M``), None for the others. The backward of
  both is two GEMMs of the same size (dx and dw), so forward+backward is 3x the forward.

``spatial`` says whether PyTorch's channels_last layout applies (4-D arrays); the linear case has
no memory format, so only the NCHW column is filled for it.

``CASES`` run by default: the shapes of the benchmark nets' layers, square. ``extra_cases()`` are
the shapes those leave out, run with ``python -m benchmarks --extra``: a first layer (3 input
channels), non-square maps, a stride-2 3x3 and a stride-2 1x1 (ResNet's downsampling), a 5x5,
max pooling on 28x28 and on a non-square map, batch norm on a small map with many channels.

How the cases are timed is in :mod:`benchmarks.kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as TF

from cnnkit import functional as F

__all__ = ["KernelCase", "CASES", "extra_cases", "conv_case", "pool_case"]


@dataclass(frozen=True)
class KernelCase:
    """One kernel at one shape, on both sides (see the module docstring)."""

    name: str
    description: str
    setup: Callable[[np.random.Generator], dict]
    cnnkit_forward: Callable[[dict], tuple]
    cnnkit_backward: Callable[[np.ndarray, object], tuple]
    torch_forward: Callable[[dict], torch.Tensor]
    inputs: tuple[str, ...]
    flops: int | None = None
    spatial: bool = True


def _normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def _as_tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


def _pair(size) -> tuple[int, int]:
    """A size as (height, width): an int is square."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _hw(h: int, w: int) -> str:
    return f"{h}x{w}"


def conv_case(name: str, n: int, c: int, size, f: int, k: int, *, stride: int = 1,
              pad: int = 0) -> KernelCase:
    """A conv with bias: x (n, c, H, W), w (f, c, k, k), He-scaled weights; ``size`` is H = W
    or (H, W).

    When the size rule does not divide (stride 2 on an even size) cnnkit runs with
    ``strict=False``, which floors as PyTorch does.
    """
    h, w = _pair(size)
    strict = all((s - k + 2 * pad) % stride == 0 for s in (h, w))
    oh, ow = ((s - k + 2 * pad) // stride + 1 for s in (h, w))

    def setup(rng):
        return {"x": _normal(rng, (n, c, h, w)),
                "w": _normal(rng, (f, c, k, k), np.sqrt(2.0 / (c * k * k))),
                "b": _normal(rng, (f,), 0.1)}

    floor = "" if strict else " (floored: strict=False)"
    return KernelCase(
        name=name,
        description=f"N={n} {c}->{f} {_hw(h, w)} k{k} s{stride} p{pad} -> {_hw(oh, ow)}{floor}",
        setup=setup,
        cnnkit_forward=lambda a: F.conv2d_forward(a["x"], a["w"], a["b"], stride=stride, pad=pad,
                                                  strict=strict),
        cnnkit_backward=F.conv2d_backward,
        torch_forward=lambda t: TF.conv2d(t["x"], t["w"], t["b"], stride=stride, padding=pad),
        inputs=("x", "w", "b"),
        flops=2 * n * f * c * k * k * oh * ow,
    )


def pool_case(name: str, n: int, c: int, size, k: int, stride: int,
              pad: int = 0) -> KernelCase:
    """Max pooling of x (n, c, H, W), ``size`` H = W or (H, W); the size must satisfy cnnkit's
    strict size rule."""
    h, w = _pair(size)
    oh, ow = ((s - k + 2 * pad) // stride + 1 for s in (h, w))
    return KernelCase(
        name=name,
        description=f"N={n} C={c} {_hw(h, w)} k{k} s{stride} p{pad} -> {_hw(oh, ow)}",
        setup=lambda rng: {"x": _normal(rng, (n, c, h, w))},
        cnnkit_forward=lambda a: F.max_pool2d_forward(a["x"], k, stride, pad),
        cnnkit_backward=lambda dout, cache: _as_tuple(F.max_pool2d_backward(dout, cache)),
        torch_forward=lambda t: TF.max_pool2d(t["x"], k, stride, pad),
        inputs=("x",),
    )


def _batchnorm_case(n: int, c: int, size: int, name: str = "batchnorm2d") -> KernelCase:
    """Train-mode spatial batch norm; neither side keeps running statistics (kernel only)."""
    return KernelCase(
        name=name,
        description=f"N={n} C={c} {size}x{size}, train mode (batch statistics)",
        setup=lambda rng: {"x": _normal(rng, (n, c, size, size)),
                           "gamma": 1 + _normal(rng, (c,), 0.1), "beta": _normal(rng, (c,), 0.1)},
        cnnkit_forward=lambda a: F.spatial_batchnorm_forward(a["x"], a["gamma"], a["beta"],
                                                             eps=1e-5),
        cnnkit_backward=F.spatial_batchnorm_backward,
        torch_forward=lambda t: TF.batch_norm(t["x"], None, None, t["gamma"], t["beta"],
                                              training=True, eps=1e-5),
        inputs=("x", "gamma", "beta"),
    )


def _groupnorm_case(n: int, c: int, size: int, groups: int,
                    name: str = "groupnorm") -> KernelCase:
    """Group norm of x (n, c, size, size) in ``groups`` groups (1: the Group Norm paper's layer
    norm), a scale and shift per channel."""
    return KernelCase(
        name=name,
        description=f"N={n} C={c} {size}x{size}, {groups} groups",
        setup=lambda rng: {"x": _normal(rng, (n, c, size, size)),
                           "gamma": 1 + _normal(rng, (c,), 0.1), "beta": _normal(rng, (c,), 0.1)},
        cnnkit_forward=lambda a: F.groupnorm_forward(a["x"], a["gamma"], a["beta"], groups),
        cnnkit_backward=F.groupnorm_backward,
        torch_forward=lambda t: TF.group_norm(t["x"], groups, t["gamma"], t["beta"], eps=1e-5),
        inputs=("x", "gamma", "beta"),
    )


def _layernorm_case(n: int, d: int) -> KernelCase:
    """Layer norm of x (n, d), a scale and shift per feature (an FC layer's output)."""
    return KernelCase(
        name="layernorm",
        description=f"N={n} D={d}",
        setup=lambda rng: {"x": _normal(rng, (n, d)), "gamma": 1 + _normal(rng, (d,), 0.1),
                           "beta": _normal(rng, (d,), 0.1)},
        cnnkit_forward=lambda a: F.layernorm_forward(a["x"], a["gamma"], a["beta"]),
        cnnkit_backward=F.layernorm_backward,
        torch_forward=lambda t: TF.layer_norm(t["x"], (d,), t["gamma"], t["beta"], eps=1e-5),
        inputs=("x", "gamma", "beta"),
        spatial=False,
    )


def _relu_case(n: int, c: int, size: int) -> KernelCase:
    return KernelCase(
        name="relu",
        description=f"N={n} C={c} {size}x{size}",
        setup=lambda rng: {"x": _normal(rng, (n, c, size, size))},
        cnnkit_forward=lambda a: F.relu_forward(a["x"]),
        cnnkit_backward=lambda dout, cache: _as_tuple(F.relu_backward(dout, cache)),
        torch_forward=lambda t: TF.relu(t["x"]),
        inputs=("x",),
    )


def _affine_backward_torch_layout(dout, cache):
    dx, dw, db = F.affine_backward(dout, cache)
    return dx, dw.T, db                   # dw (D, M) -> the (M, D) layout of the setup's w


def _linear_case(n: int, d: int, m: int) -> KernelCase:
    """x (n, d) @ w.T + b with w stored (m, d) and passed to the kernel as the transpose view,
    exactly as ``cnnkit.nn.Linear`` does."""
    return KernelCase(
        name="linear",
        description=f"N={n} {d}->{m}",
        setup=lambda rng: {"x": _normal(rng, (n, d)), "w": _normal(rng, (m, d), np.sqrt(1 / d)),
                           "b": _normal(rng, (m,), 0.1)},
        cnnkit_forward=lambda a: F.affine_forward(a["x"], a["w"].T, a["b"]),
        cnnkit_backward=_affine_backward_torch_layout,
        torch_forward=lambda t: TF.linear(t["x"], t["w"], t["b"]),
        inputs=("x", "w", "b"),
        flops=2 * n * d * m,
        spatial=False,
    )


CASES: list[KernelCase] = [
    conv_case("conv3x3", 64, 32, 32, 64, 3, pad=1),
    conv_case("conv5x5-mnist", 64, 1, 28, 6, 5),
    conv_case("conv3x3-s2", 64, 32, 32, 64, 3, stride=2, pad=1),
    conv_case("conv1x1", 64, 64, 16, 128, 1),
    pool_case("maxpool2x2", 64, 64, 32, 2, 2),
    pool_case("maxpool3x3-s2", 64, 64, 33, 3, 2),      # 33: (33 - 3)/2 + 1 = 16 exactly
    _batchnorm_case(64, 64, 32),
    _groupnorm_case(64, 64, 32, 32),
    _relu_case(64, 64, 32),
    _linear_case(64, 4096, 1000),
]


def extra_cases(batch: int | None = None) -> list[KernelCase]:
    """The shapes ``CASES`` leaves out (``--extra``); ``batch`` replaces every case's N (the
    tests check the shapes on a small batch).

    The batches keep each case's fwd+bwd near the default cases' time (tens of ms at 1 thread).
    """
    def n(default):
        return default if batch is None else batch

    return [
        conv_case("conv3x3-first", n(64), 3, 32, 32, 3, pad=1),         # a CIFAR net's first
        conv_case("conv3x3-16x16", n(32), 64, 16, 128, 3, pad=1),
        conv_case("conv3x3-24x40", n(32), 32, (24, 40), 64, 3, pad=1),  # non-square
        conv_case("conv3x3-s2-56", n(16), 64, 56, 128, 3, stride=2, pad=1),
        conv_case("conv5x5", n(32), 32, 16, 64, 5, pad=2),
        conv_case("conv1x1-s2", n(32), 64, 28, 128, 1, stride=2),         # ResNet's shortcut
        pool_case("maxpool2x2-28", n(64), 32, 28, 2, 2),
        pool_case("maxpool2x2-24x40", n(64), 32, (24, 40), 2, 2),
        _batchnorm_case(n(64), 256, 8, name="batchnorm2d-8x8"),
        _groupnorm_case(n(64), 64, 32, 1, name="groupnorm-1-group"),
        _groupnorm_case(n(64), 256, 8, 32, name="groupnorm-8x8"),
        _layernorm_case(n(256), 4096),
    ]
