"""Layer modules: each equals its kernel and its torch.nn twin (after loading our state dict);
gradients accumulate; config rebuilds; constructors validate; default init is He."""

import json

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit import nn
from tests.helpers import assert_close, away_from_zero, distinct
from tests.nn.torch_models import compare_with_torch, grads, perturb, run_ours

# id -> (factory, x shape, input kind). Every geometry is valid under its strict setting.
CASES = {
    "linear-3d-input": (lambda r: nn.Linear(12, 5, rng=r), (4, 3, 4), "normal"),
    "linear-nobias": (lambda r: nn.Linear(6, 3, bias=False, init="xavier", rng=r), (5, 6),
                      "normal"),
    "conv-pad1": (lambda r: nn.Conv2d(3, 4, 3, padding=1, rng=r), (2, 3, 6, 6), "normal"),
    "conv-stride-dilation-nobias": (
        lambda r: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                            bias=False, rng=r), (2, 2, 7, 6), "normal"),
    "conv-floor": (lambda r: nn.Conv2d(2, 3, 3, stride=2, padding=1, strict=False, rng=r),
                   (2, 2, 8, 8), "normal"),
    "local": (lambda r: nn.LocallyConnected2d(2, 3, 3, input_size=(7, 6), stride=(2, 1),
                                              padding=(0, 1), rng=r), (2, 2, 7, 6), "normal"),
    "maxpool": (lambda r: nn.MaxPool2d(2), (2, 3, 6, 8), "distinct"),
    "maxpool-overlap-pad": (lambda r: nn.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 7),
                            "distinct"),
    "maxpool-floor": (lambda r: nn.MaxPool2d(2, strict=False), (1, 2, 5, 7), "distinct"),
    "avgpool": (lambda r: nn.AvgPool2d(2), (2, 3, 4, 6), "normal"),
    "avgpool-overlap-pad": (lambda r: nn.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 7), "normal"),
    "l2pool": (lambda r: nn.L2Pool2d(2), (2, 3, 4, 6), "normal"),
    "l2pool-nonsquare": (lambda r: nn.L2Pool2d((3, 2), stride=(2, 1)), (2, 2, 7, 5), "normal"),
    "globalavgpool": (lambda r: nn.GlobalAvgPool2d(), (2, 3, 4, 5), "normal"),
    "relu": (lambda r: nn.ReLU(), (3, 4, 5), "away"),
    "leakyrelu": (lambda r: nn.LeakyReLU(0.2), (3, 4, 5), "away"),
    "sigmoid": (lambda r: nn.Sigmoid(), (3, 4, 5), "normal"),
    "tanh": (lambda r: nn.Tanh(), (3, 4, 5), "normal"),
    "flatten": (lambda r: nn.Flatten(), (2, 3, 4, 5), "normal"),
    "bn1d-train": (lambda r: nn.BatchNorm1d(5, momentum=0.8), (8, 5), "normal"),
    "bn1d-eval": (lambda r: nn.BatchNorm1d(5).eval(), (8, 5), "normal"),
    "bn2d-train": (lambda r: nn.BatchNorm2d(3, eps=1e-3), (4, 3, 3, 5), "normal"),
    "bn2d-eval": (lambda r: nn.BatchNorm2d(3).eval(), (4, 3, 3, 5), "normal"),
}
WEIGHTED = [k for k in CASES if k.split("-")[0] in ("linear", "conv", "local", "bn1d", "bn2d")]


def make(case, rng):
    """The case's module in float64 with random parameters and statistics, and an input."""
    factory, shape, kind = CASES[case]
    model = perturb(factory(rng).astype(np.float64), rng)
    x = {"normal": lambda: rng.standard_normal(shape), "distinct": lambda: distinct(rng, shape),
         "away": lambda: away_from_zero(rng, shape)}[kind]()
    return model, x


def kernel_reference(m, x):
    """The module's computation written with the kernels, from its state before the forward:
    (out, vjp, buffers) with vjp(dout) -> (dx, {param name: grad}) and the expected buffers."""
    w = None if getattr(m, "weight", None) is None else m.weight.data
    b = None if getattr(m, "bias", None) is None else m.bias.data

    def with_params(backward, cache, transpose=False):
        def vjp(dout):
            dx, dw, db = backward(dout, cache)
            found = {"weight": dw.T if transpose else dw, "bias": db}
            return dx, {k: v for k, v in found.items() if getattr(m, k) is not None}
        return vjp

    def plain(backward, cache):
        return lambda dout: (backward(dout, cache), {})

    if isinstance(m, nn.Linear):
        out, c = F.affine_forward(x, w.T, b)
        return out, with_params(F.affine_backward, c, transpose=True), {}
    if isinstance(m, nn.Conv2d):
        out, c = F.conv2d_forward(x, w, b, m.stride, m.padding, m.dilation, strict=m.strict)
        return out, with_params(F.conv2d_backward, c), {}
    if isinstance(m, nn.LocallyConnected2d):
        out, c = F.locally_connected2d_forward(x, w, b, m.stride, m.padding, m.dilation,
                                               strict=m.strict)
        return out, with_params(F.locally_connected2d_backward, c), {}
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        spatial = "spatial_" if isinstance(m, nn.BatchNorm2d) else ""
        if m.training:
            out, c = getattr(F, f"{spatial}batchnorm_forward")(x, w, b, m.eps)
            rm, rv = F.batchnorm_running_update(m.running_mean, m.running_var, c.mean, c.var,
                                                c.count, m.momentum)
            buffers = {"running_mean": rm, "running_var": rv, "num_batches_tracked": 1}
            return out, with_params(getattr(F, f"{spatial}batchnorm_backward"), c), buffers
        out, c = getattr(F, f"{spatial}batchnorm_eval_forward")(x, w, b, m.running_mean,
                                                                m.running_var, m.eps)
        buffers = {"running_mean": m.running_mean, "running_var": m.running_var,
                   "num_batches_tracked": 0}
        return out, with_params(getattr(F, f"{spatial}batchnorm_eval_backward"), c), buffers
    if isinstance(m, nn.Flatten):
        return x.reshape(x.shape[0], -1), lambda dout: (dout.reshape(x.shape), {}), {}
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
        name = "max_pool2d" if isinstance(m, nn.MaxPool2d) else "avg_pool2d"
        out, c = getattr(F, f"{name}_forward")(x, m.kernel_size, m.stride, m.padding,
                                              strict=m.strict)
        return out, plain(getattr(F, f"{name}_backward"), c), {}
    if isinstance(m, nn.L2Pool2d):
        out, c = F.l2_pool2d_forward(x, m.kernel_size, m.stride, strict=m.strict)
        return out, plain(F.l2_pool2d_backward, c), {}
    if isinstance(m, nn.LeakyReLU):
        out, c = F.leaky_relu_forward(x, m.negative_slope)
        return out, plain(F.leaky_relu_backward, c), {}
    name = {nn.GlobalAvgPool2d: "global_avg_pool2d", nn.ReLU: "relu", nn.Sigmoid: "sigmoid",
            nn.Tanh: "tanh"}[type(m)]
    out, c = getattr(F, f"{name}_forward")(x)
    return out, plain(getattr(F, f"{name}_backward"), c), {}


@pytest.mark.parametrize("case", CASES)
def test_layer_equals_its_kernel(case, rng):
    model, x = make(case, rng)
    want_out, vjp, want_buffers = kernel_reference(model, x)
    out, dout, dx, got = run_ours(model, x, rng)
    want_dx, want_grads = vjp(dout)
    assert_close(out, want_out, "out")
    assert_close(dx, want_dx, "dx")
    assert list(got) == list(want_grads), "parameters"
    for name in got:
        assert_close(got[name], want_grads[name], f"grad {name}")
    for name, value in want_buffers.items():
        assert_close(model.state_dict()[name], value, name)


@pytest.mark.parametrize("case", CASES)
def test_layer_matches_torch(case, rng):
    model, x = make(case, rng)
    compare_with_torch(model, x, rng, assert_close)


@pytest.mark.parametrize("case", WEIGHTED)
def test_gradients_accumulate_over_two_backwards(case, rng):
    model, x = make(case, rng)
    out = model(x)
    douts = rng.standard_normal(out.shape), rng.standard_normal(out.shape)
    single = []
    for dout in douts:
        model.zero_grad()
        model(x)
        model.backward(dout)
        single.append(grads(model))
    model.zero_grad()
    for dout in douts:                     # no zero_grad in between: the gradients add up
        model(x)
        model.backward(dout)
    total = grads(model)
    for name in total:
        assert np.any(single[0][name] != 0), name
        assert_close(total[name], single[0][name] + single[1][name], f"accumulated {name}")


@pytest.mark.parametrize("case", CASES)
def test_config_rebuilds_the_layer(case, rng):
    model, x = make(case, rng)
    config = json.loads(json.dumps(model.config()))          # JSON-able, and survives the trip
    rebuilt = nn.build(config).astype(np.float64).train(model.training)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.config() == config
    assert repr(rebuilt) == repr(model)
    assert_close(rebuilt(x), model(x), "rebuilt out")


@pytest.mark.parametrize("case", ["linear-3d-input", "conv-pad1", "local", "bn2d-train"])
def test_float32_in_float32_out(case, rng):
    factory, shape, _ = CASES[case]
    model = factory(rng)
    out = model(rng.standard_normal(shape).astype(np.float32))
    dx = model.backward(rng.standard_normal(out.shape).astype(np.float32))
    assert out.dtype == dx.dtype == np.float32
    assert all(p.dtype == p.grad.dtype == np.float32 for p in model.parameters())
    assert model.state_dict().get("running_var", np.zeros(1, np.float32)).dtype == np.float32


def test_float64_input_through_float32_batchnorm_keeps_buffers_float32(rng):
    bn = nn.BatchNorm2d(3)
    out = bn(rng.standard_normal((2, 3, 4, 4)))
    assert out.dtype == np.float64
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float32
    assert bn.num_batches_tracked.dtype == np.int64 and bn.num_batches_tracked.shape == ()


# ----------------------------------------------------------------------------- dropout

@pytest.mark.parametrize("mode", ["upscale_in_train", "downscale_in_infer"])
def test_dropout_equals_its_kernel_in_both_modes(mode, rng):
    x = rng.standard_normal((6, 7))
    drop = nn.Dropout(0.3, mode, rng=np.random.default_rng(5))
    for training in (True, False):
        drop.train(training)
        out = drop(x)
        dout = rng.standard_normal(x.shape)
        dx = drop.backward(dout)
        want, cache = F.dropout_forward(x, 0.3, np.random.default_rng(5), mode=mode,
                                        training=training)
        assert_close(out, want, f"out training={training}")
        assert_close(dx, F.dropout_backward(dout, cache), f"dx training={training}")


def test_dropout_eval_is_torch_dropout_eval(rng):
    model = nn.Dropout(0.4).eval()
    compare_with_torch(model, rng.standard_normal((3, 4)), rng, assert_close)


def test_dropout_config_has_p_and_mode_only():
    assert nn.Dropout(0.2, "downscale_in_infer", rng=np.random.default_rng(0)).config() == {
        "type": "Dropout", "args": {"p": 0.2, "mode": "downscale_in_infer"}}


# ----------------------------------------------------------------------------- repr

@pytest.mark.parametrize("layer, text", [
    (nn.Linear(4, 3), "Linear(in_features=4, out_features=3)"),
    (nn.Linear(4, 3, bias=False), "Linear(in_features=4, out_features=3, bias=False)"),
    (nn.Conv2d(16, 32, 3), "Conv2d(16, 32, kernel_size=(3, 3))"),
    (nn.Conv2d(1, 6, (5, 3), stride=2, padding=(2, 1), dilation=2, bias=False, strict=False),
     "Conv2d(1, 6, kernel_size=(5, 3), stride=(2, 2), padding=(2, 1), dilation=(2, 2), "
     "bias=False, strict=False)"),
    (nn.LocallyConnected2d(3, 4, 3, input_size=7, stride=2),
     "LocallyConnected2d(3, 4, kernel_size=(3, 3), input_size=(7, 7), stride=(2, 2))"),
    (nn.MaxPool2d(2), "MaxPool2d(kernel_size=(2, 2))"),
    (nn.AvgPool2d(3, stride=2, padding=1), "AvgPool2d(kernel_size=(3, 3), stride=(2, 2), "
                                           "padding=(1, 1))"),
    (nn.L2Pool2d(2, strict=False), "L2Pool2d(kernel_size=(2, 2), strict=False)"),
    (nn.GlobalAvgPool2d(), "GlobalAvgPool2d()"),
    (nn.ReLU(), "ReLU()"), (nn.LeakyReLU(), "LeakyReLU()"),
    (nn.LeakyReLU(0.2), "LeakyReLU(negative_slope=0.2)"),
    (nn.BatchNorm2d(6), "BatchNorm2d(6)"),
    (nn.BatchNorm1d(6, eps=1e-3, momentum=0.8), "BatchNorm1d(6, eps=0.001, momentum=0.8)"),
    (nn.Dropout(), "Dropout()"),
    (nn.Dropout(0.3, "downscale_in_infer"), "Dropout(p=0.3, mode='downscale_in_infer')"),
], ids=repr)
def test_repr_shows_non_default_hyperparameters(layer, text):
    assert repr(layer) == text


# ----------------------------------------------------------------------------- init

@pytest.mark.parametrize("make_layer, fan_in", [
    (lambda r: nn.Linear(1024, 256, rng=r), 1024),
    (lambda r: nn.Conv2d(64, 64, 3, rng=r), 64 * 9),
], ids=["linear", "conv"])
def test_default_init_is_he_normal_and_bias_zero(make_layer, fan_in, rng):
    layer = make_layer(rng)
    w = layer.weight.data.astype(np.float64)
    # Sample std of n normal draws has relative standard error 1/sqrt(2n); 6 of them (a false
    # failure about once in 5e8 runs) is 1.2% for Linear's 262144 weights, 3.1% for the conv's.
    tol = 6 / np.sqrt(2 * w.size)
    assert abs(w.std() / np.sqrt(2 / fan_in) - 1) < tol
    assert abs(w.mean()) < 6 * np.sqrt(2 / fan_in) / np.sqrt(w.size)
    assert layer.weight.dtype == np.float32
    assert not layer.bias.data.any()


@pytest.mark.parametrize("init, std", [
    ("xavier", np.sqrt(2 / (1024 + 256))), ("gaussian", 1e-2), ("he_uniform", np.sqrt(2 / 1024)),
    ("xavier_uniform", np.sqrt(2 / (1024 + 256)))])
def test_init_choice_sets_the_weight_scale(init, std, rng):
    w = nn.Linear(1024, 256, init=init, rng=rng).weight.data.astype(np.float64)
    # The uniform draws' std has a smaller standard error (sqrt(0.2/n)); one bound serves both.
    assert abs(w.std() / std - 1) < 6 / np.sqrt(2 * w.size)


def test_gaussian_init_takes_weight_scale(rng):
    w = nn.Conv2d(64, 64, 3, init="gaussian", weight_scale=1e-3, rng=rng).weight.data
    assert abs(w.astype(np.float64).std() / 1e-3 - 1) < 6 / np.sqrt(2 * w.size)
    config = nn.Conv2d(1, 1, 3, init="gaussian", weight_scale=0.5).config()
    assert config["args"]["weight_scale"] == 0.5


def test_same_rng_seed_gives_same_weights():
    a = nn.Conv2d(3, 4, 3, rng=np.random.default_rng(7))
    b = nn.Conv2d(3, 4, 3, rng=np.random.default_rng(7))
    assert np.array_equal(a.weight.data, b.weight.data)


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("build, error, match", [
    (lambda: nn.Linear(0, 3), ValueError, "in_features must be >= 1"),
    (lambda: nn.Linear(2.5, 3), TypeError, "in_features must be an int"),
    (lambda: nn.Linear(4, 3, bias="yes"), TypeError, "bias must be True or False"),
    (lambda: nn.Linear(4, 3, init="kaiming"), ValueError, "init must be one of"),
    (lambda: nn.Linear(4, 3, weight_scale=0.1), ValueError, "init='gaussian' only"),
    (lambda: nn.Linear(4, 3, init="gaussian", weight_scale=-1.0), ValueError, "weight_scale"),
    (lambda: nn.Linear(4, 3, rng=0), TypeError, "Generator"),
    (lambda: nn.Conv2d(3, 4, kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (lambda: nn.Conv2d(3, 4, kernel_size=(3, 3, 3)), ValueError,
     "kernel_size must be an int or a pair"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: nn.Conv2d(3, 4, 3, stride=1.5), TypeError, "stride must be an int"),
    (lambda: nn.Conv2d(3, 4, 3, strict=None), TypeError, "strict"),
    (lambda: nn.LocallyConnected2d(3, 4, 3, input_size=8, stride=2), ValueError,
     r"\(8 - 3 \+ 0\)/2 \+ 1 is not an integer"),
    (lambda: nn.LocallyConnected2d(3, 4, 5, input_size=3), ValueError, "larger than the padded"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "at most half the kernel"),
    (lambda: nn.AvgPool2d(0), ValueError, "kernel_size must be >= 1"),
    (lambda: nn.L2Pool2d(2, stride=0), ValueError, "stride must be >= 1"),
    (lambda: nn.LeakyReLU("0.1"), TypeError, "negative_slope"),
    (lambda: nn.BatchNorm2d(0), ValueError, "num_features must be >= 1"),
    (lambda: nn.BatchNorm1d(3, eps=0), ValueError, "eps must be > 0"),
    (lambda: nn.BatchNorm1d(3, momentum=1.5), ValueError, "momentum must be in"),
    (lambda: nn.Dropout(p=1.5), ValueError, r"must be in \[0, 1\], got 1.5"),
    (lambda: nn.Dropout(p="half"), TypeError, "Dropout p"),
    (lambda: nn.Dropout(0.5, mode="scale"), ValueError, "mode must be one of"),
    (lambda: nn.Dropout(0.5, rng=np.random.RandomState(0)), TypeError, "Generator"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_constructors_validate(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("layer, shape, match", [
    (nn.BatchNorm2d(3), (4, 3), r"BatchNorm2d expects \(N, C, H, W\) input, got shape \(4, 3\) "
                                r"\(2-D\); use BatchNorm1d"),
    (nn.BatchNorm1d(3), (4, 3, 5), r"BatchNorm1d expects \(N, K\) input, got shape \(4, 3, 5\) "
                                   r"\(3-D\); use BatchNorm2d"),
    (nn.BatchNorm2d(3), (4, 5, 2, 2), r"BatchNorm2d\(3\) expects 3 features on axis 1"),
    (nn.Linear(12, 5), (2, 13), r"x of shape \(2, 13\) has D = 13 features per example, "
                                r"expected in_features = 12"),
    (nn.Conv2d(3, 4, 3), (2, 2, 5, 5), "x has C = 2 channels"),
    (nn.LocallyConnected2d(1, 2, 3, input_size=5), (1, 1, 6, 6), "w is for a 3x3 output grid"),
    (nn.MaxPool2d(2), (1, 1, 5, 4), r"\(5 - 2 \+ 0\)/2 \+ 1 is not an integer along the height"),
    (nn.GlobalAvgPool2d(), (2, 3), "must be 4-D"),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None)
def test_forward_rejects_bad_input_with_the_numbers(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(shape, np.float32))


@pytest.mark.parametrize("layer", [nn.Linear(4, 3), nn.ReLU(), nn.Flatten(), nn.MaxPool2d(2),
                                   nn.Conv2d(2, 3, 3, padding=1)], ids=lambda m: type(m).__name__)
def test_backward_rejects_a_dout_of_the_wrong_shape(layer):
    x = np.ones((2, 4) if isinstance(layer, nn.Linear) else (2, 2, 4, 4), np.float32)
    out = layer(x)
    with pytest.raises(ValueError, match="dout must have the forward output's shape"):
        layer.backward(np.ones(out.shape[:-1] + (out.shape[-1] + 1,), np.float32))


def test_flatten_backward_returns_a_new_array(rng):
    flat = nn.Flatten()
    flat(rng.standard_normal((2, 3, 4)))
    dout = rng.standard_normal((2, 12))
    dx = flat.backward(dout)
    assert dx.shape == (2, 3, 4) and not np.shares_memory(dx, dout)


# ----------------------------------------------------------------------------- grouped Conv2d

from tests import oracle  # noqa: E402

GROUPED = {
    "g2-pad1": (lambda r: nn.Conv2d(4, 6, 3, padding=1, groups=2, rng=r), (2, 4, 5, 5)),
    "depthwise-stride2-nobias": (lambda r: nn.Conv2d(3, 6, (3, 2), stride=2, groups=3,
                                                     bias=False, rng=r), (2, 3, 7, 6)),
    "1x1-g3": (lambda r: nn.Conv2d(6, 3, 1, groups=3, rng=r), (2, 6, 3, 4)),
}


@pytest.mark.parametrize("case", GROUPED)
def test_grouped_conv2d_matches_torch(case, rng):
    factory, shape = GROUPED[case]
    model = perturb(factory(rng).astype(np.float64), rng)
    x = rng.standard_normal(shape)
    out, dout, dx, got = run_ours(model, x, rng)
    b = None if model.bias is None else model.bias.data
    t_out, (t_dx, t_dw, t_db) = oracle.conv2d_grouped(x, model.weight.data, b, model.stride,
                                                      model.padding, model.dilation,
                                                      model.groups, dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")
    assert_close(got["weight"], t_dw, "grad weight")
    if b is not None:
        assert_close(got["bias"], t_db, "grad bias")
    shapes = oracle.conv2d_state_shapes(model.in_channels, model.out_channels,
                                        model.kernel_size, model.groups, model.bias is not None)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


@pytest.mark.parametrize("case", GROUPED)
def test_grouped_conv2d_config_rebuilds_it(case, rng):
    factory, shape = GROUPED[case]
    model = perturb(factory(rng).astype(np.float64), rng)
    config = json.loads(json.dumps(model.config()))
    assert config["args"]["groups"] == model.groups > 1
    rebuilt = nn.build(config).astype(np.float64)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.groups == model.groups and repr(rebuilt) == repr(model)
    x = rng.standard_normal(shape)
    assert_close(rebuilt(x), model(x), "rebuilt out")


def test_conv2d_groups_in_repr_and_config():
    alexnet_conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
    assert repr(alexnet_conv2) == "Conv2d(96, 256, kernel_size=(5, 5), padding=(2, 2), groups=2)"
    assert alexnet_conv2.weight.shape == (256, 48, 5, 5)
    assert "groups" not in repr(nn.Conv2d(4, 4, 3))
    assert nn.Conv2d(4, 4, 3).config()["args"]["groups"] == 1
    old = nn.Conv2d(4, 4, 3).config()
    del old["args"]["groups"]                       # a checkpoint written before groups existed
    assert nn.build(old).groups == 1


def test_grouped_conv2d_init_uses_the_group_fan_in(rng):
    layer = nn.Conv2d(256, 256, 3, groups=4, rng=rng)
    w = layer.weight.data.astype(np.float64)
    fan_in = 256 // 4 * 9                            # one filter sees C/G channels
    assert abs(w.std() / np.sqrt(2 / fan_in) - 1) < 6 / np.sqrt(2 * w.size)


@pytest.mark.parametrize("build, error, match", [
    (lambda: nn.Conv2d(6, 4, 3, groups=4), ValueError,
     r"groups = 4 must divide in_channels = 6 \(6 % 4 = 2\)"),
    (lambda: nn.Conv2d(6, 4, 3, groups=3), ValueError,
     r"groups = 3 must divide out_channels = 4 \(4 % 3 = 1\)"),
    (lambda: nn.Conv2d(6, 4, 3, groups=0), ValueError, "groups must be >= 1"),
    (lambda: nn.Conv2d(6, 4, 3, groups=True), TypeError, "groups must be an int"),
], ids=["in", "out", "zero", "bool"])
def test_conv2d_groups_validated(build, error, match):
    with pytest.raises(error, match=match):
        build()


# ----------------------------------------------------------------------------- LRN

@pytest.mark.parametrize("size, shape", [(5, (2, 7, 3, 3)), (4, (2, 6, 5)), (2, (1, 3, 2, 2, 2))],
                         ids=["odd-4d", "even-3d", "5d"])
def test_local_response_norm_equals_kernel_and_torch(size, shape, rng):
    layer = nn.LocalResponseNorm(size, alpha=0.3, beta=0.6, k=1.5)
    x = rng.standard_normal(shape)
    out, dout, dx, got = run_ours(layer, x, rng)
    assert got == {} and layer.state_dict() == {}
    want, cache = F.lrn_forward(x, size, 0.3, 0.6, 1.5)
    assert_close(out, want, "out")
    assert_close(dx, F.lrn_backward(dout, cache), "dx")
    t_out, (t_dx,) = oracle.local_response_norm(x, size, 0.3, 0.6, 1.5, dout)
    assert_close(out, t_out, "torch out")
    assert_close(dx, t_dx, "torch dx")


def test_local_response_norm_repr_and_config_are_pytorchs(rng):
    layer = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    assert repr(layer) == oracle.local_response_norm_repr(5, 1e-4, 0.75, 2.0)
    assert repr(nn.LocalResponseNorm(3)) == oracle.local_response_norm_repr(3, 1e-4, 0.75, 1.0)
    config = json.loads(json.dumps(layer.config()))
    assert config == {"type": "LocalResponseNorm",
                      "args": {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}}
    rebuilt = nn.build(config)
    x = rng.standard_normal((2, 8, 3, 3))
    assert_close(rebuilt(x), layer(x), "rebuilt out")


@pytest.mark.parametrize("build, error, match", [
    (lambda: nn.LocalResponseNorm(0), ValueError, "LocalResponseNorm size must be >= 1"),
    (lambda: nn.LocalResponseNorm(5, k=-1.0), ValueError, "LocalResponseNorm k must be > 0"),
    (lambda: nn.LocalResponseNorm(5, alpha=-1.0), ValueError, "alpha must be >= 0, got -1.0"),
    (lambda: nn.LocalResponseNorm(5.0), TypeError, "size must be an int"),
], ids=["size0", "k", "alpha", "size-float"])
def test_local_response_norm_validates(build, error, match):
    with pytest.raises(error, match=match):
        build()
    with pytest.raises(ValueError, match=r"got shape \(2, 5\) \(2-D\)"):
        nn.LocalResponseNorm(3)(np.ones((2, 5)))


# ----------------------------------------------------------------------------- layer, group norm

@pytest.mark.parametrize("make, kind, kwargs", [
    (lambda: nn.LayerNorm(7), "LayerNorm", dict(normalized_shape=7)),
    (lambda: nn.LayerNorm((3, 4), eps=1e-3, elementwise_affine=False), "LayerNorm",
     dict(normalized_shape=(3, 4), eps=1e-3, elementwise_affine=False)),
    (lambda: nn.LayerNorm([5], bias=False), "LayerNorm", dict(normalized_shape=[5], bias=False)),
    (lambda: nn.GroupNorm(2, 6), "GroupNorm", dict(num_groups=2, num_channels=6)),
    (lambda: nn.GroupNorm(3, 3, eps=0.01, affine=False), "GroupNorm",
     dict(num_groups=3, num_channels=3, eps=0.01, affine=False)),
    (lambda: nn.GroupNorm(1, 4, bias=False), "GroupNorm",
     dict(num_groups=1, num_channels=4, bias=False)),
], ids=["ln", "ln-plain", "ln-no-bias", "gn", "in-plain", "gn-no-bias"])
def test_layer_and_group_norm_reprs_and_state_dicts_are_pytorchs(make, kind, kwargs, rng):
    layer = make()
    assert repr(layer) == oracle.norm_module_repr(kind, **kwargs)
    twin = getattr(oracle.torch.nn, kind)(**kwargs)
    theirs = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert {k: v.shape for k, v in layer.state_dict().items()} == theirs
    for name, value in twin.state_dict().items():             # ones and zeros, as PyTorch's
        np.testing.assert_array_equal(layer.state_dict()[name], value.numpy())
    config = json.loads(json.dumps(layer.config()))
    rebuilt = nn.build(config)
    assert rebuilt.config() == config and repr(rebuilt) == repr(layer)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == theirs


def test_layer_and_group_norm_compute_the_same_in_training_and_eval(rng):
    for layer, shape in ((nn.GroupNorm(2, 4), (3, 4, 5, 2)), (nn.LayerNorm((4, 5)), (2, 3, 4, 5))):
        perturb(layer, rng)
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(layer.train()(x), layer.eval()(x))
        assert layer.training_effect() is None and layer.state_dict().keys() == {"weight", "bias"}


@pytest.mark.parametrize("build, error, match", [
    (lambda: nn.GroupNorm(4, 6), ValueError, "num_groups 4 must divide the 6 channels"),
    (lambda: nn.GroupNorm(0, 6), ValueError, "num_groups must be >= 1"),
    (lambda: nn.GroupNorm(2, 0), ValueError, "num_channels must be >= 1"),
    (lambda: nn.GroupNorm(2, 4, eps=-1.0), ValueError, "eps must be > 0"),
    (lambda: nn.GroupNorm(2, 4, affine=1), TypeError, "affine must be True or False"),
    (lambda: nn.LayerNorm(0), ValueError, "normalized_shape must be one or more sizes >= 1"),
    (lambda: nn.LayerNorm(()), ValueError, "normalized_shape must be one or more sizes >= 1"),
    (lambda: nn.LayerNorm("7"), ValueError, "normalized_shape"),
    (lambda: nn.LayerNorm(None), TypeError, "normalized_shape must be an int or a tuple"),
    (lambda: nn.LayerNorm(4, bias="no"), TypeError, "bias must be True or False"),
], ids=["gn-divide", "gn-0", "gn-c0", "gn-eps", "gn-affine", "ln-0", "ln-empty", "ln-str",
        "ln-none", "ln-bias"])
def test_layer_and_group_norm_validate_in_one_line(build, error, match):
    with pytest.raises(error, match=match) as info:
        build()
    assert "\n" not in str(info.value)


def test_layer_and_group_norm_name_a_wrong_input():
    with pytest.raises(ValueError, match="the input has C = 5 channels but the layer expects 4"):
        nn.GroupNorm(2, 4)(np.ones((2, 5, 3, 3)))
    with pytest.raises(ValueError, match=r"normalises the last 2 axes of size \(3, 4\), got an "
                                         r"input of shape \(4, 3\) per example"):
        nn.LayerNorm((3, 4))(np.ones((2, 4, 3)))
