"""Sequential and Residual: chaining, PyTorch twins, error context, config round trips."""

import json

import numpy as np
import pytest

from cnnkit import nn
from tests.helpers import assert_close
from tests.nn.torch_models import compare_with_torch, perturb, run_ours, run_torch, state, to_torch


def conv_net(rng):
    """conv-BN-ReLU-pool-flatten-linear for (N, 3, 6, 6) input, float64, random state."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5, rng=rng))
    return perturb(net.astype(np.float64), rng)


# ----------------------------------------------------------------------------- Sequential

@pytest.mark.parametrize("mode", ["train", "eval"])
def test_sequential_matches_torch_sequential(mode, rng):
    net = conv_net(rng)
    net.train(mode == "train")
    compare_with_torch(net, rng.standard_normal((4, 3, 6, 6)), rng, assert_close)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_net_with_group_and_layer_norm_matches_torch(mode, rng):
    """GroupNorm after convs (4 groups, and 1: the spec's LN on a volume), LayerNorm on the
    hidden vector and over a volume's last two axes: the twin's output, gradients and state."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False, rng=rng), nn.GroupNorm(4, 8), nn.ReLU(),
        nn.LayerNorm((5, 6), bias=False), nn.MaxPool2d((5, 2), strict=False),
        nn.Conv2d(8, 6, 1, rng=rng), nn.GroupNorm(1, 6, eps=1e-3), nn.Flatten(),
        nn.Linear(6 * 1 * 3, 7, rng=rng), nn.LayerNorm(7), nn.Tanh(), nn.Linear(7, 4, rng=rng))
    net = perturb(net.astype(np.float64), rng).train(mode == "train")
    compare_with_torch(net, rng.standard_normal((3, 3, 5, 6)), rng, assert_close)


def test_batchnorm_buffers_match_torch_after_three_training_steps(rng):
    net = conv_net(rng)
    twin = to_torch(net)
    for step in range(3):
        x = rng.standard_normal((4, 3, 6, 6)) * (step + 1) + step
        out, dout, dx, _ = run_ours(net, x, rng)
        t_out, t_dx, _ = run_torch(twin, x, dout)
        assert_close(out, t_out, f"out step {step}")
        assert_close(dx, t_dx, f"dx step {step}")
    t_state = state(twin)
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert_close(net.state_dict()[name], t_state[name], name)
    assert int(net[1].num_batches_tracked) == 3


def test_sequential_backward_chains_the_layers_in_reverse(rng):
    net = conv_net(rng).eval()
    x = rng.standard_normal((2, 3, 6, 6))
    out, dout, dx, _ = run_ours(net, x, rng)
    h = x
    for layer in net:                   # the same layers, driven by hand
        h = layer(h)
    d = dout
    for layer in reversed(list(net)):
        d = layer.backward(d)
    assert_close(h, out, "out")
    assert_close(d, dx, "dx")


def test_sequential_indexing_slicing_and_append(rng):
    layers = [nn.Linear(4, 3, rng=rng), nn.ReLU(), nn.Linear(3, 2, rng=rng)]
    net = nn.Sequential(*layers[:2])
    assert net.append(layers[2]) is net
    assert len(net) == 3 and list(net) == layers
    assert net[0] is layers[0] and net[-1] is layers[2]
    head = net[1:]
    assert isinstance(head, nn.Sequential) and list(head) == layers[1:]
    assert list(head.state_dict()) == ["1.weight", "1.bias"]     # renumbered from 0
    assert [name for name, _ in net.named_modules()] == ["", "0", "1", "2"]
    assert nn.Sequential(*net)[2] is layers[2]
    with pytest.raises(TypeError, match="Sequential layer 1 must be a cnnkit.nn.Module"):
        nn.Sequential(nn.ReLU(), np.tanh)


def test_empty_sequential_is_the_identity():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(nn.Sequential()(x), x)


def test_sequential_error_names_the_layer_index_and_layer(rng):
    net = conv_net(rng)
    with pytest.raises(ValueError) as info:
        net(rng.standard_normal((2, 2, 6, 6)))
    assert str(info.value).startswith(
        "layer 0 Conv2d(3, 4, kernel_size=(3, 3), padding=(1, 1)): conv2d: x has C = 2 channels")
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ValueError, match=r"^layer 3 MaxPool2d\(kernel_size=\(2, 2\)\): max_pool2d: "
                                         r"\(W - F \+ 2P\)/S \+ 1 = \(7 - 2 \+ 0\)/2 \+ 1"):
        net(rng.standard_normal((2, 3, 7, 7)))


def test_nested_sequential_error_reads_once_per_level(rng):
    net = nn.Sequential(nn.ReLU(), nn.Sequential(nn.Conv2d(3, 4, 3, rng=rng)))
    with pytest.raises(ValueError) as info:
        net(np.zeros((1, 2, 5, 5)))
    assert str(info.value).startswith(
        "layer 1 Sequential(...): layer 0 Conv2d(3, 4, kernel_size=(3, 3)): conv2d:")
    assert str(info.value).count("layer") == 2


def test_sequential_backward_error_names_the_layer(rng):
    net = conv_net(rng)
    net(rng.standard_normal((2, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"^layer 5 Linear\(in_features=36, out_features=5\) "
                                         r"\(backward\): Linear.backward: dout must have"):
        net.backward(np.zeros((2, 6)))


# ----------------------------------------------------------------------------- Residual

def test_residual_identity_equals_the_hand_computed_sum(rng):
    body = perturb(nn.Sequential(nn.Linear(5, 5, rng=rng), nn.Tanh()).astype(np.float64), rng)
    block = nn.Residual(body)
    x = rng.standard_normal((3, 5))
    w, b = body[0].weight.data, body[0].bias.data
    h = x @ w.T + b
    assert_close(block(x), np.tanh(h) + x, "out")
    dout = rng.standard_normal((3, 5))
    dx = block.backward(dout)
    dh = dout * (1 - np.tanh(h) ** 2)
    assert_close(dx, dh @ w + dout, "dx: the body's path plus the identity's")
    assert_close(body[0].weight.grad, dh.T @ x, "weight grad")


@pytest.mark.parametrize("projection", [False, True])
def test_residual_matches_torch(projection, rng):
    stride = 2 if projection else 1
    body = nn.Sequential(nn.Conv2d(3, 3, 3, stride=stride, padding=1, strict=False, rng=rng),
                         nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1, rng=rng))
    shortcut = (nn.Conv2d(3, 3, 1, stride=2, bias=False, strict=False, rng=rng) if projection
                else None)
    block = perturb(nn.Residual(body, shortcut).astype(np.float64), rng)
    net = nn.Sequential(block, nn.ReLU(), nn.GlobalAvgPool2d(), nn.Flatten(),
                        nn.Linear(3, 2, rng=rng))
    compare_with_torch(perturb(net.astype(np.float64), rng), rng.standard_normal((2, 3, 6, 6)), rng,
                       assert_close)
    assert list(block.state_dict())[0] == "body.0.weight"
    assert ("shortcut.weight" in block.state_dict()) == projection


def test_residual_shape_mismatch_names_both_shapes(rng):
    block = nn.Residual(nn.Conv2d(3, 4, 3, padding=1, rng=rng))
    with pytest.raises(ValueError, match=r"body output shape \(2, 4, 5, 5\) differs from the input "
                                         r"\(identity shortcut\) shape \(2, 3, 5, 5\)"):
        block(np.zeros((2, 3, 5, 5)))
    block = nn.Residual(nn.Conv2d(3, 4, 3, padding=1, rng=rng), nn.Conv2d(3, 4, 1, stride=1))
    with pytest.raises(ValueError, match=r"^body Conv2d\(3, 4, kernel_size=\(3, 3\), "
                                         r"padding=\(1, 1\)\): conv2d: x has C = 2"):
        block(np.zeros((2, 2, 5, 5)))


def test_residual_rejects_non_modules():
    with pytest.raises(TypeError, match="Residual body must be a cnnkit.nn.Module"):
        nn.Residual(lambda x: x)


# ----------------------------------------------------------------------------- config

def test_nested_config_rebuilds_the_same_model(rng):
    block = nn.Residual(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, rng=rng), nn.BatchNorm2d(2),
                                      nn.ReLU()),
                        nn.Sequential(nn.AvgPool2d(1)))
    net = perturb(nn.Sequential(block, nn.Sequential(nn.MaxPool2d(2), nn.Flatten()),
                                nn.Dropout(0.25, rng=np.random.default_rng(0)),
                                nn.Linear(8, 3, init="xavier", rng=rng)).astype(np.float64), rng)
    config = json.loads(json.dumps(net.config()))
    assert config["args"]["layers"][0]["args"]["shortcut"]["type"] == "Sequential"
    rebuilt = nn.build(config).astype(np.float64)
    rebuilt.load_state_dict(net.state_dict())
    assert rebuilt.config() == config and repr(rebuilt) == repr(net)
    x = rng.standard_normal((3, 2, 4, 4))
    for mode in (True, False):
        net.train(mode)
        rebuilt.train(mode)
        rebuilt.set_rng_states(net.rng_states())
        assert_close(rebuilt(x), net(x), f"out training={mode}")


@pytest.mark.parametrize("config, match", [
    ({"type": "Sequential", "args": {}}, "needs args.layers"),
    ({"type": "Sequential", "args": {"layers": [{"type": "Nope"}]}}, "unknown module type"),
    ({"type": "Residual", "args": {}}, "needs args.body"),
])
def test_bad_container_configs_raise_value_error(config, match):
    with pytest.raises(ValueError, match=match):
        nn.build(config)


# ----------------------------------------------------------------------------- input_grad=False

def _grads(net):
    return {name: p.grad.copy() for name, p in net.named_parameters()}


@pytest.mark.parametrize("residual", [False, True])
def test_backward_without_input_grad_returns_none_and_the_same_parameter_grads(residual, rng):
    """The Trainer's backward(dout, input_grad=False): no dx, identical parameter gradients."""
    net = conv_net(rng)
    if residual:
        block = nn.Residual(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, rng=rng), nn.ReLU()))
        net = nn.Sequential(perturb(block.astype(np.float64), rng), *net)
    x = rng.standard_normal((2, 3, 6, 6))
    dout = rng.standard_normal((2, 5))
    net.zero_grad()
    net.forward(x)
    dx = net.backward(dout)
    with_dx = _grads(net)
    net.zero_grad()
    net.forward(x)
    assert net.backward(dout, input_grad=False) is None
    assert dx.shape == x.shape
    for name, grad in _grads(net).items():
        np.testing.assert_array_equal(grad, with_dx[name], err_msg=name)


class _OldStyleScale(nn.Module):
    """A user's layer written before input_grad existed: ``backward(self, dout)``."""

    def forward(self, x):
        self._cache = True
        return 2.0 * x

    def backward(self, dout):
        self._take_cache()
        return 2.0 * dout


def test_a_custom_layer_without_input_grad_still_works_first_and_inside(rng):
    net = nn.Sequential(_OldStyleScale(), nn.Linear(3, 2, rng=rng), _OldStyleScale())
    x = rng.standard_normal((4, 3))
    net.forward(x)
    dx = net.backward(np.ones((4, 2)))
    assert_close(dx, 4.0 * np.ones((4, 2)) @ net[1].weight.data, "dx through both")
    net.forward(x)
    net.backward(np.ones((4, 2)), input_grad=False)     # the Trainer's call: no TypeError


# ----------------------------------------------------------------------------- Concat

def _inception_like(rng, c=3):
    """Four branches of different depth and width on the same input, as an inception module."""
    return nn.Concat(
        nn.Conv2d(c, 2, 1, rng=rng),
        nn.Sequential(nn.Conv2d(c, 2, 1, rng=rng), nn.ReLU(), nn.Conv2d(2, 3, 3, padding=1,
                                                                       rng=rng)),
        nn.Sequential(nn.Conv2d(c, 1, 1, rng=rng), nn.ReLU(), nn.Conv2d(1, 2, 5, padding=2,
                                                                       rng=rng)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(c, 2, 1, rng=rng)))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_concat_matches_torch_cat(mode, rng):
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.BatchNorm2d(3), nn.ReLU(),
                        _inception_like(rng), nn.GlobalAvgPool2d(), nn.Flatten(),
                        nn.Linear(9, 4, rng=rng))
    net = perturb(net.astype(np.float64), rng).train(mode == "train")
    compare_with_torch(net, rng.standard_normal((3, 2, 7, 5)), rng, assert_close)
    assert "3.1.2.weight" in net.state_dict()


def test_concat_stacks_the_branch_outputs_and_sums_their_input_gradients(rng):
    a = nn.Linear(4, 2, rng=rng).astype(np.float64)
    b = nn.Linear(4, 3, rng=rng).astype(np.float64)
    block = nn.Concat(a, b)
    x = rng.standard_normal((5, 4))
    out = block(x)
    assert_close(out, np.concatenate([x @ a.weight.data.T + a.bias.data,
                                      x @ b.weight.data.T + b.bias.data], axis=1), "out")
    dout = rng.standard_normal((5, 5))
    dx = block.backward(dout)
    assert_close(dx, dout[:, :2] @ a.weight.data + dout[:, 2:] @ b.weight.data, "dx")
    assert_close(b.weight.grad, dout[:, 2:].T @ x, "second branch's weight grad")


def test_concat_errors_name_the_branch_and_the_shapes(rng):
    block = nn.Concat(nn.Conv2d(3, 2, 1, rng=rng), nn.Conv2d(3, 2, 3, rng=rng))
    with pytest.raises(ValueError, match=r"branch outputs \(2, 2, 6, 6\), \(2, 2, 4, 4\) differ "
                                         r"in a size other than the channels"):
        block(np.zeros((2, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"^branch 1 Conv2d\(3, 2, kernel_size=\(3, 3\)\): "):
        block(np.zeros((2, 3, 2, 2)))
    block = nn.Concat(nn.ReLU(), nn.Tanh())
    block(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"dout of shape \(2, 3\) must have 6 channels"):
        block.backward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least one branch"):
        nn.Concat()
    with pytest.raises(TypeError, match="Concat branch 1 must be a cnnkit.nn.Module"):
        nn.Concat(nn.ReLU(), "relu")


def test_concat_config_round_trip_and_input_grad_false(rng):
    block = perturb(_inception_like(rng).astype(np.float64), rng)
    rebuilt = nn.build(json.loads(json.dumps(block.config()))).astype(np.float64)
    rebuilt.load_state_dict(block.state_dict())
    x = rng.standard_normal((2, 3, 5, 5))
    assert_close(rebuilt(x), block(x), "rebuilt out")
    dout = rng.standard_normal((2, 9, 5, 5))
    block.zero_grad()
    dx = block.backward(dout)
    with_dx = _grads(block)
    block.zero_grad()
    block(x)
    assert block.backward(dout, input_grad=False) is None and dx.shape == x.shape
    for name, grad in _grads(block).items():
        np.testing.assert_array_equal(grad, with_dx[name], err_msg=name)


# ----------------------------------------------------------------------------- ZeroPadShortcut

@pytest.mark.parametrize("stride, size", [(1, 6), (2, 6), (2, 7), (3, 8)])
def test_zero_pad_shortcut_matches_torch_and_the_strided_conv_size(stride, size, rng):
    shortcut = nn.ZeroPadShortcut(3, 5, stride)
    conv = nn.Conv2d(3, 5, 3, stride, padding=1, strict=False, rng=rng)
    block = nn.Residual(nn.Sequential(conv, nn.BatchNorm2d(5)), shortcut)
    net = perturb(nn.Sequential(block, nn.ReLU(), nn.Flatten()).astype(np.float64), rng)
    compare_with_torch(net, rng.standard_normal((2, 3, size, size)), rng, assert_close)


def test_zero_pad_shortcut_by_hand_and_errors(rng):
    x = rng.standard_normal((2, 2, 5, 5))
    m = nn.ZeroPadShortcut(2, 4, 2)
    out = m(x)
    assert out.shape == (2, 4, 3, 3)
    assert_close(out[:, :2], x[:, :, ::2, ::2], "kept channels")
    assert not out[:, 2:].any()
    dout = rng.standard_normal(out.shape)
    dx = m.backward(dout)
    expected = np.zeros_like(x)
    expected[:, :, ::2, ::2] = dout[:, :2]
    assert_close(dx, expected, "dx")
    assert nn.build(m.config()).config() == m.config()
    with pytest.raises(ValueError, match="out_channels = 1 is fewer than in_channels = 2"):
        nn.ZeroPadShortcut(2, 1)
    with pytest.raises(ValueError, match=r"x must be \(N, 2, H, W\), got shape \(2, 3, 5, 5\)"):
        m(np.zeros((2, 3, 5, 5)))
