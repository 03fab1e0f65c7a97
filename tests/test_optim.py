"""optim: the pure rules and the optimizers against torch.optim step by step, weight decay on
weights only, gradient clipping, schedules against torch.optim.lr_scheduler, exact resume,
errors, and a quadratic that every optimizer descends."""

import io
import json
import math

import numpy as np
import pytest

from cnnkit.nn.module import Module, Parameter
from cnnkit.optim import (SGD, Adagrad, Adam, CosineLR, ExponentialLR, LinearWarmup, RMSProp,
                          StepLR, adagrad_step, adam_step, rmsprop_step, sgd_step)
from tests import oracle
from tests.helpers import assert_close

STEPS = 6
# A small "model": conv and fc weights (decayed) and 1-D biases / batch-norm scale (not decayed).
SHAPES = {"conv.weight": (3, 2, 3, 3), "conv.bias": (3,), "bn.weight": (3,),
          "fc.weight": (4, 5), "fc.bias": (4,)}

# ---------------------------------------------------------------------------- our side

def make_problem(rng, steps=STEPS, dtype=np.float64):
    """Initial parameters and a fresh random gradient per step, of several scales."""
    init = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: (rng.standard_normal(s) * 10.0 ** rng.uniform(-1, 1)).astype(dtype)
              for k, s in SHAPES.items()} for _ in range(steps)]
    return init, grads


def params_from(arrays):
    return [(k, Parameter(v)) for k, v in arrays.items()]


def our_run(opt, params, grads):
    trajectory = []
    for g in grads:
        for k, p in params:
            p.grad[...] = g[k]
        opt.step()
        trajectory.append({k: p.data.copy() for k, p in params})
    return trajectory


def assert_trajectories(ours, theirs, what):
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for k in b:
            assert_close(a[k], b[k], f"{what}: step {step + 1}, {k}")


# Our class, its hyperparameters, and torch's names for the same hyperparameters.
OPT_CASES = [
    ("sgd", SGD, dict(lr=0.1), dict(lr=0.1)),
    ("momentum", SGD, dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9)),
    ("nesterov", SGD, dict(lr=0.05, momentum=0.9, nesterov=True),
     dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("adagrad", Adagrad, dict(lr=0.1), dict(lr=0.1, eps=1e-10)),
    ("rmsprop", RMSProp, dict(lr=0.01), dict(lr=0.01, alpha=0.99, eps=1e-8)),
    ("rmsprop-alpha0.9", RMSProp, dict(lr=0.02, alpha=0.9, eps=1e-6),
     dict(lr=0.02, alpha=0.9, eps=1e-6)),
    ("adam", Adam, dict(lr=0.01), dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
    ("adam-betas", Adam, dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6),
     dict(lr=0.05, betas=(0.5, 0.9), eps=1e-6)),
]
OPT_IDS = [c[0] for c in OPT_CASES]


# ---------------------------------------------------------------------------- pure rules

RULE_CASES = [
    ("sgd", sgd_step, dict(lr=0.1), "SGD", dict(lr=0.1)),
    ("momentum", sgd_step, dict(lr=0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    ("nesterov", sgd_step, dict(lr=0.05, momentum=0.9, nesterov=True), "SGD",
     dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("adagrad", adagrad_step, dict(lr=0.1, eps=1e-10), "Adagrad", dict(lr=0.1, eps=1e-10)),
    ("rmsprop", rmsprop_step, dict(lr=0.01, alpha=0.9, eps=1e-8), "RMSProp",
     dict(lr=0.01, alpha=0.9, eps=1e-8)),
    ("adam", adam_step, dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8), "Adam",
     dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
    ("adam-betas", adam_step, dict(lr=0.05, beta1=0.7, beta2=0.95, eps=1e-6), "Adam",
     dict(lr=0.05, betas=(0.7, 0.95), eps=1e-6)),
]


def _snapshot(state):
    return {k: np.array(v, copy=True) for k, v in (state or {}).items()}


@pytest.mark.parametrize("rule,hyper,torch_name,torch_hyper", [c[1:] for c in RULE_CASES],
                         ids=[c[0] for c in RULE_CASES])
def test_rule_matches_torch_and_never_writes_its_inputs(rng, rule, hyper, torch_name,
                                                        torch_hyper):
    init, grads = make_problem(rng)
    expected, _ = oracle.optimizer_trajectory(torch_name, torch_hyper, init, grads)
    w, states = dict(init), {k: None for k in init}
    for step, g in enumerate(grads):
        for k in init:
            w_before, dw_before, s_before = w[k].copy(), g[k].copy(), _snapshot(states[k])
            new_w, new_state = rule(w[k], g[k], states[k], **hyper)
            np.testing.assert_array_equal(w[k], w_before, err_msg=f"{k}: w was written")
            np.testing.assert_array_equal(g[k], dw_before, err_msg=f"{k}: dw was written")
            for slot, before in s_before.items():
                np.testing.assert_array_equal(states[k][slot], before,
                                              err_msg=f"{k}: state {slot!r} was written")
            w[k], states[k] = new_w, new_state
            assert_close(w[k], expected[step][k], f"step {step + 1}, {k}")


def test_adam_state_counts_steps_and_rules_keep_float32(rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    state = None
    for t in range(1, 4):
        w, state = adam_step(w, np.ones_like(w), state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
        assert state["t"] == t
    assert w.dtype == np.float32 and state["m"].dtype == np.float32
    assert state["v"].dtype == np.float32
    for rule, hyper in [(sgd_step, dict(lr=0.1, momentum=0.9)),
                        (adagrad_step, dict(lr=0.1, eps=1e-10)),
                        (rmsprop_step, dict(lr=0.1, alpha=0.9, eps=1e-8))]:
        new_w, new_state = rule(w, np.ones_like(w), None, **hyper)
        assert new_w.dtype == np.float32, rule.__name__
        assert all(v.dtype == np.float32 for v in new_state.values()), rule.__name__


# ---------------------------------------------------------------------------- optimizer classes

@pytest.mark.parametrize("cls,hyper,torch_hyper", [c[1:] for c in OPT_CASES], ids=OPT_IDS)
def test_optimizer_matches_torch(rng, cls, hyper, torch_hyper):
    init, grads = make_problem(rng)
    params = params_from(init)
    ours = our_run(cls(params, **hyper), params, grads)
    theirs, _ = oracle.optimizer_trajectory(cls.__name__, torch_hyper, init, grads)
    assert_trajectories(ours, theirs, cls.__name__)


@pytest.mark.parametrize("cls,hyper,torch_hyper", [c[1:] for c in OPT_CASES], ids=OPT_IDS)
def test_weight_decay_matches_torch_on_weights_and_spares_1d_parameters(rng, cls, hyper,
                                                                        torch_hyper):
    init, grads = make_problem(rng)
    params = params_from(init)
    ours = our_run(cls(params, weight_decay=0.3, **hyper), params, grads)
    theirs, _ = oracle.optimizer_trajectory(cls.__name__, torch_hyper, init, grads, weight_decay=0.3)
    assert_trajectories(ours, theirs, f"{cls.__name__} weight_decay")
    # the decay really acted on the weights, and the 1-D parameters moved as without it
    plain = params_from(init)
    undecayed = our_run(cls(plain, **hyper), plain, grads)[-1]
    for k, v in ours[-1].items():
        if v.ndim >= 2:
            assert not np.allclose(v, undecayed[k], rtol=1e-6), f"{k} was not decayed"
        else:
            np.testing.assert_array_equal(v, undecayed[k], err_msg=f"{k} was decayed")


@pytest.mark.parametrize("max_norm", [0.5, 1e4], ids=["clips", "below-threshold"])
@pytest.mark.parametrize("cls,hyper,torch_hyper", [OPT_CASES[i][1:] for i in (0, 2, 4, 6)],
                         ids=[OPT_IDS[i] for i in (0, 2, 4, 6)])
def test_max_grad_norm_matches_torch_clip_grad_norm(rng, cls, hyper, torch_hyper, max_norm):
    init, grads = make_problem(rng)
    params = params_from(init)
    opt = cls(params, max_grad_norm=max_norm, **hyper)
    ours, our_norms = [], []
    for g in grads:
        for k, p in params:
            p.grad[...] = g[k]
        opt.step()
        our_norms.append(opt.last_grad_norm)
        ours.append({k: p.data.copy() for k, p in params})
        for k, p in params:                            # step reads grad, never writes it
            np.testing.assert_array_equal(p.grad, g[k], err_msg=f"{k}: grad was modified")
    theirs, norms = oracle.optimizer_trajectory(cls.__name__, torch_hyper, init, grads, max_grad_norm=max_norm)
    assert_trajectories(ours, theirs, f"{cls.__name__} max_grad_norm={max_norm}")
    assert_close(our_norms, norms, "total gradient norm")


@pytest.mark.parametrize("cls,hyper,torch_hyper", [OPT_CASES[i][1:] for i in (1, 6)],
                         ids=[OPT_IDS[i] for i in (1, 6)])
def test_clip_then_weight_decay_then_rule(rng, cls, hyper, torch_hyper):
    # torch: clip_grad_norm_ on the raw gradients, then the step adds the decay: Caffe's order
    init, grads = make_problem(rng)
    params = params_from(init)
    ours = our_run(cls(params, weight_decay=0.2, max_grad_norm=0.3, **hyper), params, grads)
    theirs, _ = oracle.optimizer_trajectory(cls.__name__, torch_hyper, init, grads, weight_decay=0.2,
                          max_grad_norm=0.3)
    assert_trajectories(ours, theirs, f"{cls.__name__} clip + decay")


def test_step_updates_in_place_and_zero_grad(rng):
    init, grads = make_problem(rng, steps=1)
    params = params_from(init)
    data_objects = {k: p.data for k, p in params}
    views = {k: p.data.reshape(-1)[:2] for k, p in params}
    opt = Adam(params, lr=0.1)
    for k, p in params:
        p.grad[...] = grads[0][k]
    opt.step()
    for k, p in params:
        assert p.data is data_objects[k], f"{k}: data was replaced, not updated in place"
        assert not np.array_equal(p.data, init[k]), f"{k} did not move"
        np.testing.assert_array_equal(views[k], p.data.reshape(-1)[:2], err_msg=k)
    opt.zero_grad()
    assert all(not p.grad.any() for _, p in params)


def test_bare_parameters_are_named_by_position_and_state_dict_copies(rng):
    ps = [Parameter(rng.standard_normal((2, 3))), Parameter(rng.standard_normal(4))]
    opt = SGD(ps, lr=0.1, momentum=0.5)
    for p in ps:
        p.grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    assert list(sd["state"]) == ["0", "1"]
    sd["state"]["0"]["velocity"][...] = 123.0           # a copy: the optimizer is untouched
    np.testing.assert_array_equal(opt.state["0"]["velocity"], np.ones((2, 3)))


def test_float32_parameters_stay_float32(rng):
    init, grads = make_problem(rng, dtype=np.float32)
    for cls in (SGD, Adagrad, RMSProp, Adam):
        params = params_from(init)
        opt = cls(params, weight_decay=0.1, max_grad_norm=1.0)
        our_run(opt, params, grads[:1])
        for k, p in params:                   # a float64 gradient does not promote the state
            p.grad = grads[1][k].astype(np.float64)
        opt.step()
        for k, p in params:
            assert p.data.dtype == np.float32, f"{cls.__name__} {k}"
            for slot, v in opt.state[k].items():
                assert np.asarray(v).dtype == np.float32 or slot == "t", f"{cls.__name__} {slot}"


# ---------------------------------------------------------------------------- schedules

SCHEDULE_CASES = [   # (id, ours, torch's equivalent as (kind, our arguments) for tests/oracle.py)
    ("step", lambda o: StepLR(o, step_size=3, gamma=0.5),
     ("step", dict(step_size=3, gamma=0.5))),
    ("exponential", lambda o: ExponentialLR(o, gamma=0.8), ("exponential", dict(gamma=0.8))),
    ("cosine", lambda o: CosineLR(o, t_max=12, eta_min=1e-3),
     ("cosine", dict(t_max=12, eta_min=1e-3))),
    ("cosine-past-t_max", lambda o: CosineLR(o, t_max=5), ("cosine", dict(t_max=5))),
    ("warmup", lambda o: LinearWarmup(o, warmup_epochs=4, start_factor=0.25),
     ("warmup", dict(warmup_epochs=4, start_factor=0.25))),
    ("warmup-exponential",
     lambda o: LinearWarmup(o, 3, start_factor=0.1, after=ExponentialLR(o, gamma=0.9)),
     ("warmup", dict(warmup_epochs=3, start_factor=0.1, after=("exponential", dict(gamma=0.9))))),
]


@pytest.mark.parametrize("ours,theirs", [c[1:] for c in SCHEDULE_CASES],
                         ids=[c[0] for c in SCHEDULE_CASES])
def test_schedule_matches_torch_over_12_epochs(ours, theirs):
    opt = SGD([Parameter(np.zeros(2))], lr=0.2)
    sched = ours(opt)
    lrs = [opt.lr]
    for epoch in range(1, 13):
        assert sched.step() == opt.lr == sched.lr
        assert sched.epoch == epoch
        if getattr(sched, "after", None) is not None:     # a warmup keeps its inner schedule
            assert sched.after.epoch == epoch
        lrs.append(opt.lr)
    assert_close(lrs, oracle.schedule_lrs(0.2, *theirs, 12), "learning rates")


@pytest.mark.parametrize("make", [c[1] for c in SCHEDULE_CASES],
                         ids=[c[0] for c in SCHEDULE_CASES])
def test_schedule_state_round_trip(make):
    opt = SGD([Parameter(np.zeros(2))], lr=0.2)
    sched = make(opt)
    expected = [sched.step() for _ in range(10)]
    opt2 = SGD([Parameter(np.zeros(2))], lr=0.2)
    resumed = make(opt2)
    for _ in range(4):
        resumed.step()
    sd = json.loads(json.dumps(resumed.state_dict()))
    opt3 = SGD([Parameter(np.zeros(2))], lr=0.7)            # another base lr: the state wins
    again = make(opt3)
    again.load_state_dict(sd)
    assert opt3.lr == expected[3]
    assert [again.step() for _ in range(6)] == expected[4:]


# ---------------------------------------------------------------------------- exact resume

def through_checkpoint(sd):
    """The optimizer state dict as the checkpoint stores it: arrays in an .npz, the rest JSON."""
    arrays, meta = {}, {"type": sd["type"], "hyper": sd["hyper"], "state": {}}
    for name, slots in sd["state"].items():
        meta["state"][name] = {}
        for slot, v in slots.items():
            if isinstance(v, np.ndarray):
                arrays[f"{name}/{slot}"] = v
                meta["state"][name][slot] = {"__array__": f"{name}/{slot}"}
            else:
                meta["state"][name][slot] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    meta = json.loads(json.dumps(meta))
    with np.load(buf, allow_pickle=False) as npz:
        for slots in meta["state"].values():
            for slot, v in slots.items():
                if isinstance(v, dict):
                    slots[slot] = npz[v["__array__"]]
    return meta


RESUME_CASES = [
    ("nesterov-wd-clip", SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2,
                                   max_grad_norm=2.0), np.float64),
    ("adagrad", Adagrad, dict(lr=0.1, weight_decay=1e-3), np.float64),
    ("rmsprop", RMSProp, dict(lr=0.01, alpha=0.9, max_grad_norm=1.0), np.float64),
    ("adam", Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=1e-2), np.float64),
    ("adam-float32", Adam, dict(lr=0.01, weight_decay=1e-2, max_grad_norm=1.0), np.float32),
]


@pytest.mark.parametrize("cls,hyper,dtype", [c[1:] for c in RESUME_CASES],
                         ids=[c[0] for c in RESUME_CASES])
def test_resume_from_state_dict_continues_bit_for_bit(rng, cls, hyper, dtype):
    k = 4
    init, grads = make_problem(rng, steps=2 * k, dtype=dtype)

    def fresh(arrays, lr=None):
        params = params_from(arrays)
        opt = cls(params, **hyper) if lr is None else cls(params, **{**hyper, "lr": lr})
        return params, opt, CosineLR(opt, t_max=2 * k)

    params, opt, sched = fresh(init)
    for g in grads:
        our_run(opt, params, [g])
        sched.step()
    uninterrupted = {name: p.data for name, p in params}

    params, opt, sched = fresh(init)
    for g in grads[:k]:
        our_run(opt, params, [g])
        sched.step()
    opt_sd, sched_sd = through_checkpoint(opt.state_dict()), json.loads(
        json.dumps(sched.state_dict()))
    weights = {name: p.data.copy() for name, p in params}
    params, opt, sched = fresh(weights, lr=0.123)       # the loaded state overrides lr
    opt.load_state_dict(opt_sd)
    assert opt.hyper() == opt_sd["hyper"]
    sched.load_state_dict(sched_sd)
    for g in grads[k:]:
        our_run(opt, params, [g])
        sched.step()
    for name, p in params:
        assert p.data.dtype == dtype
        np.testing.assert_array_equal(p.data, uninterrupted[name], err_msg=name)


# ---------------------------------------------------------------------------- errors

BAD_HYPER = [
    (SGD, dict(lr=0.0), r"lr must be > 0, got 0\.0"),
    (SGD, dict(lr=-0.1), r"lr must be > 0, got -0\.1"),
    (SGD, dict(lr=float("nan")), r"lr must be > 0, got nan"),
    (SGD, dict(lr="0.1"), r"lr must be a number > 0, got '0\.1'"),
    (SGD, dict(momentum=1.0), r"momentum must be in \[0, 1\), got 1\.0"),
    (SGD, dict(momentum=-0.5), r"momentum must be in \[0, 1\), got -0\.5"),
    (SGD, dict(nesterov=True), r"nesterov=True requires a momentum > 0, got momentum 0\.0"),
    (SGD, dict(weight_decay=-1e-4), r"weight_decay must be >= 0, got -0\.0001"),
    (SGD, dict(max_grad_norm=0), r"max_grad_norm must be > 0, got 0"),
    (Adagrad, dict(eps=0.0), r"eps must be > 0, got 0\.0"),
    (RMSProp, dict(alpha=1.0), r"alpha must be in \[0, 1\), got 1\.0"),
    (RMSProp, dict(eps=-1e-8), r"eps must be > 0, got -1e-08"),
    (Adam, dict(betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\), got 1\.0"),
    (Adam, dict(betas=(0.9, 1.5)), r"betas\[1\] must be in \[0, 1\), got 1\.5"),
    (Adam, dict(betas=(0.9,)), r"betas must be a pair \(beta1, beta2\), got \(0\.9,\)"),
]


@pytest.mark.parametrize("cls,kwargs,match", BAD_HYPER,
                         ids=[f"{c.__name__}-{next(iter(k))}-{i}" for i, (c, k, _) in
                              enumerate(BAD_HYPER)])
def test_bad_hyperparameters_raise_value_error_naming_the_value(cls, kwargs, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {match}"):
        cls([Parameter(np.zeros(3))], **kwargs)


def test_lr_setter_validates_but_allows_zero():
    opt = Adam([Parameter(np.zeros(3))])
    opt.lr = 0                       # a cosine schedule may reach eta_min = 0
    assert opt.lr == 0.0
    with pytest.raises(ValueError, match=r"Adam: lr must be >= 0, got -1"):
        opt.lr = -1


@pytest.mark.parametrize("make,match", [
    (lambda o: StepLR(o, step_size=0), r"step_size must be an int >= 1, got 0"),
    (lambda o: StepLR(o, step_size=2, gamma=0.0), r"gamma must be > 0, got 0\.0"),
    (lambda o: ExponentialLR(o, gamma=-0.5), r"gamma must be > 0, got -0\.5"),
    (lambda o: CosineLR(o, t_max=2.5), r"t_max must be an int >= 1, got 2\.5"),
    (lambda o: CosineLR(o, t_max=10, eta_min=-1e-3), r"eta_min must be >= 0, got -0\.001"),
    (lambda o: LinearWarmup(o, 3, start_factor=1.5), r"start_factor must be in \(0, 1\], got 1\.5"),
    (lambda o: LinearWarmup(o, 0), r"warmup_epochs must be an int >= 1, got 0"),
], ids=["step_size", "step-gamma", "exp-gamma", "t_max", "eta_min", "start_factor", "warmup"])
def test_bad_schedule_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make(SGD([Parameter(np.zeros(3))], lr=0.1))


def test_bad_params_are_rejected_clearly():
    p, q = Parameter(np.zeros((2, 2))), Parameter(np.zeros(2))
    with pytest.raises(ValueError, match=r"SGD: duplicate parameter name 'w'"):
        SGD([("w", p), ("w", q)])
    with pytest.raises(ValueError, match=r"'b' is the same Parameter as 'a'"):
        SGD([("a", p), ("b", p)])
    with pytest.raises(TypeError, match=r"item 1 is array"):
        Adam([p, np.zeros(3)])
    with pytest.raises(TypeError, match=r"model\.named_parameters\(\); got a Module"):
        Adam(Module())
    with pytest.raises(ValueError, match=r"Adam: got an empty parameter list"):
        Adam([])


def test_grad_of_wrong_shape_raises_and_changes_nothing(rng):
    params = params_from({"a": rng.standard_normal((2, 3)), "b": rng.standard_normal(3)})
    opt = SGD(params, lr=0.1)
    before = {k: p.data.copy() for k, p in params}
    params[1][1].grad = np.zeros(4)
    with pytest.raises(ValueError, match=r"parameter 'b' has data of shape \(3,\) but grad of "
                                         r"shape \(4,\)"):
        opt.step()
    for k, p in params:
        np.testing.assert_array_equal(p.data, before[k], err_msg=k)


def _stepped_adam(rng, shapes):
    params = params_from({k: rng.standard_normal(s) for k, s in shapes.items()})
    opt = Adam(params, lr=0.01)
    for _, p in params:
        p.grad[...] = 1.0
    opt.step()
    return opt


def test_load_state_dict_errors_leave_the_optimizer_unchanged(rng):
    shapes = {"fc.weight": (4, 5), "fc.bias": (4,)}
    opt = _stepped_adam(rng, shapes)
    good = opt.state_dict()
    target = _stepped_adam(rng, shapes)
    before = target.state_dict()

    with pytest.raises(ValueError, match=r"Adam.load_state_dict: the state dict is for a 'SGD'"):
        target.load_state_dict({**good, "type": "SGD"})
    with pytest.raises(ValueError, match=r"expected a dict with 'type', 'hyper' and 'state'"):
        target.load_state_dict({"type": "Adam", "state": good["state"]})
    with pytest.raises(ValueError, match=r"Adam: betas\[1\] must be in \[0, 1\), got 2"):
        target.load_state_dict({**good, "hyper": {**good["hyper"], "betas": [0.9, 2]}})
    with pytest.raises(ValueError, match=r"unknown \['momentum'\]"):
        target.load_state_dict({**good, "hyper": {**good["hyper"], "momentum": 0.9}})
    missing = {**good, "state": {"fc.weight": good["state"]["fc.weight"]}}
    with pytest.raises(RuntimeError, match=r"missing parameters \['fc\.bias'\]"):
        target.load_state_dict(missing)
    extra = {**good, "state": {**good["state"], "conv.weight": good["state"]["fc.weight"]}}
    with pytest.raises(RuntimeError, match=r"unexpected parameters \['conv\.weight'\]"):
        target.load_state_dict(extra)
    bad_shape = {**good, "state": {**good["state"],
                                   "fc.weight": {**good["state"]["fc.weight"],
                                                 "v": np.zeros((5, 4))}}}
    with pytest.raises(RuntimeError, match=r"fc\.weight\.v: shape \(5, 4\) in the state dict "
                                           r"but \(4, 5\) for the parameter"):
        target.load_state_dict(bad_shape)
    bad_slots = {**good, "state": {**good["state"], "fc.bias": {"velocity": np.zeros(4)}}}
    with pytest.raises(RuntimeError, match=r"fc\.bias: slots \['velocity'\] but Adam"):
        target.load_state_dict(bad_slots)
    bad_t = {**good, "state": {**good["state"], "fc.bias": {**good["state"]["fc.bias"],
                                                            "t": -1}}}
    with pytest.raises(RuntimeError, match=r"fc\.bias\.t: expected a step count >= 0"):
        target.load_state_dict(bad_t)

    after = target.state_dict()
    assert after["hyper"] == before["hyper"]
    for name, slots in before["state"].items():
        for slot, v in slots.items():
            np.testing.assert_array_equal(after["state"][name][slot], v, err_msg=f"{name}.{slot}")


def test_schedule_load_state_dict_errors():
    opt = SGD([Parameter(np.zeros(3))], lr=0.1)
    sched = StepLR(opt, step_size=2)
    with pytest.raises(ValueError, match=r"StepLR.load_state_dict: the state dict is for a "
                                         r"'CosineLR' schedule"):
        sched.load_state_dict(CosineLR(opt, t_max=3).state_dict())
    with pytest.raises(ValueError, match=r"epoch must be an int >= 0, got -2"):
        sched.load_state_dict({**sched.state_dict(), "epoch": -2})
    with pytest.raises(ValueError, match=r"hyperparameters .* do not fit \['step_size', 'gamma'\]"):
        sched.load_state_dict({**sched.state_dict(), "hyper": {"gamma": 0.5}})


# ---------------------------------------------------------------------------- sanity

@pytest.mark.parametrize("cls,hyper", [
    (SGD, dict(lr=0.05)), (SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)), (Adagrad, dict(lr=0.5)),
    (RMSProp, dict(lr=0.05)), (Adam, dict(lr=0.1)),
], ids=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_each_optimizer_descends_an_ill_conditioned_quadratic(rng, cls, hyper):
    # f(w) = 0.5 * sum(c * (w - w*)^2), curvatures from 0.1 to 10
    c = np.logspace(-1, 1, 8).reshape(2, 4)
    target = rng.standard_normal((2, 4))
    w = Parameter(target + rng.standard_normal((2, 4)) * 3)

    def loss():
        return 0.5 * float(np.sum(c * (w.data - target) ** 2))

    opt = cls([("w", w)], **hyper)
    start = loss()
    for _ in range(100):
        w.grad[...] = c * (w.data - target)
        opt.step()
    assert math.isfinite(loss()) and loss() < 0.05 * start, (start, loss())
