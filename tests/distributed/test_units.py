"""The data-parallel parts that need no MPI: synchronised batch norm against the one-process
kernels (ranks simulated by threads), the shards, dropout's rows, the launcher's helpers."""

from __future__ import annotations

import io
import os
import sys
import threading

import numpy as np
import pytest

from cnnkit import functional as F
from cnnkit import parallel
from cnnkit.distributed import DataParallel, DistributedError, world
from cnnkit.distributed.launch import _pump, without_workers
from cnnkit.distributed.syncbn import sync_batchnorm_kernels


class ThreadComm:
    """P ranks as P threads: ``allreduce`` sums the ranks' arrays in rank order."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size)
        self.slots = [None] * size

    def rank_view(self, rank):
        comm = self

        class View:
            def allreduce(self, buf, what="", op="sum"):
                comm.slots[rank] = buf.copy()
                comm.barrier.wait()
                total = np.sum(comm.slots, axis=0)
                comm.barrier.wait()
                buf[...] = total
                return buf

        view = View()
        view.rank, view.size = rank, comm.size
        return view


def _on_ranks(size, work):
    """``work(rank_comm, rank)`` on ``size`` threads; their results by rank."""
    comm, results, errors = ThreadComm(size), [None] * size, []

    def run(rank):
        try:
            results[rank] = work(comm.rank_view(rank), rank)
        except Exception as err:  # noqa: BLE001 - reported by the test
            errors.append(err)
            comm.barrier.abort()

    with parallel.num_threads(1):
        threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return results


def _shards(n, size):
    bounds = [DataParallel.__new__(DataParallel) for _ in range(size)]
    for r, b in enumerate(bounds):
        b.rank, b.size = r, size
    return [b.shard(n) for b in bounds]


@pytest.mark.parametrize("shape", [(12, 5), (7, 3, 4, 5), (3, 2, 1, 1), (10, 4, 3, 3)])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_synchronised_batch_norm_is_the_whole_batch_kernel(rng, shape, size):
    """Each rank's output and input gradient are the one-process kernel's rows, and the ranks'
    gamma/beta gradients sum to its; float64, 1e-12. A rank with no row (4 ranks, 3 rows) joins
    with a stand-in row and contributes nothing."""
    x = rng.standard_normal(shape) * 3 + 2
    gamma, beta = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    dout = rng.standard_normal(shape)
    kernels = (F.batchnorm_forward, F.batchnorm_backward) if len(shape) == 2 else \
        (F.spatial_batchnorm_forward, F.spatial_batchnorm_backward)
    out, cache = kernels[0](x, gamma, beta, 1e-5)
    dx, dgamma, dbeta = kernels[1](dout, cache)
    shards = _shards(shape[0], size)

    def work(comm, rank):
        lo, hi = shards[rank]
        state = type("State", (), {"active": hi > lo})()
        forward, backward = sync_batchnorm_kernels(comm, state)
        mine = slice(lo, hi) if hi > lo else slice(0, 1)
        o, c = forward(x[mine], gamma, beta, 1e-5)
        d = dout[mine] if hi > lo else np.zeros_like(dout[mine])
        return (o, c) + backward(d, c)

    results = _on_ranks(size, work)
    total_dgamma = sum(r[3] for r in results)
    total_dbeta = sum(r[4] for r in results)
    for (lo, hi), (o, c, d, _, _) in zip(shards, results):
        if hi > lo:
            np.testing.assert_allclose(o, out[lo:hi], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(d, dx[lo:hi], rtol=1e-10, atol=1e-12)
        else:
            assert not d.any()
        np.testing.assert_allclose(c.mean, cache.mean, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(c.var, cache.var, rtol=1e-12)
        assert c.count == cache.count
    np.testing.assert_allclose(total_dgamma, dgamma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(total_dbeta, dbeta, rtol=1e-10, atol=1e-12)


def test_synchronised_batch_norm_keeps_float32_variance_where_the_mean_is_large(rng):
    """The shards' squares are taken about their own means: a float32 feature of mean 1000
    and spread 0.01 keeps its variance to 1e-5 (a plain float32 sum of squares would lose it
    all, and the rounded shard means, left uncorrected, bias it by 0.1%)."""
    x = (1000 + 0.01 * rng.standard_normal((64, 3))).astype(np.float32)
    exact = np.var(x.astype(np.float64), axis=0)

    def work(comm, rank):
        state = type("State", (), {"active": True})()
        forward, _ = sync_batchnorm_kernels(comm, state)
        return forward(x[rank * 32:(rank + 1) * 32], np.ones(3, np.float32),
                       np.zeros(3, np.float32), 1e-5)[1].var

    for var in _on_ranks(2, work):
        np.testing.assert_allclose(var, exact, rtol=1e-5)


def test_synchronised_batch_norm_needs_two_values_over_the_whole_batch():
    def work(comm, rank):
        state = type("State", (), {"active": rank == 0})()
        forward, _ = sync_batchnorm_kernels(comm, state)
        return forward(np.ones((1, 3)), np.ones(3), np.zeros(3), 1e-5)

    with pytest.raises(ValueError, match="more than 1 value per feature over the global batch"):
        _on_ranks(2, work)


@pytest.mark.parametrize("n, size", [(64, 2), (63, 3), (2, 3), (1, 4), (10, 4), (7, 7)])
def test_shards_tile_the_batch_in_order_and_differ_by_one_at_most(n, size):
    shards = _shards(n, size)
    assert shards[0][0] == 0 and shards[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    sizes = [hi - lo for lo, hi in shards]
    assert max(sizes) - min(sizes) <= 1


def test_a_batch_the_ranks_do_not_divide_is_refused():
    dp = DataParallel.__new__(DataParallel)
    dp.size = 3
    with pytest.raises(ValueError, match="the batch of 64 does not split over 3 ranks"):
        dp.check_batch(64)


@pytest.mark.parametrize("mode", ["upscale_in_train", "downscale_in_infer"])
def test_dropout_rows_are_the_whole_batch_masks_rows(rng, mode):
    x = rng.standard_normal((10, 3, 4))
    whole, mask = F.dropout_forward(x, 0.4, np.random.default_rng(3), mode=mode)
    for lo, hi in [(0, 4), (4, 7), (7, 10), (3, 3)]:
        gen = np.random.default_rng(3)
        part, part_mask = F.dropout_forward(x[lo:hi], 0.4, gen, mode=mode, rows=(lo, 10))
        np.testing.assert_array_equal(part, whole[lo:hi])
        np.testing.assert_array_equal(part_mask, mask[lo:hi])
        assert gen.random() == _after(3, (10, 3, 4))   # advanced as for the whole batch


def _after(seed, shape):
    gen = np.random.default_rng(seed)
    gen.random(shape)
    return gen.random()


def test_dropout_rows_outside_their_batch_are_refused():
    with pytest.raises(ValueError, match="do not lie inside a batch of 4"):
        F.dropout_forward(np.ones((3, 2)), 0.5, np.random.default_rng(0), rows=(2, 4))


def test_a_plain_process_has_no_world_and_never_imports_mpi4py(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # an import would fail
    assert world() is None


def test_several_ranks_without_mpi4py_is_one_line(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(DistributedError, match=r'needs mpi4py: pip install "cnnkit\[mpi\]"'):
        world()


def test_without_workers_removes_both_spellings():
    assert without_workers(["train", "--workers", "3", "--epochs", "2", "--workers=4", "-x"]) \
        == ["train", "--epochs", "2", "-x"]


def test_the_launcher_holds_back_mpich_banner_and_notes_the_dead_pid():
    banner = (b"epoch 1/5 loss 0.5\rprogress\n\n"
              b"===================================================================\n"
              b"=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n"
              b"=   PID 4242 RUNNING AT vm\n=   EXIT CODE: 9\n"
              b"=   CLEANING UP REMAINING PROCESSES\n"
              b"===================================================================\n"
              b"YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)\n"
              b"This typically refers to a problem with your application.\n"
              b"Please see the FAQ page for debugging suggestions\n"
              b"[mpiexec@vm] Sending Ctrl-C to processes as requested\n")
    read, write = os.pipe()
    os.write(write, banner)
    os.close(write)

    class Out:
        buffer = io.BytesIO()

        def flush(self):
            pass

    out, deaths = Out(), []
    with os.fdopen(read, "rb") as stream:
        _pump(stream, out, deaths)
    assert out.buffer.getvalue() == b"epoch 1/5 loss 0.5\rprogress\n\n"
    assert deaths == ["4242 killed by signal 9"]
