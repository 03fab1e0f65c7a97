"""conv2d: PyTorch oracle, numerical gradients, naive vs fast, known answers, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnkit import functional as F
from cnnkit import reference as R
from cnnkit.geometry import window_geometry
from cnnkit.gradcheck import check_kernel
from tests import oracle
from tests.cases import CONV2D_CASES
from tests.helpers import assert_close, assert_matches_oracle
from tests.plans import PLANS, chunk_plans, plans


@st.composite
def conv_geometry(draw, max_out=5):
    """(x_shape, w_shape, stride, pad, dilation): the output size is drawn first and the input
    derived from it, H = (H_out - 1)*S + D*(K - 1) + 1 - 2P, so every draw is valid."""
    n, c, f = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dims, hyper = [], []
    for _ in range(2):
        k, s = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        p, d = draw(st.integers(0, 2)), draw(st.integers(1, 3))
        # smallest output that keeps H >= 1
        lo = max(1, -(-(2 * p - d * (k - 1)) // s) + 1)
        out = draw(st.integers(lo, lo + max_out - 1))
        dims.append((out - 1) * s + d * (k - 1) + 1 - 2 * p)
        hyper.append((k, s, p, d))
    (kh, sh, ph, dh), (kw, sw, pw, dw) = hyper
    return (n, c, *dims), (f, c, kh, kw), (sh, sw), (ph, pw), (dh, dw)


def _arrays(seed, x_shape, w_shape, bias):
    g = np.random.default_rng(seed)
    x, w = g.standard_normal(x_shape), g.standard_normal(w_shape)
    b = g.standard_normal(w_shape[0]) if bias else None
    return g, x, w, b


def _compare_with_torch(g, x, w, b, stride, pad, dilation, plan="real"):
    with chunk_plans(plan):
        out, cache = F.conv2d_forward(x, w, b, stride, pad, dilation)
        dout = g.standard_normal(out.shape)
        dx, dw, db = F.conv2d_backward(dout, cache)
    assert_matches_oracle((out, dx, dw, db), oracle.conv2d(x, w, b, stride, pad, dilation, dout))


@given(geom=conv_geometry(), bias=st.booleans(), plan=plans(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_torch_random_geometry(geom, bias, plan, seed):
    x_shape, w_shape, stride, pad, dilation = geom
    g, x, w, b = _arrays(seed, x_shape, w_shape, bias)
    _compare_with_torch(g, x, w, b, stride, pad, dilation, plan)


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("x_shape, w_shape, kwargs",
                         [c[1:] for c in CONV2D_CASES], ids=[c[0] for c in CONV2D_CASES])
def test_conv2d_cases_match_torch_and_naive(rng, x_shape, w_shape, kwargs, plan):
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    strict = kwargs.get("strict", True)
    hyper = {k: kwargs.get(k, d) for k, d in (("stride", 1), ("pad", 0), ("dilation", 1))}
    with chunk_plans(plan) as record:
        out, cache = F.conv2d_forward(x, w, b, **hyper, strict=strict)
        dout = rng.standard_normal(out.shape)
        grads = F.conv2d_backward(dout, cache)
    if plan == "forced" and x_shape[0] > 1:
        record.check()
    t_out, t_grads = oracle.conv2d(x, w, b, hyper["stride"], hyper["pad"], hyper["dilation"], dout)
    assert_close(out, t_out, "out")
    for name, ours, theirs in zip(("dx", "dw", "db"), grads, t_grads):
        assert_close(ours, theirs, name)
    n_out, n_cache = R.conv2d_forward(x, w, b, **hyper, strict=strict)
    assert_close(n_out, out, "naive out")
    for name, naive, fast in zip(("dx", "dw", "db"), R.conv2d_backward(dout, n_cache), grads):
        assert_close(naive, fast, "naive " + name)


@given(geom=conv_geometry(max_out=3), bias=st.booleans(), plan=plans(),
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_naive_matches_fast(geom, bias, plan, seed):
    x_shape, w_shape, stride, pad, dilation = geom
    g, x, w, b = _arrays(seed, x_shape, w_shape, bias)
    with chunk_plans(plan):
        out, cache = F.conv2d_forward(x, w, b, stride, pad, dilation)
        dout = g.standard_normal(out.shape)
        fast = F.conv2d_backward(dout, cache)
    n_out, n_cache = R.conv2d_forward(x, w, b, stride, pad, dilation)
    assert_close(n_out, out, "out")
    naive = R.conv2d_backward(dout, n_cache)
    for name, a, b_ in zip(("dx", "dw", "db"), naive, fast):
        if b_ is None:
            assert a is None
        else:
            assert_close(a, b_, name)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 3, 5, 5), (2, 3, 3, 3), dict(pad=1)),
    ((1, 2, 8, 8), (3, 2, 2, 3), dict(stride=(2, 3), dilation=(1, 2))),
    ((2, 1, 6, 6), (2, 1, 1, 1), dict(stride=2, strict=False)),
], ids=["pad1", "stride-dilation", "1x1-floor"])
@pytest.mark.parametrize("kernels", [F, R], ids=["fast", "naive"])
def test_conv2d_numerical_gradients(rng, kernels, x_shape, w_shape, kwargs):
    inputs = [rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])]
    errors = check_kernel(kernels.conv2d_forward, kernels.conv2d_backward, inputs, rng=rng, **kwargs)
    assert set(errors) == {"dx", "dw", "db"}
    for name, err in errors.items():
        assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_sobel_on_a_ramp_gives_the_slope():
    # x[i, j] = 3*j: the horizontal Sobel filter (cross-correlation) measures 8 * slope everywhere.
    x = np.tile(3.0 * np.arange(7), (6, 1))[None, None]
    sobel = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]
    out, _ = F.conv2d_forward(x, sobel, np.array([0.5]))
    np.testing.assert_array_equal(out, np.full((1, 1, 4, 5), 24.5))
    vertical, _ = F.conv2d_forward(x, sobel.transpose(0, 1, 3, 2).copy(), None)
    np.testing.assert_array_equal(vertical, np.zeros((1, 1, 4, 5)))


def test_1x1_conv_is_a_per_pixel_affine_map(rng):
    x, w, b = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal((7, 5, 1, 1)), rng.standard_normal(7)
    out, _ = F.conv2d_forward(x, w, b)
    expected = np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x) + b[:, None, None]
    assert_close(out, expected, "1x1 out")


def test_notes_geometry_examples():
    # The notes: 227x227x3 with 96 11x11 filters, stride 4, no padding -> 55x55x96 (AlexNet);
    # a 7x7 input with a 3x3 filter at stride 2 and pad 1 -> 4x4 (the notes' two-filter demo).
    out, _ = F.conv2d_forward(np.zeros((1, 3, 227, 227), np.float32), np.zeros((96, 3, 11, 11), np.float32), None, 4)
    assert out.shape == (1, 96, 55, 55)
    out, _ = F.conv2d_forward(np.zeros((1, 3, 7, 7)), np.zeros((2, 3, 3, 3)), np.zeros(2), 2, 1)
    assert out.shape == (1, 2, 4, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_keeps_dtype_and_leaves_inputs_alone(rng, dtype):
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in ((2, 3, 6, 6), (4, 3, 3, 3), (4,)))
    copies = [a.copy() for a in (x, w, b)]
    out, cache = F.conv2d_forward(x, w, b, stride=1, pad=1)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_copy = dout.copy()
    grads = F.conv2d_backward(dout, cache)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    for before, after in zip(copies + [dout_copy], (x, w, b, dout)):
        np.testing.assert_array_equal(before, after)
    if dtype == np.float32:
        t_out, _ = oracle.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1, 1)
        np.testing.assert_allclose(out, t_out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, exc, pattern", [
    ((1, 3, 32, 32), (6, 3, 5, 5), dict(stride=2),
     ValueError, r"conv2d: \(W - F \+ 2P\)/S \+ 1 = \(32 - 5 \+ 0\)/2 \+ 1 is not an integer"),
    ((1, 3, 32, 32), (6, 3, 5, 5), dict(stride=2), ValueError, r"strict=False"),
    ((1, 3, 9, 10), (6, 3, 3, 3), dict(stride=2, pad=(1, 0)),
     ValueError, r"\(W - F \+ 2P\)/S \+ 1 = \(10 - 3 \+ 0\)/2 \+ 1 is not an integer along the width"),
    ((1, 3, 8, 8), (6, 3, 3, 3), dict(dilation=2, stride=2), ValueError, r"\(8 - 5 \+ 0\)/2 \+ 1"),
    ((1, 3, 4, 4), (6, 3, 5, 5), {}, ValueError, r"larger than the padded input"),
    ((1, 3, 8, 8), (6, 4, 3, 3), {}, ValueError, r"C = 3 channels .* expects 4"),
    ((3, 8, 8), (6, 3, 3, 3), {}, ValueError, r"conv2d x .* must be 4-D, got shape \(3, 8, 8\)"),
    ((1, 3, 8, 8), (6, 3, 3), {}, ValueError, r"conv2d w .* must be 4-D"),
    ((1, 3, 8, 8), (6, 3, 3, 3), dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
    ((1, 3, 8, 8), (6, 3, 3, 3), dict(pad=-1), ValueError, r"pad must be >= 0, got -1"),
    ((1, 3, 8, 8), (6, 3, 3, 3), dict(stride=1.5), TypeError, r"stride must be an int"),
    ((1, 3, 8, 8), (6, 3, 3, 3), dict(dilation=(1, 2, 3)), ValueError, r"dilation must be an int or a pair"),
], ids=["size-rule", "size-rule-hint", "size-rule-width", "size-rule-dilated", "too-big",
        "channels", "x-rank", "w-rank", "stride0", "pad-neg", "stride-float", "dilation-triple"])
def test_conv2d_errors_name_the_numbers(x_shape, w_shape, kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        F.conv2d_forward(np.zeros(x_shape), np.zeros(w_shape), None, **kwargs)
    with pytest.raises(exc, match=pattern):
        R.conv2d_forward(np.zeros(x_shape), np.zeros(w_shape), None, **kwargs)


def test_conv2d_type_errors():
    x, w = np.zeros((1, 2, 4, 4)), np.zeros((3, 2, 3, 3))
    with pytest.raises(TypeError, match="dtype int64"):
        F.conv2d_forward(np.zeros((1, 2, 4, 4), dtype=np.int64), w, None)
    # parameters follow x's dtype: float32 weights with a float64 x are widened exactly
    out64, _ = F.conv2d_forward(x + 1, w.astype(np.float32) + 0.5, np.ones(3, np.float32))
    assert out64.dtype == np.float64
    np.testing.assert_array_equal(out64, F.conv2d_forward(x + 1, w + 0.5, np.ones(3))[0])
    with pytest.raises(ValueError, match=r"conv2d b must have shape \(3,\), got \(2,\)"):
        F.conv2d_forward(x, w, np.zeros(2))
    out, cache = F.conv2d_forward(x, w, None)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(1, 3, 2, 2\)"):
        F.conv2d_backward(np.zeros((1, 3, 3, 3)), cache)


def test_course_fixed_conv_check():
    # CS231n assignment 2's conv_forward_naive check (stride 2, pad 1), values as published.
    x_shape, w_shape = (2, 3, 4, 4), (3, 3, 4, 4)
    x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
    w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
    b = np.linspace(-0.1, 0.2, num=3)
    correct = np.array([[[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                         [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                         [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
                        [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                         [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                         [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]])
    for kernels in (F, R):
        out, _ = kernels.conv2d_forward(x, w, b, stride=2, pad=1)
        np.testing.assert_allclose(out, correct, rtol=1e-7, atol=1e-8)


# ----------------------------------------------------------------------------- the fast path's
# chunks and column layouts: every combination must give torch's answer.

from cnnkit.functional import conv as conv_module  # noqa: E402
from cnnkit.functional import im2col as im2col_module  # noqa: E402


def _stride_one(geom):
    """The drawn geometry with stride 1 (the wide layout's), the input still holding a window."""
    x_shape, w_shape, _, pad, dilation = geom
    spatial = tuple(max(s, (k - 1) * d + 1 - 2 * p)
                    for s, k, d, p in zip(x_shape[2:], w_shape[2:], dilation, pad))
    return x_shape[:2] + spatial, w_shape, (1, 1), pad, dilation


def _fixed_chunks(step):
    def chunks(n, sample_bytes, budget=None):
        for lo in range(0, n, step):
            yield lo, min(n, lo + step)
    return chunks


@pytest.mark.parametrize("layout", ["heuristic", "wide", "tight"])
@pytest.mark.parametrize("step", [1, 2, 3])
@given(geom=conv_geometry(), bias=st.booleans(), n=st.integers(4, 7),
       seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_torch_in_every_chunking_and_layout(layout, step, geom, bias, n, seed):
    """Batches split into chunks of 1-3 samples with a shorter last chunk, in the wide layout
    (stride 1 only), the tight one and the heuristic's choice, agree with torch."""
    x_shape, w_shape, stride, pad, dilation = _stride_one(geom) if layout == "wide" else geom
    g, x, w, b = _arrays(seed, (n,) + x_shape[1:], w_shape, bias)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_module, "batch_chunks", _fixed_chunks(step))
        if layout != "heuristic":
            mp.setattr(conv_module, "_use_wide", lambda win: layout == "wide")
        _compare_with_torch(g, x, w, b, stride, pad, dilation)


@pytest.mark.parametrize("wide", [False, True])
@given(geom=conv_geometry(), seed=st.integers(0, 2**32 - 1))
def test_input_gradient_is_the_adjoint_of_the_column_product(wide, geom, seed):
    """<w @ im2col(x), D> = <x, input_gradient(w, D)> for any D: the backward scatters exactly
    what the forward gathered. In the wide layout D is zero in the extra columns, as
    dout_matrix makes it."""
    x_shape, w_shape, stride, pad, dilation = _stride_one(geom) if wide else geom
    g = np.random.default_rng(seed)
    x, w = g.standard_normal(x_shape), g.standard_normal(w_shape)
    win = window_geometry(x_shape, w_shape[2:], stride, pad, dilation, "t")
    bufs = im2col_module.ColumnBuffers(x_shape[0], x_shape, win, x.dtype, wide=wide)
    product = w.reshape(w.shape[0], -1) @ bufs.gather(x)
    d = g.standard_normal(product.shape).reshape(-1, x_shape[0], win.h_out, bufs.row)
    d[..., win.w_out:] = 0
    d = d.reshape(product.shape)
    dx = bufs.input_gradient(w, d, np.empty_like(x))
    np.testing.assert_allclose(np.vdot(product, d), np.vdot(x, dx), rtol=1e-11)


def test_wide_layout_refuses_a_stride():
    win = window_geometry((1, 1, 5, 5), (3, 3), 2, 0, 1, "t")
    with pytest.raises(ValueError, match="stride 1"):
        im2col_module.ColumnBuffers(1, (1, 1, 5, 5), win, np.float64, wide=True)


@pytest.mark.parametrize("hyper", [dict(stride=1, pad=1), dict(stride=2, pad=0),
                                   dict(stride=1, pad=0)])
def test_conv2d_backward_without_input_grad(hyper, rng):
    """input_grad=False skips dx (None) and leaves dw and db exactly as they were."""
    x, w, b = rng.standard_normal((3, 2, 5, 5)), rng.standard_normal((4, 2, 3, 3)), \
        rng.standard_normal(4)
    if hyper["stride"] == 1 and hyper["pad"] == 0:
        w = w[:, :, :1, :1].copy()                     # the 1x1 path
    out, cache = F.conv2d_forward(x, w, b, **hyper)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    none, dw2, db2 = F.conv2d_backward(dout, cache, input_grad=False)
    assert none is None and dx is not None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)


def test_conv2d_float32_through_chunks_matches_float64(rng):
    """float32 stays float32 through the buffers, and agrees with the float64 result."""
    x, w = rng.standard_normal((9, 3, 12, 12)), rng.standard_normal((5, 3, 3, 3))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_module, "batch_chunks", _fixed_chunks(4))
        out64, c64 = F.conv2d_forward(x, w, None, pad=1)
        out32, c32 = F.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, pad=1)
        dout = rng.standard_normal(out64.shape)
        g64 = F.conv2d_backward(dout, c64)
        g32 = F.conv2d_backward(dout.astype(np.float32), c32)
    assert out32.dtype == g32[0].dtype == g32[1].dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    for a, e in zip(g32[:2], g64[:2]):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-3)


# ----------------------------------------------------------------------------- grouped conv

@st.composite
def grouped_geometry(draw, max_out=4):
    """conv_geometry with G groups of C/G channels and F/G filters: (x_shape, w_shape, stride,
    pad, dilation, groups), w being (F, C/G, KH, KW)."""
    x_shape, w_shape, stride, pad, dilation = draw(conv_geometry(max_out))
    groups, c_group, f_group = draw(st.integers(1, 4)), draw(st.integers(1, 3)), \
        draw(st.integers(1, 3))
    return ((x_shape[0], groups * c_group) + x_shape[2:],
            (groups * f_group, c_group) + w_shape[2:], stride, pad, dilation, groups)


def _compare_grouped(g, x, w, b, stride, pad, dilation, groups, naive=False, plan="real"):
    """Fast grouped conv (under ``plan``, tests/plans.py) against torch (and the naive loops):
    out, dx, dw, db."""
    with chunk_plans(plan):
        out, cache = F.conv2d_forward(x, w, b, stride, pad, dilation, groups=groups)
        dout = g.standard_normal(out.shape)
        grads = F.conv2d_backward(dout, cache)
    t_out, t_grads = oracle.conv2d_grouped(x, w, b, stride, pad, dilation, groups, dout)
    assert_close(out, t_out, "out")
    for name, ours, theirs in zip(("dx", "dw", "db"), grads, t_grads):
        if b is None and name == "db":
            assert ours is None
        else:
            assert_close(ours, theirs, name)
    if naive:
        n_out, n_cache = R.conv2d_forward(x, w, b, stride, pad, dilation, groups=groups)
        assert_close(n_out, out, "naive out")
        for name, a, f in zip(("dx", "dw", "db"), R.conv2d_backward(dout, n_cache), grads):
            if f is None:
                assert a is None
            else:
                assert_close(a, f, "naive " + name)


@given(geom=grouped_geometry(), bias=st.booleans(), plan=plans(),
       seed=st.integers(0, 2**32 - 1))
def test_grouped_conv2d_matches_torch_random_geometry(geom, bias, plan, seed):
    x_shape, w_shape, stride, pad, dilation, groups = geom
    g, x, w, b = _arrays(seed, x_shape, w_shape, bias)
    _compare_grouped(g, x, w, b, stride, pad, dilation, groups, plan=plan)


@given(geom=grouped_geometry(max_out=2), bias=st.booleans(), plan=plans(),
       seed=st.integers(0, 2**32 - 1))
def test_grouped_conv2d_naive_matches_fast(geom, bias, plan, seed):
    x_shape, w_shape, stride, pad, dilation, groups = geom
    g, x, w, b = _arrays(seed, (min(x_shape[0], 2),) + x_shape[1:], w_shape, bias)
    _compare_grouped(g, x, w, b, stride, pad, dilation, groups, naive=True, plan=plan)


# Every path of the fast kernel (1x1, wide stride-1 columns, tight strided columns), with groups
# of one channel (depthwise) up to AlexNet's two towers.
GROUPED_CASES = [
    ("1x1-g2", (3, 4, 5, 4), (6, 2, 1, 1), dict(groups=2)),
    ("1x1-stride2-g3", (3, 6, 5, 5), (3, 2, 1, 1), dict(groups=3, stride=2)),
    ("3x3-pad1-g2-wide", (3, 4, 7, 7), (6, 2, 3, 3), dict(groups=2, pad=1)),
    ("depthwise-3x3", (3, 5, 6, 6), (5, 1, 3, 3), dict(groups=5, pad=1)),
    ("depthwise-multiplier2", (2, 3, 6, 5), (6, 1, 3, 2), dict(groups=3)),
    ("stride2-dilation-g2-tight", (3, 4, 9, 9), (4, 2, 3, 3), dict(groups=2, stride=2,
                                                                   dilation=(1, 2), pad=(0, 1))),
    ("alexnet-conv2-like", (2, 8, 7, 7), (12, 4, 5, 5), dict(groups=2, pad=2)),
    ("floor-g2", (2, 4, 8, 8), (4, 2, 3, 3), dict(groups=2, stride=2, pad=1, strict=False)),
]


@pytest.mark.parametrize("step", [1, 2, None], ids=["chunk1", "chunk2", "one-chunk"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [c[1:] for c in GROUPED_CASES],
                         ids=[c[0] for c in GROUPED_CASES])
def test_grouped_conv2d_cases_in_every_chunking(rng, x_shape, w_shape, kwargs, step):
    """Each group's output and dx are channel slices of the whole: written in place through
    chunks of one sample (the direct (F, L) GEMM), of two (to_output) and the whole batch."""
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), \
        rng.standard_normal(w_shape[0])
    hyper = {k: kwargs.get(k, d) for k, d in (("stride", 1), ("pad", 0), ("dilation", 1))}
    with pytest.MonkeyPatch.context() as mp:
        if step is not None:
            mp.setattr(conv_module, "batch_chunks", _fixed_chunks(step))
        out, cache = F.conv2d_forward(x, w, b, **hyper, groups=kwargs["groups"],
                                      strict=kwargs.get("strict", True))
        dout = rng.standard_normal(out.shape)
        grads = F.conv2d_backward(dout, cache)
    t_out, t_grads = oracle.conv2d_grouped(x, w, b, hyper["stride"], hyper["pad"],
                                           hyper["dilation"], kwargs["groups"], dout)
    assert_close(out, t_out, "out")
    for name, ours, theirs in zip(("dx", "dw", "db"), grads, t_grads):
        assert_close(ours, theirs, name)
    if step == 1:                                       # the naive loops once per case
        n_out, n_cache = R.conv2d_forward(x, w, b, **kwargs)
        assert_close(n_out, out, "naive out")
        for name, a, f in zip(("dx", "dw", "db"), R.conv2d_backward(dout, n_cache), grads):
            assert_close(a, f, "naive " + name)


@pytest.mark.parametrize("kernels", [F, R], ids=["fast", "naive"])
@pytest.mark.parametrize("w_shape, kwargs", [
    ((4, 2, 3, 3), dict(groups=2, pad=1)),
    ((4, 1, 2, 2), dict(groups=4, stride=2)),
    ((6, 2, 1, 1), dict(groups=2)),
], ids=["g2-pad1", "depthwise-stride2", "1x1-g2"])
def test_grouped_conv2d_numerical_gradients(rng, kernels, w_shape, kwargs):
    inputs = [rng.standard_normal((2, 4, 4, 4)), rng.standard_normal(w_shape),
              rng.standard_normal(w_shape[0])]
    errors = check_kernel(kernels.conv2d_forward, kernels.conv2d_backward, inputs, rng=rng,
                          **kwargs)
    assert set(errors) == {"dx", "dw", "db"}
    for name, err in errors.items():
        assert err < 1e-7, f"{name}: relative error {err:.2e}"


def test_grouped_conv2d_is_independent_convs_stacked(rng):
    """The definition: group g's outputs are the ungrouped conv of its channel slice with its
    filters, and its input channels get their gradient from its filters only."""
    x, w = rng.standard_normal((2, 6, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    out, cache = F.conv2d_forward(x, w, None, pad=1, groups=2)
    dout = rng.standard_normal(out.shape)
    dx, dw, _ = F.conv2d_backward(dout, cache)
    for cs, fs in ((slice(0, 3), slice(0, 2)), (slice(3, 6), slice(2, 4))):
        part, part_cache = F.conv2d_forward(x[:, cs], w[fs], None, pad=1)
        p_dx, p_dw, _ = F.conv2d_backward(dout[:, fs], part_cache)
        assert_close(out[:, fs], part, f"out[{fs}]")
        assert_close(dx[:, cs], p_dx, f"dx[{cs}]")
        assert_close(dw[fs], p_dw, f"dw[{fs}]")


@pytest.mark.parametrize("w_shape, pad", [((4, 2, 3, 3), 1), ((4, 2, 1, 1), 0)],
                         ids=["3x3", "1x1"])
def test_grouped_conv2d_without_input_grad_and_in_float32(rng, w_shape, pad):
    x, w, b = rng.standard_normal((3, 4, 5, 5)), rng.standard_normal(w_shape), \
        rng.standard_normal(4)
    out, cache = F.conv2d_forward(x, w, b, pad=pad, groups=2)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    none, dw2, db2 = F.conv2d_backward(dout, cache, input_grad=False)
    assert none is None and dx is not None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    copies = [a.copy() for a in (x32, w32, b32)]
    out32, cache32 = F.conv2d_forward(x32, w32, b32, pad=pad, groups=2)
    grads32 = F.conv2d_backward(dout.astype(np.float32), cache32)
    assert out32.dtype == np.float32 and all(g.dtype == np.float32 for g in grads32)
    for before, after in zip(copies, (x32, w32, b32)):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(out32, out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape, w_shape, groups, exc, pattern", [
    ((1, 6, 5, 5), (4, 3, 3, 3), 4, ValueError,
     r"groups = 4 must divide the input channels C = 6 \(6 % 4 = 2\)"),
    ((1, 6, 5, 5), (5, 2, 3, 3), 3, ValueError,
     r"groups = 3 must divide the filters F = 5 \(5 % 3 = 2\)"),
    ((1, 6, 5, 5), (4, 2, 3, 3), 2, ValueError,
     r"x has C = 6 channels but w of shape \(4, 2, 3, 3\) with groups = 2 expects 2 \* 2 = 4"),
    ((1, 6, 5, 5), (4, 6, 3, 3), 2, ValueError, r"expects 6 \* 2 = 12 .*\(F, C // groups"),
    ((1, 6, 5, 5), (4, 3, 3, 3), 0, ValueError, r"conv2d groups must be >= 1, got 0"),
    ((1, 6, 5, 5), (4, 3, 3, 3), 2.0, TypeError, r"conv2d groups must be an int"),
], ids=["C-not-divisible", "F-not-divisible", "w-channels", "w-ungrouped", "groups0",
        "groups-float"])
def test_grouped_conv2d_errors_name_the_numbers(x_shape, w_shape, groups, exc, pattern):
    for kernels in (F, R):
        with pytest.raises(exc, match=pattern):
            kernels.conv2d_forward(np.zeros(x_shape), np.zeros(w_shape), None, groups=groups)
