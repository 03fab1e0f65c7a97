"""This machine's float32 GEMM rate through NumPy: the peak a convolution is measured against.

What is measured: ``a @ b`` for two random float32 (n, n) matrices (n = 2048 by default, large
enough that the BLAS runs at its full rate), median time after warm-up, at the thread count in
force. Its rate, ``2 * n**3 / time`` FLOP/s, is what the BLAS that cnnkit calls can reach on
this machine; a convolution's ``2*N*F*C*KH*KW*H_out*W_out`` FLOPs over its time, as a fraction
of that rate, says how much of the machine an im2col + GEMM kernel (or PyTorch's kernel) uses.

PyTorch's own float32 matmul rate at the same size is measured too, for reference: PyTorch
brings its own BLAS (MKL) and runs its convolutions with oneDNN's direct kernels, not a GEMM, so
its convolutions are not bounded by NumPy's rate and can exceed 100% of it.
"""

from __future__ import annotations

import numpy as np

from .timing import measure

__all__ = ["sgemm_gflops", "gflops", "fraction_of_peak"]


def sgemm_gflops(n: int = 2048, *, repeats: int = 5, warmup: int = 1, torch=None) -> dict:
    """``{"n": n, "gflops": NumPy's median rate, "timing": Timing.to_dict(), "torch_gflops":
    PyTorch's rate or None}`` for a float32 (n, n) GEMM (PyTorch's if given the module)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    timed = dict(repeats=repeats, warmup=warmup, min_repeats=2)
    timing = measure(lambda: np.matmul(a, b, out=out), **timed)
    result = {"n": n, "gflops": gflops(2 * n ** 3, timing.median_ms), "timing": timing.to_dict(),
              "torch_gflops": None}
    if torch is not None:
        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        torch_timing = measure(lambda: torch.mm(ta, tb, out=tout), **timed)
        result["torch_gflops"] = gflops(2 * n ** 3, torch_timing.median_ms)
    return result


def gflops(flops: int | None, ms: float | None) -> float | None:
    """GFLOP/s of ``flops`` done in ``ms`` milliseconds (None if either is missing)."""
    if flops is None or ms is None or ms <= 0:
        return None
    return flops / (ms * 1e-3) / 1e9


def fraction_of_peak(flops: int | None, ms: float | None, peak_gflops: float | None):
    """The rate of ``flops`` in ``ms`` as a fraction of ``peak_gflops`` (None if unknown)."""
    rate = gflops(flops, ms)
    return None if rate is None or not peak_gflops else rate / peak_gflops
