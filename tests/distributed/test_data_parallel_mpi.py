"""Data-parallel training on real MPI ranks (``mpiexec -n 2`` and ``-n 3``, oversubscribed on
two cores): equality with one process, batch norm per shard as documented, faults."""

from __future__ import annotations

import numpy as np
import pytest

from cnnkit.nn.dropout import Dropout
from cnnkit.nn.normalization import _BatchNorm
from cnnkit.train import Trainer

from . import mpi, nets


def _run_ranks(tmp_path, ranks, kind, mode, **options):
    out = tmp_path / f"{kind}-{mode}-{ranks}.npz"
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    done, seconds = mpi.run(ranks, ["-m", "tests.distributed.nets", kind, mode, str(out),
                                    *extra])
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out), seconds


def _assert_same_state(got, model, tol=1e-10):
    for key, expected in nets.state(model).items():
        diff = float(np.max(np.abs(got[key] - expected))) if expected.size else 0.0
        assert diff <= tol, f"{key}: differs by {diff:.3g}"


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("kind, mode", [("bn", "sync"), ("plain", "local"), ("gn", "local")])
def test_ranks_end_with_the_weights_of_one_process(tmp_path, ranks, kind, mode):
    """20 steps of Adam in float64, dropout included, the last batch of each epoch short (2
    examples: with 3 ranks one trains a stand-in of weight 0): every weight and buffer within
    1e-10 of one process on the same batches, and the same loss at every step. Group and layer
    norm ("gn") normalise each sample alone, so plain data parallelism (no --sync-bn) is
    already one process."""
    got, _ = _run_ranks(tmp_path, ranks, kind, mode)
    model, history = nets.train(kind)
    assert len(history["batch_loss"]) == 20
    _assert_same_state(got, model)
    np.testing.assert_allclose(got["batch_loss"], history["batch_loss"], rtol=1e-12)
    np.testing.assert_array_equal(got["val_acc"], history["val_acc"])
    assert int(got["steps"]) == 20


def _ghost_batch_train(ranks: int, n_train: int = nets.N_EVEN, epochs: int = 2, batch=12):
    """One process doing what the documentation says P ranks without --sync-bn do: each batch
    cut into P slices, each slice normalised with its own statistics and updating its own copy
    of the running statistics, the slices' gradients weighted n_r/n and summed; the copies
    averaged before each validation. Dropout masks are drawn for the whole batch."""
    model = nets.build("bn")
    opt = nets.optimizer(model)
    (x, y), _ = nets.data(n_train)
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    drops = [m for m in model.modules() if isinstance(m, Dropout)]
    copies = [[{k: b.copy() for k, b in m.named_buffers()} for m in layers]
              for _ in range(ranks)]
    trainer = Trainer(model, opt, batch_size=batch, epochs=1)     # its loss and shuffling
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(epochs):
        order = rng.permutation(n_train)
        for start in range(0, n_train, batch):
            idx = order[start:start + batch]
            n = len(idx)
            opt.zero_grad()
            states = [d.rng.bit_generator.state for d in drops]
            for r in range(ranks):
                lo = r * (n // ranks) + min(r, n % ranks)
                hi = lo + n // ranks + (r < n % ranks)
                for m, saved in zip(layers, copies[r]):
                    for k, v in saved.items():
                        setattr(m, k, v)
                for d, s in zip(drops, states):
                    d.rng.bit_generator.state = s
                    d.batch_rows = (lo, n)
                scores = model.forward(x[idx[lo:hi]])
                _, dscores = trainer.loss_fn(scores, y[idx[lo:hi]])
                model.backward(dscores * ((hi - lo) / n), input_grad=False)
                copies[r] = [{k: b.copy() for k, b in m.named_buffers()} for m in layers]
            for d in drops:
                d.batch_rows = None
            opt.step()
        for i, m in enumerate(layers):          # the epoch's end: the copies averaged
            for k, _ in m.named_buffers():
                values = [c[i][k] for c in copies]
                mean = np.mean(values, axis=0) if values[0].dtype.kind == "f" else values[0]
                for c in copies:
                    c[i][k] = np.array(mean)
                setattr(m, k, np.array(mean))
    return model


def test_batch_norm_per_shard_is_the_documented_ghost_batch(tmp_path):
    """Without --sync-bn, 2 ranks give exactly the documented result (each shard normalised
    by its own statistics, running statistics averaged), and it is not one process's."""
    got, _ = _run_ranks(tmp_path, 2, "bn", "local", n_train=nets.N_EVEN)
    _assert_same_state(got, _ghost_batch_train(2))
    one, _ = nets.train("bn", n_train=nets.N_EVEN)
    diff = max(float(np.max(np.abs(got[k] - v))) for k, v in nets.state(one).items())
    assert diff > 1e-4


def test_a_rank_that_raises_stops_the_others_with_one_line_naming_it(tmp_path):
    done, seconds = mpi.run(3, ["-m", "tests.distributed.nets", "plain", "sync",
                                str(tmp_path / "x.npz"), "--fail-at", "3"])
    assert done.returncode != 0
    assert "a planted fault at step 3" in done.stderr
    assert seconds < 60
    assert not (tmp_path / "x.npz").exists()


def test_a_rank_that_hangs_is_named_after_the_timeout(tmp_path):
    done, seconds = mpi.run(3, ["-m", "tests.distributed.nets", "plain", "sync",
                                str(tmp_path / "x.npz"), "--hang-at", "3", "--timeout", "2"])
    assert done.returncode != 0
    assert "rank 1 did not reach step 3's gradient allreduce within 2 s" in done.stderr, \
        done.stderr[-2000:]
    assert seconds < 60
