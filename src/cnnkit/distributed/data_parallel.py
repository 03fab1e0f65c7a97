"""Data-parallel training: what the Trainer asks of the ranks at each step.

Every rank holds the same model (same seed, same checkpoint) and draws the same batch order and
augmentation from the same Generator. Of each global batch of n examples, rank r trains rows
``lo:hi`` of the balanced split (:meth:`DataParallel.shard`), scales its loss gradient by
n_r / n, and after its backward the ranks sum

    [every parameter's gradient ..., the shard's loss * n_r, its correct count, stop?]

with one allreduce over a single flat buffer: the parameters' ``.grad`` arrays are views into
it, so nothing is copied in or out. The sum is the gradient of the global batch's mean loss,
every rank applies the same optimizer step, and the weights stay the same on every rank.

Dropout draws each mask for the whole global batch and keeps the shard's rows, and batch norm is
either the shard's (the default, PyTorch DDP's) or the global batch's (``sync_bn``,
:mod:`cnnkit.distributed.syncbn`). So with ``sync_bn`` (or no batch norm) P ranks train exactly
as one process on the same global batches, up to the order of floating-point sums.

Without ``sync_bn``, rank r normalises with its shard's statistics, which is one process
normalising each n/P slice of the batch separately (a "ghost batch" of n/P); the running
statistics are averaged over the ranks before each evaluation and checkpoint. The averaged
running mean is the one process's exactly (the update is linear); the averaged running variance
lacks the spread between the shards' means.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from types import SimpleNamespace

import numpy as np

from ..nn.dropout import Dropout
from ..nn.normalization import _BatchNorm
from .comm import Comm
from .syncbn import synchronised

__all__ = ["DataParallel"]

#: Extra numbers carried at the end of the gradient buffer: loss sum, correct count, stop flag.
EXTRAS = 3


class DataParallel:
    """Data-parallel training over ``comm``'s ranks; give it to ``Trainer(distributed=...)``.

    Parameters
    ----------
    comm : :class:`cnnkit.distributed.Comm` (``cnnkit.distributed.world()``)
    sync_bn : normalise with the global batch's statistics (see the module docstring)
    """

    def __init__(self, comm: Comm, *, sync_bn: bool = False):
        self.comm, self.sync_bn = comm, bool(sync_bn)
        self.rank, self.size = comm.rank, comm.size
        self.model = None
        self._flat = None            # {dtype: flat buffer}; grads are views into them
        self._state = SimpleNamespace(active=True)
        self.steps = 0
        self.reduce_seconds = 0.0    # time inside the step's gradient allreduce

    def __repr__(self):
        return (f"DataParallel(rank {self.rank} of {self.size}"
                f"{', sync_bn' if self.sync_bn else ''})")

    # ------------------------------------------------------------------ set-up
    def check_batch(self, batch_size: int) -> None:
        """Refuse a batch that does not split evenly over the ranks."""
        if batch_size % self.size:
            raise ValueError(
                f"the batch of {batch_size} does not split over {self.size} ranks (each rank "
                f"trains batch/ranks examples); give a --batch-size that is a multiple of "
                f"{self.size}, or a number of ranks that divides {batch_size}")

    def attach(self, model) -> None:
        """Bind ``model``'s gradients to the flat buffers and check that every rank holds the
        same number of parameters; then rank 0's weights and buffers are broadcast, so the
        ranks start equal whatever each built."""
        self.model = model
        self._bind()
        sizes = np.array([sum(len(buf) for buf in self._flat.values())], np.int64)
        top = sizes.copy()
        self.comm.allreduce(top, "the check that every rank built the same net", op="max")
        if top[0] != sizes[0]:
            raise ValueError(f"rank {self.rank} built a net of {sizes[0] - EXTRAS:,} gradient "
                             f"values, another rank one of {top[0] - EXTRAS:,}: every rank must "
                             f"build the same net")
        self.broadcast_weights()

    def _bind(self) -> None:
        """One flat buffer per parameter dtype (float32 in practice); each ``p.grad`` becomes a
        view into it, its values kept."""
        params = [p for p in self.model.parameters() if not p.is_placeholder]
        groups: dict = {}
        for p in params:
            groups.setdefault(np.dtype(p.data.dtype), []).append(p)
        if not groups:
            groups[np.dtype(np.float32)] = []
        first = next(iter(groups))
        self._flat, self._params = {}, params
        for dtype, group in groups.items():
            size = sum(p.data.size for p in group) + (EXTRAS if dtype == first else 0)
            flat = np.zeros(size, dtype)
            offset = 0
            for p in group:
                view = flat[offset:offset + p.data.size].reshape(p.data.shape)
                view[...] = p.grad
                p.grad = view
                offset += p.data.size
            self._flat[dtype] = flat
        self._extras = self._flat[first][-EXTRAS:]

    def _bound(self) -> bool:
        flats = self._flat
        return all(p.grad.base is flats.get(p.data.dtype) for p in self._params)

    # ------------------------------------------------------------------ one step
    def shard(self, n: int) -> tuple[int, int]:
        """Rows ``lo:hi`` of a batch of ``n`` that this rank trains: the balanced split, sizes
        differing by one at most (only an epoch's last, short batch is uneven)."""
        base, extra = divmod(n, self.size)
        lo = self.rank * base + min(self.rank, extra)
        return lo, lo + base + (self.rank < extra)

    @contextmanager
    def step(self, lo: int, hi: int, n: int):
        """Around a step's forward and backward on rows lo:hi of a batch of n.

        ``lo == hi`` (a rank with no example of a short last batch) is a stand-in step: the
        caller trains one example with weight 0, the synchronised batch norm counts nothing
        from it, and plain batch norm's running statistics are put back afterwards."""
        active = hi > lo
        self._state.active = active
        drops = [m for m in self.model.modules() if isinstance(m, Dropout)]
        for m in drops:
            m.batch_rows = (lo if active else 0, n)
        saved = None
        if not active and not self.sync_bn:
            saved = [(m, {k: b.copy() for k, b in m.named_buffers()})
                     for m in self.model.modules() if isinstance(m, _BatchNorm)]
        sync = synchronised(self.model, self.comm, self._state) if self.sync_bn \
            else nullcontext()
        try:
            with sync:
                yield
        except ValueError as err:
            if self.sync_bn or "more than 1 value per" not in str(err):
                raise
            raise ValueError(f"{err}; each rank normalises its {hi - lo} example(s) of the "
                             f"batch alone: --sync-bn (sync_bn=True) normalises over the whole "
                             f"batch") from err
        finally:
            for m in drops:
                m.batch_rows = None
            for m, buffers in saved or ():
                for key, value in buffers.items():
                    setattr(m, key, value)
            self._state.active = True

    def reduce(self, loss_sum: float, correct: int, stop: bool) -> tuple[float, int, bool]:
        """The step's one allreduce: gradients, loss sum, correct count and stop flag, summed
        over the ranks (the gradients in place). Returns the global loss sum, correct count,
        and whether any rank asked to stop."""
        if not self._bound():                 # a grad replaced since (load_state_dict)
            self._bind()
        self._extras[:] = (loss_sum, correct, float(stop))
        flats = list(self._flat.values())
        start = time.perf_counter()
        for flat in flats:                    # one per parameter dtype: one in practice
            self.comm.allreduce(flat, f"step {self.steps + 1}'s gradient allreduce")
        self.reduce_seconds += time.perf_counter() - start
        self.steps += 1
        loss_sum, correct, stop = (float(v) for v in self._extras)
        return loss_sum, int(round(correct)), stop > 0

    # ------------------------------------------------------------------ epoch boundaries
    def broadcast_weights(self) -> None:
        """Rank 0's parameters and buffers to every rank (one broadcast per dtype).

        The steps keep the ranks equal already; this makes it so whatever MPI's sums did, and
        at start-up whatever each rank built or loaded."""
        arrays = [p.data for p in self._params] + \
            [b for _, b in self.model.named_buffers()]
        self._broadcast(arrays, "the weights' broadcast from rank 0")

    def _broadcast(self, arrays, what: str) -> None:
        groups: dict = {}
        for a in arrays:
            groups.setdefault(a.dtype, []).append(a)
        for group in groups.values():
            flat = np.concatenate([a.ravel() for a in group])
            self.comm.bcast(flat, 0, what)
            _unpack(flat, group)

    def sync_buffers(self) -> None:
        """Before an evaluation or a checkpoint: average the batch-norm running statistics over
        the ranks (without ``sync_bn`` each rank's are its shards'), then broadcast rank 0's
        weights and buffers."""
        if not self.sync_bn:
            floats = [b for _, b in self.model.named_buffers() if b.dtype.kind == "f"]
            if floats:
                flat = np.concatenate([b.ravel().astype(np.float64) for b in floats])
                self.comm.allreduce(flat, "the running statistics' average")
                _unpack(flat / self.size, floats)
        self.broadcast_weights()

    def evaluate_sums(self, loss_sum: float, correct: int, count: int) -> tuple[float, int, int]:
        """An evaluation's per-rank sums, summed over the ranks."""
        sums = np.array([loss_sum, correct, count], np.float64)
        self.comm.allreduce(sums, "the evaluation's sums")
        return float(sums[0]), int(round(sums[1])), int(round(sums[2]))


def _unpack(flat: np.ndarray, arrays) -> None:
    """Write the consecutive slices of ``flat`` back into ``arrays``, in place and in order
    (the inverse of concatenating their ravelled values)."""
    offset = 0
    for a in arrays:
        a[...] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size
