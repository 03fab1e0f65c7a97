"""The contract every layer keeps, checked on each entry of ``tests.cases.LAYER_CASES``: PyTorch's
answer forward and backward (float64), centred differences, the facts (shape, cost, label, stride)
against a real forward, a config that rebuilds it, shapes-only building, dtypes, hooks, and the
spec token that builds it, and its ONNX form run by onnxruntime. A registered layer type without
an entry fails the first test."""

import json
import math
import re

import numpy as np
import pytest

from cnnkit import nn
from cnnkit.gradcheck import numerical_gradient_array, rel_error
from cnnkit.models import spec
from cnnkit.nn.module import _REGISTRY
from tests.cases import LAYER_CASES
from tests.helpers import assert_close, away_from_zero, distinct, require
from tests.nn.torch_models import perturb

CONTAINERS = (nn.Sequential, nn.Residual, nn.Concat)


def make(case_id, rng, dtype=np.float64):
    """The case's layer (random parameters and statistics) and an input batch, in ``dtype``."""
    case = LAYER_CASES[case_id]
    layer = perturb(case.build(rng).astype(np.float64), rng).astype(dtype)
    x = {"normal": lambda: rng.standard_normal(case.x_shape),
         "distinct": lambda: distinct(rng, case.x_shape),
         "away": lambda: away_from_zero(rng, case.x_shape)}[case.inputs]()
    return layer, x.astype(dtype)


def test_every_registered_layer_type_has_a_case(rng):
    covered = {type(case.build(rng)) for case in LAYER_CASES.values()}
    missing = [name for name, cls in _REGISTRY.items()
               if cls.__module__.startswith("cnnkit.") and not issubclass(cls, CONTAINERS)
               and cls not in covered]
    assert not missing, f"no entry in tests/cases.py LAYER_CASES for {missing}"


@pytest.mark.parametrize("case", LAYER_CASES)
def test_forward_and_backward_match_pytorch(case, rng):
    layer, x = make(case, rng)
    dout = rng.standard_normal(layer.output_shape(x.shape[1:]))[None].repeat(len(x), 0)
    dout += rng.standard_normal(dout.shape)
    t_out, (t_dx, *t_grads) = LAYER_CASES[case].oracle(layer, x, dout)
    layer.zero_grad()
    out = layer(x)
    dx = layer.backward(dout)
    assert_close(out, t_out, "out")
    assert_close(dx, t_dx, "dx")
    params = dict(layer.named_parameters())
    t_grads = [g for g in t_grads if g is not None]
    assert len(params) == len(t_grads), "parameters"
    for (name, p), grad in zip(params.items(), t_grads):
        # Linear's weight is (out, in); the affine oracle's w is (in, out)
        assert_close(p.grad, grad.T if grad.shape != p.shape else grad, f"grad {name}")


@pytest.mark.parametrize("case", LAYER_CASES)
def test_gradients_match_centred_differences(case, rng):
    layer, x = make(case, rng)
    dout = rng.standard_normal(layer(x).shape)
    layer.zero_grad()
    layer(x)
    dx = layer.backward(dout)

    def run(_):
        return layer(x)

    assert rel_error(dx, numerical_gradient_array(run, x, dout)) < 1e-7, "dx"
    for name, p in layer.named_parameters():
        assert rel_error(p.grad, numerical_gradient_array(run, p.data, dout)) < 1e-7, name


@pytest.mark.parametrize("case", LAYER_CASES)
def test_facts_agree_with_a_forward(case, rng):
    layer, x = make(case, rng)
    in_shape = x.shape[1:]
    out = layer(x)
    assert layer.output_shape(in_shape) == out.shape[1:]
    (step,) = layer.walk_shapes(in_shape, "7")
    assert (step.name, step.module, step.in_shape, step.out_shape, step.whole) == (
        "7", layer, in_shape, out.shape[1:], True)
    cost = layer.cost(in_shape)
    assert isinstance(cost, nn.Cost) and 0 <= cost.macs and 2 * cost.macs <= cost.flops
    assert all(isinstance(v, int) for v in cost)
    label = layer.label(in_shape)
    assert re.fullmatch(r"[A-Z][A-Z0-9]*\S*", label), label        # CONV3-64/s2, POOL2
    if layer.in_place:
        assert math.prod(out.shape) == x.size, "an in-place layer adds no volume of its own"
    im2col = layer.im2col_shape(in_shape)
    if im2col is not None:
        k, positions = im2col
        assert positions == math.prod(out.shape[2:]) and k * out.shape[1] * positions == cost.macs
    if len(in_shape) == 3:
        stride = layer.output_stride(in_shape)
        assert stride is None or all(isinstance(s, int) and s >= 1 for s in stride)


POSITION_WISE = [c for c, case in LAYER_CASES.items()
                 if case.build(np.random.default_rng(0)).position_wise]


@pytest.mark.parametrize("case", POSITION_WISE)
def test_position_wise_layers_act_on_each_position_alone(case, rng):
    layer, _ = make(case, rng)
    layer.eval()
    c = LAYER_CASES[case].x_shape[1]
    maps = away_from_zero(rng, (2, c, 3, 2))
    out = layer(maps)
    assert layer.output_shape((c, 3, 2)) == out.shape[1:]
    for i in range(3):
        for j in range(2):
            assert_close(out[:, :, i, j], layer(np.ascontiguousarray(maps[:, :, i, j])),
                         f"position {i}, {j}")


@pytest.mark.parametrize("case", LAYER_CASES)
def test_a_wrong_input_is_refused_alike_by_the_facts_and_the_forward(case, rng):
    layer, x = make(case, rng)
    for shape in (x.shape[:1] + (x.shape[1] + 1,) + x.shape[2:], x.shape[:2], x.shape[:1]):
        try:
            expected = layer.output_shape(shape[1:])
        except ValueError:
            with pytest.raises((ValueError, TypeError)):
                layer(np.zeros(shape))
            continue
        assert layer(np.zeros(shape)).shape[1:] == expected, shape


@pytest.mark.parametrize("case", LAYER_CASES)
def test_config_rebuilds_it_under_its_registered_name(case, rng):
    layer, x = make(case, rng)
    config = json.loads(json.dumps(layer.config()))
    assert _REGISTRY[config["type"]] is type(layer)
    rebuilt = nn.build(config).astype(np.float64).train(layer.training)
    rebuilt.load_state_dict(layer.state_dict())
    assert rebuilt.config() == config and repr(rebuilt) == repr(layer)
    assert_close(rebuilt(x), layer(x), "rebuilt out")


@pytest.mark.parametrize("case", LAYER_CASES)
def test_shapes_only_gives_the_same_facts_without_values(case, rng):
    real = LAYER_CASES[case].build(rng)
    with nn.shapes_only():
        skeleton = LAYER_CASES[case].build(rng)
    in_shape = LAYER_CASES[case].x_shape[1:]
    assert skeleton.config() == real.config()
    assert skeleton.num_parameters() == real.num_parameters()
    for fact in ("output_shape", "cost", "label", "weight_formula", "im2col_shape"):
        assert getattr(skeleton, fact)(in_shape) == getattr(real, fact)(in_shape), fact
    if any(p.is_placeholder for p in skeleton.parameters()):
        with pytest.raises(RuntimeError, match="placeholder"):
            skeleton.state_dict()
    skeleton.load_state_dict(real.state_dict())
    assert not any(p.is_placeholder for p in skeleton.parameters())
    skeleton.zero_grad()


@pytest.mark.parametrize("case", LAYER_CASES)
def test_float32_in_float32_out(case, rng):
    layer, x = make(case, rng, np.float32)
    out = layer(x)
    assert out.dtype == np.float32
    assert layer.backward(np.ones_like(out)).dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in layer.parameters())


@pytest.mark.parametrize("case", LAYER_CASES)
def test_hooks_see_every_forward_and_backward(case, rng):
    layer, x = make(case, rng)
    seen = []
    handles = [layer.register_forward_hook(lambda m, x_in, out: seen.append(("f", m, out.shape))),
               layer.register_backward_hook(lambda m, dout, dx: seen.append(("b", m, dx.shape)))]
    out = layer(x)
    layer.backward(np.ones_like(out))
    assert seen == [("f", layer, out.shape), ("b", layer, x.shape)]
    for handle in handles:
        handle.remove()
    layer.backward(np.ones_like(layer(x)))
    assert len(seen) == 2


@pytest.mark.parametrize("case", [c for c in LAYER_CASES if LAYER_CASES[c].spec])
def test_its_spec_token_builds_it(case, rng):
    text = LAYER_CASES[case].spec
    built = spec.build(text, rng=rng)
    assert type(built[-1]) is type(LAYER_CASES[case].build(rng)), text
    input_shape = spec.parse(text).input_shape
    assert spec.trace(text)[-1].output == built.output_shape(input_shape)


@pytest.mark.parametrize("case", LAYER_CASES)
def test_its_onnx_form_matches_onnxruntime(case, rng):
    """Its eval forward in float32, exported with a dynamic batch, against onnxruntime."""
    from cnnkit.export import to_onnx

    ort = require("onnxruntime")
    layer, x = make(case, rng, np.float32)
    layer.eval()
    proto = to_onnx(layer, x.shape[1:])
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for batch in (x, x[:1]):
        expected = layer(batch)
        (got,) = session.run(None, {"input": batch})
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max(), case
