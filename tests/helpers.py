"""Small helpers for the tests: tight comparisons and inputs away from kinks."""

import numpy as np

RTOL, ATOL = 1e-10, 1e-12


def assert_close(actual, expected, name, rtol=RTOL, atol=ATOL):
    """Float64 comparison against the oracle; ``name`` says which tensor failed."""
    assert actual is not None, f"{name} is None"
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


def distinct(rng, shape, dtype=np.float64):
    """Values all at least ~1/size apart (a shuffled linspace plus small jitter), so that no max
    changes under a finite-difference step and ties never happen by accident."""
    size = int(np.prod(shape))
    base = np.linspace(-1.0, 1.0, size) if size > 1 else np.zeros(1)
    gap = 2.0 / max(size - 1, 1)
    vals = rng.permutation(base) + rng.uniform(-0.2, 0.2, size) * gap
    return vals.reshape(shape).astype(dtype)


def away_from_zero(rng, shape, margin=1e-3, dtype=np.float64):
    """Standard normal draws with |x| >= margin (redrawn), for kinks at 0 (ReLU, leaky ReLU)."""
    x = rng.standard_normal(shape)
    bad = np.abs(x) < margin
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) < margin
    return x.astype(dtype)


def require(module: str):
    """Import an optional test dependency (onnx, onnxruntime, safetensors): skip without it
    locally, fail under CI, where ``pip install -e ".[test]"`` installs it."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is required under CI (the test extras install it)")
        pytest.skip(f"{module} is not installed (pip install -e \".[test]\")")


def assert_matches_oracle(got, expected):
    """A layer kernel's ``(out, dx, dw, db)`` against the oracle's ``(out, (dx, dw, db))`` (conv,
    affine, locally connected), each with :func:`assert_close`; the oracle's db is None where
    there is no bias, and then the kernel's must be None too."""
    out, dx, dw, db = got
    t_out, (t_dx, t_dw, t_db) = expected
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")
    assert_close(dw, t_dw, "dw")
    if t_db is None:
        assert db is None, "db must be None without a bias"
    else:
        assert_close(db, t_db, "db")
