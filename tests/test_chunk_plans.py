"""The kernels that split their work, against their oracles where the real plans cut them.

tests/functional/ runs every kernel's PyTorch-oracle and naive-twin comparisons under the forced
and budget plans of :mod:`tests.plans` (small arrays, many chunks). This file checks the same
code at the sizes where the *real* plans cut it, on two threads: inputs over the real
thresholds (2 MiB tasks and ``MIN_PARALLEL_BYTES``, 1 MiB of im2col columns, conv's
``PARALLEL_FLOPS``, affine's ``SPLIT_FLOPS``), all of them non-square. A bug that counts rows
from the chunk instead of the batch first shows at these sizes. It also runs the optimizers'
update under the pool against ``torch.optim``, and holds the registry of which kernels chunk:
a kernel added to ``cnnkit.functional`` without an entry here fails
``test_every_kernel_is_registered``, and a kernel registered as one piece that starts using the
pool fails ``test_one_piece_kernels_never_use_the_pool``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit.nn.module import Parameter
from cnnkit.optim import SGD, Adagrad, Adam, RMSProp
from tests import oracle
from tests.helpers import assert_close, away_from_zero, distinct
from tests.plans import chunk_plans

REAL_THREADS = 2


def _vs_torch(ours, theirs, names, what):
    for name, a, b in zip(names, ours, theirs):
        assert_close(a, b, f"{what} {name}")


# ----------------------------------------------------------------------------- the cases
# Each case draws its inputs, runs cnnkit's kernels inside the block it is given (the plans
# under test) and returns a function that compares the results with PyTorch outside it.

def _batchnorm(rng, block):
    # 2.6 MB of float64 (two 2 MiB tasks), 5 channels of 41x43; and (N, K) rows of 2.2 MB
    outs = {}
    for shape in [(37, 5, 41, 43), (1021, 271)]:
        k = shape[1]
        x = rng.standard_normal(shape) * rng.uniform(0.5, 2, (1, k) + (1,) * (len(shape) - 2)) \
            + rng.uniform(-2, 2, (1, k) + (1,) * (len(shape) - 2))
        gamma, beta = rng.uniform(0.5, 1.5, k), rng.standard_normal(k)
        mean, var = rng.standard_normal(k), rng.uniform(0.5, 2.0, k)
        dout = rng.standard_normal(shape)
        with block():
            out, cache = F.batchnorm_forward(x, gamma, beta)
            grads = F.batchnorm_backward(dout, cache)
            e_out, e_cache = F.batchnorm_eval_forward(x, gamma, beta, mean, var)
            e_grads = F.batchnorm_eval_backward(dout, e_cache)
        outs[shape] = (x, gamma, beta, mean, var, dout, out, grads, e_out, e_grads)

    def compare():
        for shape, (x, gamma, beta, mean, var, dout, out, grads, e_out, e_grads) in outs.items():
            t_out, t_grads, _ = oracle.batchnorm_train(x, gamma, beta, mean, var, 0.9, 1e-5,
                                                       dout)
            _vs_torch([out, *grads], [t_out, *t_grads], ("out", "dx", "dgamma", "dbeta"),
                      f"batchnorm train {shape}")
            t_out, t_grads = oracle.batchnorm_eval(x, gamma, beta, mean, var, 1e-5, dout)
            _vs_torch([e_out, *e_grads], [t_out, *t_grads], ("out", "dx", "dgamma", "dbeta"),
                      f"batchnorm eval {shape}")
    return compare


def _conv(rng, block):
    # every path past PARALLEL_FLOPS (2**26) with im2col chunks of 1 MiB: stride 1 (wide
    # columns, one sample a chunk), strided (tight columns, 4 samples a chunk) and 1x1
    cases = [((22, 8, 33, 29), (24, 8, 3, 3), dict(pad=1), True),
             ((24, 16, 45, 38), (64, 16, 3, 2), dict(stride=(2, 3), pad=(1, 0)), False),
             ((40, 32, 13, 11), (48, 32, 1, 1), {}, True)]
    results = []
    for x_shape, w_shape, hyper, bias in cases:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape) * 0.2
        b = rng.standard_normal(w_shape[0]) if bias else None
        with block():
            out, cache = F.conv2d_forward(x, w, b, **hyper)
            dout = rng.standard_normal(out.shape)
            grads = F.conv2d_backward(dout, cache)
        results.append((x, w, b, hyper, dout, out, grads))

    def compare():
        for x, w, b, hyper, dout, out, grads in results:
            t_out, t_grads = oracle.conv2d(x, w, b, hyper.get("stride", 1), hyper.get("pad", 0),
                                           1, dout)
            names = ("out", "dx", "dw") + (("db",) if b is not None else ())
            _vs_torch([out, *grads], [t_out, *t_grads], names, f"conv2d x{x.shape} w{w.shape}")
    return compare


def _pooling(rng, block):
    # 2.6-2.9 MB of float64: two tasks each; rectangular windows on non-square maps
    def normal(r, shape):
        return r.standard_normal(shape)

    kinds = [
        ("max", distinct, (37, 45), F.max_pool2d_forward, F.max_pool2d_backward,
         dict(kernel=(3, 2), stride=(2, 1), pad=(1, 0)),
         lambda x, d: oracle.max_pool2d(x, (3, 2), (2, 1), (1, 0), d)),
        ("max tiles", distinct, (36, 45), F.max_pool2d_forward, F.max_pool2d_backward,
         dict(kernel=(2, 3)), lambda x, d: oracle.max_pool2d(x, (2, 3), (2, 3), 0, d)),
        ("avg", normal, (36, 45), F.avg_pool2d_forward, F.avg_pool2d_backward,
         dict(kernel=(2, 3), stride=(1, 2), pad=(1, 1)),
         lambda x, d: oracle.avg_pool2d(x, (2, 3), (1, 2), (1, 1), d)),
        ("l2", away_from_zero, (36, 44), F.l2_pool2d_forward, F.l2_pool2d_backward,
         dict(kernel=(3, 2), stride=(3, 2)), lambda x, d: oracle.l2_pool2d(x, (3, 2), (3, 2), d)),
        ("global avg", normal, (36, 45), F.global_avg_pool2d_forward,
         F.global_avg_pool2d_backward, {}, lambda x, d: oracle.global_avg_pool2d(x, d)),
    ]
    results = []
    for name, make, size, forward, backward, hyper, torch_fn in kinds:
        x = make(rng, (29, 7, *size))
        with block():
            out, cache = forward(x, **hyper)
            dout = rng.standard_normal(out.shape)
            dx = backward(dout, cache)
        results.append((name, x, dout, out, dx, torch_fn))

    def compare():
        for name, x, dout, out, dx, torch_fn in results:
            t_out, (t_dx,) = torch_fn(x, dout)
            _vs_torch([out, dx], [t_out, t_dx], ("out", "dx"), f"{name} pool x{x.shape}")
    return compare


def _activations(rng, block):
    # 2.6 MB of float64: two element-wise runs each
    kinds = [("relu", (), oracle.relu), ("sigmoid", (), oracle.sigmoid),
             ("tanh", (), oracle.tanh),
             ("leaky_relu", (0.1,), lambda x, d: oracle.leaky_relu(x, 0.1, d))]
    results = []
    for name, args, torch_fn in kinds:
        x = away_from_zero(rng, (300, 1093)) * 4
        dout = rng.standard_normal(x.shape)
        with block():
            out, cache = getattr(F, f"{name}_forward")(x, *args)
            dx = getattr(F, f"{name}_backward")(dout, cache)
        results.append((name, x, dout, out, dx, torch_fn))

    def compare():
        for name, x, dout, out, dx, torch_fn in results:
            t_out, (t_dx,) = torch_fn(x, dout)
            _vs_torch([out, dx], [t_out, t_dx], ("out", "dx"), name)
    return compare


def _dropout(rng, block):
    # a shard of rows 113:331 of a batch of 401, 2.3 MB of float64: runs of the shard, not of
    # the batch; the oracle is the whole batch's uniforms
    total, shape, (lo, hi) = 401, (7, 11, 17), (113, 331)
    x = rng.standard_normal((hi - lo, *shape))
    dout = rng.standard_normal(x.shape)
    seed = int(rng.integers(2**32))
    with block():
        out, mask = F.dropout_forward(x, 0.35, np.random.default_rng(seed), rows=(lo, total))
        dx = F.dropout_backward(dout, mask)

    def compare():
        keep = (np.random.default_rng(seed).random((total, *shape)) >= 0.35)[lo:hi]
        np.testing.assert_array_equal(mask, np.where(keep, 1 / 0.65, 0.0), err_msg="mask")
        np.testing.assert_array_equal(out, x * mask, err_msg="dropout out")
        np.testing.assert_array_equal(dx, dout * mask, err_msg="dropout dx")
    return compare


def _affine(rng, block):
    # 12.8 MFLOP, over SPLIT_FLOPS: out and dx by blocks of 256 columns, dw by rows
    x = rng.standard_normal((70, 9, 7, 5))
    w, b = rng.standard_normal((315, 290)) * 0.1, rng.standard_normal(290)
    with block():
        out, cache = F.affine_forward(x, w, b)
        dout = rng.standard_normal(out.shape)
        grads = F.affine_backward(dout, cache)

    def compare():
        t_out, t_grads = oracle.affine(x, w, b, dout)
        _vs_torch([out, *grads], [t_out, *t_grads], ("out", "dx", "dw", "db"), "affine")
    return compare


def _sample_norm(rng, block):
    # 2.4 MB of float64 in 23 samples of 6 channels of 47x45 (group norm, 3 groups; layer norm
    # over the last two axes), and (N, D) rows of 2.2 MB (layer norm of each row)
    outs = []
    for shape, groups, normalized in [((23, 6, 47, 45), 3, (47, 45)), ((1021, 271), 1, (271,))]:
        x = rng.standard_normal(shape) * 2 + 1
        gamma, beta = rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1])
        l_gamma, l_beta = rng.uniform(0.5, 1.5, normalized), rng.standard_normal(normalized)
        dout = rng.standard_normal(shape)
        with block():
            out, cache = F.groupnorm_forward(x, gamma, beta, groups)
            grads = F.groupnorm_backward(dout, cache)
            l_out, l_cache = F.layernorm_forward(x, l_gamma, l_beta)
            l_grads = F.layernorm_backward(dout, l_cache)
        outs.append((x, groups, gamma, beta, normalized, l_gamma, l_beta, dout, out, grads, l_out,
                     l_grads))

    def compare():
        for x, groups, gamma, beta, normalized, l_gamma, l_beta, dout, out, grads, l_out, \
                l_grads in outs:
            t_out, t_grads = oracle.group_norm(x, groups, gamma, beta, 1e-5, dout)
            _vs_torch([out, *grads], [t_out, *t_grads], ("out", "dx", "dgamma", "dbeta"),
                      f"groupnorm {x.shape}")
            t_out, t_grads = oracle.layer_norm(x, normalized, l_gamma, l_beta, 1e-5, dout)
            _vs_torch([l_out, *l_grads], [t_out, *t_grads], ("out", "dx", "dgamma", "dbeta"),
                      f"layernorm {x.shape}")
    return compare


#: The kernels that split their work, each with its large case and the names it exercises.
CHUNKED = {
    "batchnorm": (_batchnorm, {"batchnorm_forward", "batchnorm_backward",
                               "batchnorm_eval_forward", "batchnorm_eval_backward",
                               "spatial_batchnorm_forward", "spatial_batchnorm_backward",
                               "spatial_batchnorm_eval_forward",
                               "spatial_batchnorm_eval_backward"}),
    "sample_norm": (_sample_norm, {"layernorm_forward", "layernorm_backward",
                                   "groupnorm_forward", "groupnorm_backward"}),
    "conv": (_conv, {"conv2d_forward", "conv2d_backward"}),
    "pooling": (_pooling, {"max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                           "avg_pool2d_backward", "l2_pool2d_forward", "l2_pool2d_backward",
                           "global_avg_pool2d_forward", "global_avg_pool2d_backward"}),
    "activations": (_activations, {"relu_forward", "relu_backward", "sigmoid_forward",
                                   "sigmoid_backward", "tanh_forward", "tanh_backward"}),
    "dropout": (_dropout, {"dropout_forward", "dropout_backward"}),
    "affine": (_affine, {"affine_forward", "affine_backward"}),
}

#: Kernels that run in one piece on the calling thread (no plan, no pool), and how to run each
#: on an input large enough that a plan would cut it: ``run(rng)``.
ONE_PIECE = {
    "leaky_relu": (lambda r: F.leaky_relu_backward(
        r.standard_normal((300, 1093)),
        F.leaky_relu_forward(r.standard_normal((300, 1093)), 0.1)[1])),
    "prelu": lambda r: F.prelu_backward(
        r.standard_normal((41, 6, 37, 33)),
        F.prelu_forward(r.standard_normal((41, 6, 37, 33)), r.uniform(0.05, 0.5, 6))[1]),
    "locally_connected2d": lambda r: F.locally_connected2d_backward(
        r.standard_normal((16, 4, 6, 5)),
        F.locally_connected2d_forward(r.standard_normal((16, 3, 8, 6)),
                                      r.standard_normal((6, 5, 4, 3, 3, 2)), None)[1]),
    "lrn": lambda r: F.lrn_backward(r.standard_normal((29, 7, 36, 45)),
                                    F.lrn_forward(r.standard_normal((29, 7, 36, 45)), 3)[1]),
    "losses": lambda r: (F.softmax_loss(r.standard_normal((4000, 70)), r.integers(0, 70, 4000)),
                         F.svm_loss(r.standard_normal((4000, 70)), r.integers(0, 70, 4000)),
                         F.l2_regularization([r.standard_normal((700, 400))], 1e-3)),
}
ONE_PIECE_NAMES = {"leaky_relu_forward", "leaky_relu_backward", "prelu_forward",
                   "prelu_backward", "locally_connected2d_forward",
                   "locally_connected2d_backward", "lrn_forward", "lrn_backward",
                   "softmax_loss", "svm_loss", "l2_regularization",
                   "get_loss", "batchnorm_running_update"}   # the last two: no array work


# ----------------------------------------------------------------------------- the tests

def test_every_kernel_is_registered():
    registered = set().union(*(names for _, names in CHUNKED.values())) | ONE_PIECE_NAMES
    assert set(F.__all__) == registered, (
        f"not registered in tests/test_chunk_plans.py: {sorted(set(F.__all__) - registered)}; "
        f"registered but gone: {sorted(registered - set(F.__all__))}")


@pytest.mark.parametrize("family", CHUNKED)
def test_kernels_match_torch_where_the_real_plans_cut_them(rng, family):
    """The real plans (nothing patched) on two threads: each kernel's input crosses its
    threshold, so it is cut into several chunks, some run by a worker."""
    records = []

    @contextmanager
    def block():
        with chunk_plans("real", threads=REAL_THREADS) as record:
            records.append(record)
            yield record

    CHUNKED[family][0](rng, block)()
    assert any(r.chunked for r in records), f"{family}: no real plan had two chunks"
    assert any(r.worker_tasks for r in records), f"{family}: no task ran on a worker"


@pytest.mark.parametrize("name", ONE_PIECE)
def test_one_piece_kernels_never_use_the_pool(rng, name):
    """Under the forced plans these make no plan and no parallel call: no chunk path exists
    for a test to miss. (One that starts using the pool belongs in CHUNKED.)"""
    with chunk_plans("forced") as record:
        ONE_PIECE[name](rng)
    assert record.plans == [] and record.calls == 0, \
        f"{name} now splits its work: register it in CHUNKED with an oracle case"


# ----------------------------------------------------------------------------- the optimizers

OPTIMIZERS = [
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.05, momentum=0.9, nesterov=True)),
    (Adagrad, dict(lr=0.1), dict(lr=0.1, eps=1e-10)),
    (RMSProp, dict(lr=0.01, alpha=0.9, eps=1e-6), dict(lr=0.01, alpha=0.9, eps=1e-6)),
    (Adam, dict(lr=0.01, betas=(0.7, 0.95), eps=1e-6), dict(lr=0.01, betas=(0.7, 0.95),
                                                           eps=1e-6)),
]


def _model_problem(rng, shapes, steps=3):
    init = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s) * 10.0 ** rng.uniform(-1, 1) for k, s in shapes.items()}
             for _ in range(steps)]
    return init, grads


SMALL = {"conv.weight": (5, 3, 3, 2), "conv.bias": (5,), "bn.weight": (5,), "bn.bias": (5,),
         "fc.weight": (7, 30), "fc.bias": (7,)}
# over MIN_PARALLEL_BYTES (2 MiB) in all: the real plan sends the update to the pool
LARGE = {"conv.weight": (64, 32, 3, 3), "conv.bias": (64,), "fc.weight": (590, 470),
         "fc.bias": (590,), "bn.weight": (32,)}


@pytest.mark.parametrize("plan, shapes", [("forced", SMALL), ("real", LARGE)],
                         ids=["forced-small", "real-large"])
@pytest.mark.parametrize("clip", [None, 0.5], ids=["no-clip", "clip"])
@pytest.mark.parametrize("cls, hyper, torch_hyper", OPTIMIZERS,
                         ids=[c[0].__name__ for c in OPTIMIZERS])
def test_optimizer_update_under_the_pool_matches_torch(rng, cls, hyper, torch_hyper, clip, plan,
                                                       shapes):
    """Each parameter's update is one task of the pool (workers included), with weight decay
    on the >= 2-D parameters and the global gradient clipping, step by step against torch."""
    init, grads = _model_problem(rng, shapes)
    params = [(k, Parameter(v.copy())) for k, v in init.items()]
    optimizer = cls(params, weight_decay=0.1, max_grad_norm=clip, **hyper)
    ours = []
    with chunk_plans(plan, threads=None if plan == "forced" else REAL_THREADS) as record:
        for g in grads:
            for k, p in params:
                p.grad[...] = g[k]
            optimizer.step()
            ours.append({k: p.data.copy() for k, p in params})
    record.check(chunks=False)
    theirs, _ = oracle.optimizer_trajectory(cls.__name__, torch_hyper, init, grads,
                                            weight_decay=0.1, max_grad_norm=clip)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for k in b:
            assert_close(a[k], b[k], f"{cls.__name__} step {step + 1} {k}")
