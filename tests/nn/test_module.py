"""The Module contract: registries, backward bookkeeping, modes, state dicts, config, rng states."""

import json

import numpy as np
import pytest

from cnnkit import nn
from cnnkit.nn.module import _REGISTRY
from tests.helpers import assert_close
from tests.nn.torch_models import perturb


def small_net(rng, p=0.5):
    """conv-BN-ReLU-pool-flatten-dropout-linear, float64, with random parameters and statistics."""
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(p, rng=np.random.default_rng(1)),
                        nn.Linear(12, 4, rng=rng))
    perturb(net.astype(np.float64), rng)
    # Random gamma and beta could leave every channel negative before the ReLU (a dead net, a
    # constant output); this keeps about half of each channel alive.
    net[1].weight.data = rng.uniform(0.5, 1.5, 3)
    net[1].bias.data = rng.uniform(0.0, 0.5, 3)
    return net


X_SHAPE = (5, 2, 4, 4)


# ----------------------------------------------------------------------------- Parameter

def test_parameter_copies_its_data_and_starts_with_zero_grad():
    data = np.ones((2, 3), np.float32)
    p = nn.Parameter(data)
    data[0, 0] = 5
    assert p.data[0, 0] == 1 and p.grad.shape == (2, 3) and p.grad.dtype == np.float32
    assert not p.grad.any()
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(np.ones(3, np.int64))


# ----------------------------------------------------------------------------- registries

def test_registries_keep_order_and_pytorch_names(rng):
    net = small_net(rng)
    assert [n for n, _ in net.named_parameters()] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "6.weight", "6.bias"]
    assert list(net.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "6.weight", "6.bias"]
    assert net.num_parameters() == 3 * 2 * 9 + 3 + 3 + 3 + 4 * 12 + 4
    assert [n for n, _ in net.named_modules()][:3] == ["", "0", "1"]


def test_assigning_over_a_parameter_or_module_needs_the_same_kind():
    lin = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="Linear.weight holds a Parameter"):
        lin.weight = np.zeros((2, 3))
    lin.bias = None                                   # removing a parameter is allowed
    assert [n for n, _ in lin.named_parameters()] == ["weight"]


def test_subclass_must_call_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(np.zeros(2))

    with pytest.raises(RuntimeError, match="must call super"):
        Broken()
    _REGISTRY.pop("Broken", None)


def test_private_bases_are_not_buildable():
    assert not [name for name in _REGISTRY if name.startswith("_")]
    with pytest.raises(ValueError, match="unknown module type '_Pool2d'"):
        nn.build({"type": "_Pool2d", "args": {"kernel_size": 2}})


# ----------------------------------------------------------------------------- backward bookkeeping

LAYERS = [lambda: nn.Linear(4, 3), lambda: nn.Conv2d(2, 3, 3, padding=1),
          lambda: nn.LocallyConnected2d(2, 3, 3, input_size=4, padding=1),
          lambda: nn.MaxPool2d(2), lambda: nn.AvgPool2d(2), lambda: nn.L2Pool2d(2),
          lambda: nn.GlobalAvgPool2d(), lambda: nn.ReLU(), lambda: nn.LeakyReLU(),
          lambda: nn.Sigmoid(), lambda: nn.Tanh(), lambda: nn.Flatten(), lambda: nn.BatchNorm1d(4),
          lambda: nn.BatchNorm2d(2), lambda: nn.Dropout(), lambda: nn.Sequential(nn.ReLU()),
          lambda: nn.Residual(nn.ReLU())]


@pytest.mark.parametrize("make_layer", LAYERS, ids=lambda f: type(f()).__name__)
def test_backward_before_forward_and_a_second_backward_raise(make_layer, rng):
    layer = make_layer()
    x_shape = (3, 4) if isinstance(layer, nn.Linear | nn.BatchNorm1d) else (3, 2, 4, 4)
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
        layer.backward(np.zeros(x_shape, np.float32))
    out = layer(rng.standard_normal(x_shape).astype(np.float32))
    dout = rng.standard_normal(out.shape).astype(np.float32)
    assert layer.backward(dout).shape == x_shape
    with pytest.raises(RuntimeError, match="or twice for one forward"):
        layer.backward(dout)


def test_zero_grad_resets_every_gradient(rng):
    net = small_net(rng)
    out = net(rng.standard_normal(X_SHAPE))
    net.backward(rng.standard_normal(out.shape))
    # (The conv bias feeds batch norm, which removes any constant: its gradient is ~0, not 0.)
    assert all(p.grad.any() for name, p in net.named_parameters() if name != "0.bias")
    net.zero_grad()
    assert not any(p.grad.any() for p in net.parameters())


# ----------------------------------------------------------------------------- modes

def test_train_and_eval_switch_dropout_and_batchnorm_recursively(rng):
    net = nn.Sequential(small_net(rng, p=0.5))
    x = rng.standard_normal(X_SHAPE)
    assert net.eval() is net
    assert all(not m.training for _, m in net.named_modules())
    before = net.state_dict()
    eval_out = net(x)
    assert_close(net(x), eval_out, "eval is deterministic")
    after = net.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before), "eval updated a buffer"
    assert net.train() is net
    assert all(m.training for _, m in net.named_modules())
    train_out = net(x)
    assert not np.allclose(train_out, eval_out)
    assert int(net.state_dict()["0.1.num_batches_tracked"]) == 1
    assert not np.allclose(train_out, net(x)), "dropout draws a new mask per forward"
    assert net.train(False) is net and not net[0][5].training


# ----------------------------------------------------------------------------- state dict

def test_state_dict_returns_copies(rng):
    net = small_net(rng)
    sd = net.state_dict()
    sd["0.weight"][...] = 0
    assert net[0].weight.data.any()


def test_state_dict_round_trip_restores_outputs(rng):
    net = small_net(rng).eval()
    x = rng.standard_normal(X_SHAPE)
    saved = net.state_dict()
    want = net(x)
    perturb(net, rng)
    assert not np.allclose(net(x), want)
    net.load_state_dict(saved)
    np.testing.assert_array_equal(net(x), want)


def test_load_state_dict_names_missing_unexpected_and_misshaped_keys(rng):
    net = small_net(rng)
    sd = net.state_dict()
    del sd["1.running_var"]
    sd["7.weight"] = np.zeros(3)
    sd["6.weight"] = np.zeros((4, 13))
    before = net.state_dict()
    with pytest.raises(RuntimeError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert "missing keys ['1.running_var']" in msg
    assert "unexpected keys ['7.weight']" in msg
    assert "6.weight: shape (4, 13) in the state dict but (4, 12) in the model" in msg
    after = net.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before), "a failed load changed state"


def test_load_state_dict_non_strict_still_checks_shapes(rng):
    net = small_net(rng)
    net.load_state_dict({"6.bias": np.ones(4), "extra": np.zeros(1)}, strict=False)
    assert np.array_equal(net[6].bias.data, np.ones(4))
    with pytest.raises(RuntimeError, match="6.bias: shape"):
        net.load_state_dict({"6.bias": np.ones(5)}, strict=False)


def test_load_state_dict_keeps_the_model_dtype():
    lin = nn.Linear(3, 2)
    lin.load_state_dict({"weight": np.ones((2, 3)), "bias": np.zeros(2)})
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32


def test_astype_casts_parameters_grads_and_float_buffers():
    bn = nn.BatchNorm2d(3).astype(np.float64)
    assert bn.weight.dtype == bn.weight.grad.dtype == np.float64
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64


# ----------------------------------------------------------------------------- config and repr

def test_config_is_json_and_build_rejects_bad_descriptions(rng):
    net = small_net(rng)
    rebuilt = nn.build(json.loads(json.dumps(net.config())))
    assert repr(rebuilt) == repr(net)
    with pytest.raises(ValueError, match="unknown module type 'Conv3d'"):
        nn.build({"type": "Conv3d", "args": {}})
    with pytest.raises(ValueError, match="bad config for Linear"):
        nn.build({"type": "Linear", "args": {"in_features": 3, "width": 2}})
    with pytest.raises(ValueError, match="must be a dict with a 'type'"):
        nn.build(["Linear"])


def test_repr_nests_like_pytorch():
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                        nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 4)))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 6, kernel_size=(5, 5), padding=(2, 2), bias=False)\n"
        "  (1): BatchNorm2d(6)\n"
        "  (2): ReLU()\n"
        "  (3): Residual(\n"
        "    (body): Sequential(\n"
        "      (0): Linear(in_features=4, out_features=4)\n"
        "      (1): Tanh()\n"
        "    )\n"
        "    (shortcut): Linear(in_features=4, out_features=4)\n"
        "  )\n"
        ")")


# ----------------------------------------------------------------------------- randomness

def test_rng_states_reproduce_the_dropout_mask(rng):
    net = small_net(rng)
    x = rng.standard_normal(X_SHAPE)
    states = net.rng_states()
    assert list(states) == ["5"]                      # only Dropout owns an rng
    first = net(x)
    assert not np.allclose(net(x), first)             # a new mask
    net.set_rng_states(states)
    np.testing.assert_array_equal(net(x), first)
    with pytest.raises(RuntimeError, match="no module '3' with an rng"):
        net.set_rng_states({"3": states["5"]})
