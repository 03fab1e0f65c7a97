"""The module tree: the explicit layer registry and custom layers in checkpoints, hooks inside
containers, apply / clear_state / copy, shapes-only building, the facts of containers and of a
subclass that replaces its parent's forward, and every backward taking input_grad."""

import numpy as np
import pytest

from cnnkit import nn, optim
from cnnkit.io import CheckpointError, load_checkpoint, save_checkpoint
from cnnkit.nn.module import _NAMES, _REGISTRY
from tests.helpers import assert_close


class Scale(nn.Module):
    """A user's own layer: multiplies by a learned scalar. Answers its shape, nothing else."""

    def __init__(self, factor=2.0):
        super().__init__()
        self.factor = nn.Parameter(np.array([factor]))

    def forward(self, x):
        self._cache = x
        return x * self.factor.data

    def backward(self, dout, *, input_grad=True):
        x = self._take_cache()
        self.factor.grad += np.sum(dout * x, keepdims=True).reshape(1)
        return dout * self.factor.data

    def output_shape(self, in_shape):
        return tuple(in_shape)

    def get_config(self):
        return {"factor": float(self.factor.data[0])}


@pytest.fixture
def registry():
    """Leaves the registry as it found it."""
    before = (dict(_REGISTRY), dict(_NAMES))
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before[0])
    _NAMES.clear()
    _NAMES.update(before[1])


# ----------------------------------------------------------------------------- the registry

def test_cnnkit_layers_are_registered_under_their_names_and_users_are_not():
    assert _REGISTRY["Conv2d"] is nn.Conv2d and _REGISTRY["PReLU"] is nn.PReLU
    assert Scale not in _NAMES and "Scale" not in _REGISTRY
    assert Scale().config()["type"] == f"{__name__}.Scale"


def test_a_name_taken_by_another_class_needs_replace(registry):
    class Conv2d(nn.Module):                  # a user's class with cnnkit's name
        pass

    with pytest.raises(ValueError, match="'Conv2d' is taken by cnnkit.nn.layers.Conv2d"):
        nn.register_module(Conv2d)
    assert _REGISTRY["Conv2d"] is nn.Conv2d       # cnnkit's stays
    nn.register_module(Conv2d, name="MyConv2d")
    assert _REGISTRY["MyConv2d"] is Conv2d and Conv2d().config()["type"] == "MyConv2d"
    with pytest.raises(ValueError, match="registered as 'MyConv2d' already"):
        nn.register_module(Conv2d, name="Other")
    nn.register_module(Conv2d, name="MyConv2d")   # again, the same: nothing happens
    nn.register_module(Conv2d, replace=True)      # takes the name over
    assert _REGISTRY["Conv2d"] is Conv2d and "MyConv2d" not in _REGISTRY
    assert nn.Conv2d not in _NAMES
    with pytest.raises(TypeError, match="takes a Module subclass"):
        nn.register_module(int)
    with pytest.raises(ValueError, match="non-empty string"):
        nn.register_module(Scale, name="")


def test_a_checkpoint_of_a_custom_layer_says_how_to_load_it_and_then_loads(registry, tmp_path,
                                                                           rng):
    net = nn.Sequential(nn.Linear(3, 4, rng=rng), Scale(1.5))
    path = save_checkpoint(tmp_path / "custom.npz", net)
    with pytest.raises(CheckpointError, match=r"register its class before loading: "
                                              r"cnnkit.nn.register_module\(Scale\)"):
        load_checkpoint(path).build_model()
    nn.register_module(Scale)
    loaded = load_checkpoint(path).build_model()
    x = rng.standard_normal((2, 3))
    assert_close(loaded(x), net(x), "loaded custom net")
    assert isinstance(loaded[1], Scale) and loaded[1].factor.data[0] == 1.5


# ----------------------------------------------------------------------------- hooks

def test_hooks_fire_inside_containers_and_may_replace_values(rng):
    conv = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
    net = nn.Sequential(nn.Residual(nn.Sequential(conv, nn.ReLU()), nn.Conv2d(2, 3, 1)),
                        nn.Flatten(), nn.Linear(3 * 4 * 4, 2, rng=rng)).astype(np.float64)
    x = rng.standard_normal((2, 2, 4, 4))
    seen = []
    conv.register_forward_hook(lambda m, x_in, out: seen.append(("conv out", out.copy())))
    conv.register_backward_hook(lambda m, dout, dx: seen.append(("conv grad",
                                                                 m.weight.grad.copy())))
    net.register_backward_hook(lambda m, dout, dx: seen.append(("net dx", dx)))
    out = net(x)
    net.backward(np.ones_like(out))
    assert [name for name, _ in seen] == ["conv out", "conv grad", "net dx"]
    assert seen[1][1].any() and seen[2][1] is not None
    doubled = net.register_forward_hook(lambda m, x_in, out: 2 * out)
    assert_close(net(x), 2 * out, "a forward hook replaces the output")
    doubled.remove()
    doubled.remove()                                  # twice is harmless
    assert_close(net(x), out, "removed")
    with pytest.raises(TypeError, match="hook must be callable"):
        conv.register_forward_hook("not a function")


def test_a_super_forward_inside_an_override_runs_the_hooks_once():
    class Logged(nn.ReLU):
        def forward(self, x):
            return super().forward(x)

    layer, calls = Logged(), []
    layer.register_forward_hook(lambda m, x, out: calls.append(m))
    layer(np.ones((1, 2)))
    assert calls == [layer]


# ----------------------------------------------------------------------------- tree utilities

def test_apply_clear_state_and_copy(rng):
    net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.BatchNorm2d(2), nn.Dropout(0.5, rng=rng),
                        nn.Flatten(), nn.Linear(2 * 3 * 3, 2, rng=rng))
    order = []
    assert net.apply(lambda m: order.append(type(m).__name__)) is net
    assert order == ["Conv2d", "BatchNorm2d", "Dropout", "Flatten", "Linear", "Sequential"]
    assert net.modules()[0] is net and len(net.modules()) == 6
    x = rng.standard_normal((3, 1, 5, 5)).astype(np.float32)
    out = net(x)
    hook = net[0].register_forward_hook(lambda m, x, out: None)
    twin = net.copy()
    assert all(m._cache is None for m in twin.modules()) and not twin[0]._forward_hooks
    assert net[0]._forward_hooks and net[4]._cache is not None      # the original keeps both
    assert twin[2].rng is not net[2].rng
    assert twin[2].rng.bit_generator.state == net[2].rng.bit_generator.state
    net.backward(np.ones_like(out))                   # the pending backward survived the copy
    hook.remove()
    net(x)
    assert net.clear_state() is net and all(m._cache is None for m in net.modules())
    with pytest.raises(RuntimeError, match="backward\\(\\) called before forward"):
        net.backward(np.ones_like(out))
    for a, b in zip(twin.parameters(), net.parameters()):
        assert not np.shares_memory(a.data, b.data)


def test_named_parameters_without_recursion(rng):
    block = nn.Residual(nn.Linear(3, 3, rng=rng))
    assert block.num_parameters(recurse=False) == 0 and block.num_parameters() == 12


# ----------------------------------------------------------------------------- shapes only

def test_shapes_only_builds_a_skeleton_that_loads_and_trains(rng):
    real = nn.Sequential(nn.Conv2d(1, 4, 3, rng=rng), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3, rng=rng))
    with nn.shapes_only():
        skeleton = nn.build(real.config())
    assert skeleton[0].weight.is_placeholder and not skeleton[0].bias.is_placeholder
    assert skeleton.num_parameters() == real.num_parameters()
    assert "placeholder" in repr(skeleton[0].weight)
    with pytest.raises(ValueError, match=r"placeholder without values .*shapes_only"):
        optim.SGD(skeleton.named_parameters())
    with pytest.raises(RuntimeError, match="0.weight is a placeholder"):
        skeleton.state_dict()
    assert skeleton.copy()[0].weight.is_placeholder        # a copy allocates nothing either
    skeleton.astype(np.float64)
    assert skeleton[0].weight.is_placeholder and skeleton[0].weight.dtype == np.float64
    skeleton.load_state_dict(real.state_dict())
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    assert_close(skeleton(x), real(x), "loaded skeleton", rtol=1e-6)
    optimizer = optim.SGD(skeleton.named_parameters(), lr=0.1)
    skeleton.backward(np.ones((2, 3), np.float32))
    optimizer.step()
    assert not nn.module.building_shapes_only()


# ----------------------------------------------------------------------------- facts

def test_container_facts_compose_their_childrens(rng):
    body = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, strict=False, rng=rng),
                         nn.ReLU())
    block = nn.Residual(body, nn.Conv2d(2, 4, 1, stride=2, strict=False, rng=rng))
    net = nn.Sequential(block, nn.Concat(nn.MaxPool2d(3, stride=1, padding=1),
                                         nn.Conv2d(4, 2, 1, rng=rng)))
    steps = list(net.walk_shapes((2, 9, 9)))
    assert [(s.name, s.out_shape, s.whole) for s in steps] == [
        ("0.body.0", (4, 5, 5), True), ("0.body.1", (4, 5, 5), True),
        ("0.shortcut", (4, 5, 5), True), ("0", (4, 5, 5), False),
        ("1.0", (4, 5, 5), True), ("1.1", (2, 5, 5), True), ("1", (6, 5, 5), False)]
    assert net.output_shape((2, 9, 9)) == net(np.zeros((1, 2, 9, 9), np.float32)).shape[1:]
    assert net.output_stride((2, 9, 9)) == (2, 2)
    assert (block.label((2, 9, 9)), net[1].label((4, 5, 5))) == ("RES-4/s2", "CONCAT-6")
    assert [name for name, _ in net.named_chain()] == ["0", "1"]
    with pytest.raises(nn.LayerError, match=r"^layer 0\.body\.0 Conv2d\(2, 4, .*the input has "
                                            r"C = 3 channels but the layer expects 2"):
        list(net.walk_shapes((3, 9, 9)))
    with pytest.raises(ValueError, match="branches have strides"):
        nn.Concat(nn.MaxPool2d(2), nn.Conv2d(4, 4, 1)).output_stride((4, 8, 8))


def test_a_subclass_that_replaces_forward_is_traced_by_running_it():
    class Doubled(nn.Conv2d):            # replaces Conv2d's forward, says nothing of its shape
        def forward(self, x):
            out = super().forward(x)
            return np.concatenate([out, out], axis=1)

    class Keeps(nn.Conv2d):              # replaces forward and answers output_shape itself
        def forward(self, x):
            return super().forward(x)

        def output_shape(self, in_shape):
            return super().output_shape(in_shape)

    doubled, keeps = Doubled(1, 2, 3), Keeps(1, 2, 3)
    assert doubled.output_shape((1, 5, 5)) == (4, 3, 3)
    assert doubled.cost((1, 5, 5)) is None and doubled.label((1, 5, 5)) == "Doubled"
    assert keeps.cost((1, 5, 5)) == nn.Conv2d(1, 2, 3).cost((1, 5, 5))
    assert keeps.label((1, 5, 5)) == "CONV3-2/p0"


def test_a_backward_written_without_input_grad_is_called_without_it():
    class Old(nn.Module):
        def forward(self, x):
            self._cache = True
            return x

        def backward(self, dout):
            self._take_cache()
            return dout

    layer = Old()
    layer(np.ones(2))
    assert layer.backward(np.ones(2), input_grad=False) is not None
