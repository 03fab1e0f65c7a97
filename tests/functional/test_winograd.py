"""conv2d's Winograd path (cnnkit.functional.winograd): the transforms, the PyTorch oracle,
the im2col path, float32 error, chunks and threads, and the dispatch rule.

The path is taken where ``winograd.applies`` says it pays, which small test arrays never do:
these tests force it (``winograd.pays`` -> True) and check that it ran. The im2col path stays
tested by test_conv.py, whose arrays are below the rule.
"""

from __future__ import annotations

import gc
import itertools
import weakref
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import parallel
from cnnkit.functional import winograd
from cnnkit.geometry import window_geometry
from tests import oracle
from tests.helpers import assert_close, assert_matches_oracle
from tests.plans import PLANS, chunk_plans, plans

THREADS = (1, 2, 3, 8)

# Lavin & Gray (2016), section 4.2: F(2x2, 3x3)'s and F(4x4, 3x3)'s one-dimensional matrices.
# Our F(2, 3) comes from the same points (0, 1, -1) with other signs on two rows, which the
# products cancel; F(4, 3) is the paper's exactly.
LAVIN_GRAY_F4 = (
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
     [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
     [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
)


@contextmanager
def winograd_path(on: bool = True):
    """Run the block's 3-row stride-1 convs on the Winograd path (``on``) or on im2col, and
    count the Winograd calls: ``with winograd_path() as calls: ...; assert calls == [...]``."""
    calls = []
    saved = winograd.pays, winograd.forward_into, winograd.grads_into

    def forward_into(*args, **kwargs):
        calls.append("forward")
        return saved[1](*args, **kwargs)

    def grads_into(*args, **kwargs):
        calls.append("backward")
        return saved[2](*args, **kwargs)

    winograd.pays = lambda *args: on
    winograd.forward_into, winograd.grads_into = forward_into, grads_into
    try:
        yield calls
    finally:
        winograd.pays, winograd.forward_into, winograd.grads_into = saved


def _conv(x, w, b, pad, dout=None, *, groups=1, input_grad=True):
    out, cache = F.conv2d_forward(x, w, b, pad=pad, groups=groups)
    grads = (None, None, None) if dout is None else \
        F.conv2d_backward(dout, cache, input_grad=input_grad)
    return out, grads


def _compare_with_torch(rng, x_shape, w_shape, pad, bias=True, plan="real"):
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if bias else None
    with winograd_path() as calls, chunk_plans(plan) as record:
        out, cache = F.conv2d_forward(x, w, b, pad=pad)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
    assert calls == ["forward", "backward"]
    assert_matches_oracle((out, dx, dw, db), oracle.conv2d(x, w, b, 1, pad, 1, dout))
    return record


# ----------------------------------------------------------------------------- the transforms

@pytest.mark.parametrize("m, r, points", [(2, 3, None), (4, 3, None), (6, 3, None),
                                          (2, 2, (0, 1)), (3, 5, (0, 1, -1, 2, -2, 3))])
def test_transforms_compute_the_correlation(rng, m, r, points):
    """AT @ ((G @ g) * (BT @ d)) = [sum_p g[p] d[o + p] for o < m], for any g and d."""
    at, g, bt = winograd.transforms(m, r, points)
    a = m + r - 1
    assert at.shape == (m, a) and g.shape == (a, r) and bt.shape == (a, a)
    for _ in range(5):
        taps, d = rng.standard_normal(r), rng.standard_normal(a)
        expected = [taps @ d[o:o + r] for o in range(m)]
        np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), expected, rtol=1e-12,
                                   atol=1e-12)


def test_f4_transforms_are_lavin_and_grays():
    for ours, paper, name in zip(winograd.transforms(4), LAVIN_GRAY_F4, ("AT", "G", "BT")):
        np.testing.assert_array_equal(ours, np.array(paper), err_msg=name)


def test_transforms_refuse_points_that_do_not_fit():
    with pytest.raises(ValueError, match="needs 5 distinct points"):
        winograd.transforms(4, 3, (0, 1, -1, 2))
    with pytest.raises(ValueError, match="needs 3 distinct points"):
        winograd.transforms(2, 3, (0, 1, 1))


def test_transforms_are_exact_fractions_rounded_once():
    """F(6, 3)'s entries (21/4, 2/9, 1/90, ...) are the nearest doubles of exact fractions."""
    at, g, bt = winograd.transforms(6)
    assert g[3, 0] == float(Fraction(1, 90)) and bt[0, 2] == 21 / 4


@pytest.mark.parametrize("which, shape", [(0, (4, 6)), (1, (6, 3)), (2, (6, 6))],
                         ids=["AT", "G", "BT"])
def test_every_transform_entry_is_checked(rng, monkeypatch, which, shape):
    """A wrong entry anywhere in F(4, 3)'s matrices makes the conv disagree with PyTorch: the
    oracle tests catch any one of them (each entry is moved by 1 in turn). H_out = 8: with a
    partial last tile, an entry that only reaches its dropped rows would pass unnoticed."""
    x, w, b = rng.standard_normal((2, 2, 8, 5)), rng.standard_normal((3, 2, 3, 3)), None
    dout = rng.standard_normal((2, 3, 8, 5))
    t_out, (t_dx, t_dw, _) = oracle.conv2d(x, w, b, 1, 1, 1, dout)
    good = winograd.transforms(4)
    for index in itertools.product(*map(range, shape)):
        broken = [t.copy() for t in good]
        broken[which][index] += 1.0
        monkeypatch.setattr(winograd, "transforms", lambda m, r=3, points=None: tuple(broken))
        with winograd_path():
            out, (dx, dw, _) = _conv(x, w, b, 1, dout)
        worst = max(np.abs(a - e).max() for a, e in ((out, t_out), (dx, t_dx), (dw, t_dw)))
        assert worst > 1e-3, f"{['AT', 'G', 'BT'][which]}{index} + 1 went unnoticed"


# ----------------------------------------------------------------------------- the oracle

# Tiles of 4 rows (TILE): H_out = 1, 2, 3, 5, 7 leave a partial last tile; 4 and 8 do not.
# Widths 1, 2 and 9 with pads 0, 1 and 2 on each axis; kernels 3x1, 3x3 and 3x5.
CASES = [
    ("3x3-pad1-square", (2, 3, 8, 8), (4, 3, 3, 3), 1),
    ("3x3-pad1-partial-tile", (3, 2, 7, 9), (5, 2, 3, 3), 1),
    ("3x3-pad0-nonsquare", (2, 3, 9, 6), (2, 3, 3, 3), 0),
    ("3x3-pad2", (2, 2, 5, 7), (3, 2, 3, 3), 2),
    ("3x3-pad-rows-only", (2, 3, 6, 5), (2, 3, 3, 3), (1, 0)),
    ("3x3-pad-cols-only", (2, 3, 6, 5), (2, 3, 3, 3), (0, 2)),
    ("3x1", (2, 4, 10, 3), (3, 4, 3, 1), (1, 0)),
    ("3x5-pad2", (1, 2, 4, 6), (2, 2, 3, 5), 2),
    ("one-row-out", (3, 2, 3, 4), (2, 2, 3, 3), 0),
    ("one-pixel-in", (2, 3, 1, 1), (2, 3, 3, 3), 1),
    ("tall", (2, 1, 19, 2), (3, 1, 3, 3), 1),
    ("c1-f1", (4, 1, 6, 6), (1, 1, 3, 3), 1),
]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("x_shape, w_shape, pad", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_winograd_matches_torch(rng, x_shape, w_shape, pad, plan):
    record = _compare_with_torch(rng, x_shape, w_shape, pad, bias=True, plan=plan)
    if plan == "forced" and x_shape[0] > 1:
        record.check()


@st.composite
def winograd_geometry(draw):
    """(x_shape, w_shape, pad) of a stride-1 conv with a 3-row filter: the output size first,
    the input from it, H = H_out + 2 - 2*PH."""
    n, c, f = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kw = draw(st.sampled_from([1, 2, 3, 5]))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h_out = draw(st.integers(max(1, 2 * ph - 1), 11))
    w_out = draw(st.integers(max(1, 2 * pw - kw + 2), 7))
    return (n, c, h_out + 2 - 2 * ph, w_out + kw - 1 - 2 * pw), (f, c, 3, kw), (ph, pw)


@given(geom=winograd_geometry(), bias=st.booleans(), plan=plans(),
       seed=st.integers(0, 2**32 - 1))
def test_winograd_matches_torch_random_geometry(geom, bias, plan, seed):
    x_shape, w_shape, pad = geom
    _compare_with_torch(np.random.default_rng(seed), x_shape, w_shape, pad, bias, plan)


@pytest.mark.parametrize("step", [1, 2, 3, 5])
def test_chunks_of_any_size_and_a_shorter_last_one(rng, monkeypatch, step):
    """7 samples in chunks of 1, 2 (last 1), 3 (last 1) and 5 (last 2): each chunk's rows start
    at its own sample, and a short chunk's unused positions never reach out, dx or dw."""
    def chunks(n, sample_bytes, budget=None):
        return [(lo, min(n, lo + step)) for lo in range(0, n, step)]

    monkeypatch.setattr(winograd.im2col, "batch_chunks", chunks)
    _compare_with_torch(rng, (7, 3, 6, 7), (4, 3, 3, 3), 1)
    _compare_with_torch(rng, (7, 2, 5, 4), (3, 2, 3, 2), (0, 1), bias=False)


def test_batches_cross_the_real_chunk_budget(rng):
    """A float64 batch over the real 1 MiB budget of transformed columns (109 KB a sample):
    chunks of 7 and 8 samples, on two threads."""
    x_shape, w_shape = (29, 6, 21, 19), (7, 6, 3, 3)
    win = window_geometry(x_shape, (3, 3), 1, 1, 1, "t")
    plan = winograd.WinogradPlan(x_shape, w_shape, win, np.float64)
    assert plan.chunks == [(0, 7), (7, 14), (14, 21), (21, 29)]
    with parallel.num_threads(2):
        _compare_with_torch(rng, x_shape, w_shape, 1)


def test_grouped_conv_runs_each_group_on_winograd(rng):
    x, w, b = rng.standard_normal((3, 6, 7, 6)), rng.standard_normal((4, 3, 3, 3)), \
        rng.standard_normal(4)
    dout = rng.standard_normal((3, 4, 7, 6))
    with winograd_path() as calls:
        out, (dx, dw, db) = _conv(x, w, b, 1, dout, groups=2)
    assert calls == ["forward", "forward", "backward", "backward"]
    t_out, t_grads = oracle.conv2d_grouped(x, w, b, 1, 1, 1, 2, dout)
    assert_close(out, t_out, "out")
    for name, ours, theirs in zip(("dx", "dw", "db"), (dx, dw, db), t_grads):
        assert_close(ours, theirs, name)


def test_without_input_grad_the_same_dw_and_db(rng):
    x, w, b = rng.standard_normal((5, 3, 9, 7)), rng.standard_normal((4, 3, 3, 3)), \
        rng.standard_normal(4)
    dout = rng.standard_normal((5, 4, 9, 7))
    with winograd_path():
        _, (dx, dw, db) = _conv(x, w, b, 1, dout)
        _, (none, dw2, db2) = _conv(x, w, b, 1, dout, input_grad=False)
    assert none is None and dx is not None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_keeps_dtype_and_leaves_inputs_alone(rng, dtype):
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((3, 4, 6, 5), (2, 4, 3, 3), (2,)))
    dout = rng.standard_normal((3, 2, 6, 5)).astype(dtype)
    copies = [a.copy() for a in (x, w, b, dout)]
    with winograd_path() as calls:
        out, grads = _conv(x, w, b, 1, dout)
    assert calls == ["forward", "backward"]
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    for before, after in zip(copies, (x, w, b, dout)):
        np.testing.assert_array_equal(before, after)


def test_strided_views_as_inputs(rng):
    """x, w and dout that are not C-contiguous (transposed and sliced views) give the same
    result as their copies."""
    x = rng.standard_normal((6, 5, 9, 8)).transpose(0, 1, 3, 2)[::2]      # (3, 5, 8, 9)
    w = rng.standard_normal((4, 5, 3, 3))[:, :, :, ::-1]
    dout = rng.standard_normal((3, 4, 8, 9, 2))[..., 0]
    with winograd_path():
        out, grads = _conv(x, w, None, 1, dout)
        out_c, grads_c = _conv(x.copy(), w.copy(), None, 1, dout.copy())
    np.testing.assert_array_equal(out, out_c)
    for a, b in zip(grads[:2], grads_c[:2]):
        np.testing.assert_array_equal(a, b)


def test_scratch_is_freed_when_the_call_returns(rng, monkeypatch):
    """The buffers (megabytes) go when the call returns, by reference counting: a cycle through
    them would keep every layer's scratch alive until the cycle collector ran (it held 36 MiB
    more across a CIFAR-size training step). On one thread: an idle pool worker keeps its last
    call's tasks until its next job."""
    made = []
    init = winograd.WinogradBuffers.__init__

    def recorded(self, plan):
        init(self, plan)
        made.append(weakref.ref(self))

    monkeypatch.setattr(winograd.WinogradBuffers, "__init__", recorded)
    x, w = rng.standard_normal((6, 3, 9, 7)), rng.standard_normal((4, 3, 3, 3))
    gc.disable()
    try:
        with winograd_path(), chunk_plans("forced", threads=1):
            _conv(x, w, None, 1, rng.standard_normal((6, 4, 9, 7)))
        assert len(made) >= 2 and all(ref() is None for ref in made)
    finally:
        gc.enable()


# ----------------------------------------------------------------------------- float32

FLOAT32_SHAPES = [((8, 32, 16, 16), (32, 32, 3, 3), 1), ((4, 64, 8, 8), (64, 64, 3, 3), 1),
                  ((4, 24, 15, 17), (40, 24, 3, 3), 1), ((2, 16, 12, 20), (48, 16, 3, 3), 0)]


@pytest.mark.parametrize("x_shape, w_shape, pad", FLOAT32_SHAPES,
                         ids=["32-32-16x16", "64-64-8x8", "24-40-15x17", "16-48-12x20-pad0"])
def test_float32_error_against_float64(rng, x_shape, w_shape, pad):
    """F(4, 3) in float32 against the float64 result, with He-scaled weights: within 4e-5 of
    the output's RMS everywhere (measured up to 1.4e-5; im2col's is 3e-6), and within the
    float32 tolerances of test_conv.py (rtol 1e-4, atol 1e-4) and the benchmark guard."""
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape) * np.sqrt(2 / (w_shape[1] * 9))
    dout = rng.standard_normal((x_shape[0], w_shape[0]) + x_shape[2:])
    if pad == 0:
        dout = dout[:, :, 2:, 2:]
    exact_out, (exact_dx, exact_dw, _) = oracle.conv2d(x, w, None, 1, pad, 1, dout)
    x32, w32, d32 = (a.astype(np.float32) for a in (x, w, dout))
    with winograd_path() as calls:
        out, (dx, dw, _) = _conv(x32, w32, None, pad, d32)
    assert calls == ["forward", "backward"]
    for name, ours, exact in (("out", out, exact_out), ("dx", dx, exact_dx), ("dw", dw, exact_dw)):
        scale = np.sqrt(np.mean(exact ** 2))
        assert np.abs(ours - exact).max() <= 4e-5 * scale, name
        np.testing.assert_allclose(ours, exact, rtol=1e-4, atol=1e-4 * max(1, scale),
                                   err_msg=name)


def test_float64_agrees_with_im2col(rng):
    x, w, b = rng.standard_normal((4, 20, 10, 11)), rng.standard_normal((24, 20, 3, 3)), \
        rng.standard_normal(24)
    dout = rng.standard_normal((4, 24, 10, 11))
    results = {}
    for on in (True, False):
        with winograd_path(on) as calls:
            results[on] = _conv(x, w, b, 1, dout)
        assert bool(calls) == on
    (out, grads), (i_out, i_grads) = results[True], results[False]
    assert_close(out, i_out, "out")
    for name, a, e in zip(("dx", "dw", "db"), grads, i_grads):
        assert_close(a, e, name)


# ----------------------------------------------------------------------------- threads

def _bits(x, w, b, dout, pad):
    with winograd_path():
        out, (dx, dw, db) = _conv(x, w, b, pad, dout)
    return {"out": out, "dx": dx, "dw": dw, "db": db}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("plan", PLANS)
def test_same_bits_on_any_thread_count(rng, dtype, plan):
    """out, dx, dw and db are the same bits on 1, 2, 3 and 8 threads, with the chunks the plan
    makes: the real plan cuts this batch (80 MFLOP, over ``PARALLEL_FLOPS``) into 5 float32
    chunks and 9 float64 ones, run on the worker pool."""
    x_shape, w_shape, pad = (9, 32, 20, 30), (24, 32, 3, 3), (1, 2)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, (24,)))
    dout = rng.standard_normal((9, 24, 20, 32)).astype(dtype)
    results = {}
    for t in THREADS:
        with chunk_plans(plan, threads=t) as record:
            results[t] = _bits(x, w, b, dout, pad)
        if t > 1:
            record.check()
    for t in THREADS[1:]:
        for name, ref in results[1].items():
            got = results[t][name]
            assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes(), \
                f"{name}: {t} threads differ from 1 ({plan}, {np.dtype(dtype).name})"


# ----------------------------------------------------------------------------- dispatch

@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((64, 32, 32, 32), (64, 32, 3, 3), dict(pad=1), True),        # the benchmark's conv3x3
    ((128, 64, 8, 8), (128, 64, 3, 3), dict(pad=1), True),
    ((32, 32, 24, 40), (48, 32, 3, 3), dict(pad=1), True),
    ((64, 3, 32, 32), (32, 3, 3, 3), dict(pad=1), False),         # 3 channels: im2col
    ((32, 24, 15, 17), (40, 24, 3, 3), dict(pad=1), False),
    ((64, 32, 33, 33), (64, 32, 3, 3), dict(pad=1, stride=2), False),
    ((64, 32, 32, 32), (64, 32, 3, 3), dict(pad=2, dilation=2), False),
    ((64, 32, 32, 32), (64, 32, 5, 5), dict(pad=2), False),
    ((64, 32, 32, 32), (64, 32, 1, 1), {}, False),
    ((1, 64, 32, 32), (64, 64, 3, 3), dict(pad=1), False),        # 1024 positions
    ((2, 64, 32, 32), (64, 64, 3, 3), dict(pad=1), True),         # 2048
    ((32, 64, 8, 8), (64, 64, 3, 3), dict(pad=1), True),
], ids=["bench", "cifar3", "24x40", "3-channels", "24-40", "stride2", "dilation2", "5x5",
        "1x1", "batch-1", "batch-2", "32x8x8"])
def test_dispatch(x_shape, w_shape, kwargs, expected):
    win = window_geometry(x_shape, w_shape[2:], kwargs.get("stride", 1), kwargs.get("pad", 0),
                          kwargs.get("dilation", 1), "t")
    assert winograd.applies(x_shape, w_shape, win) == expected


def test_float16_stays_on_im2col():
    win = window_geometry((8, 64, 16, 16), (3, 3), 1, 1, 1, "t")
    assert winograd.applies((8, 64, 16, 16), (64, 64, 3, 3), win, np.float64)
    assert not winograd.applies((8, 64, 16, 16), (64, 64, 3, 3), win, np.float16)


def test_conv2d_takes_the_path_the_rule_gives(rng):
    x = rng.standard_normal((64, 32, 7, 5)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    calls = []
    saved = winograd.forward_into
    try:
        winograd.forward_into = lambda *a, **k: (calls.append(1), saved(*a, **k))[1]
        F.conv2d_forward(x, w, None, pad=1)
        F.conv2d_forward(x, w, None, pad=1, stride=2)
        F.conv2d_forward(x[:, :3], w[:, :3], None, pad=1)
    finally:
        winograd.forward_into = saved
    assert calls == [1]
