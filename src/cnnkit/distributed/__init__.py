"""Beyond one process: data-parallel training and search over MPI ranks.

``mpiexec -n P cnnkit train ...`` (or ``cnnkit train --workers P``, which launches it) trains
one net on P processes: each rank runs forward and backward on its shard of every global batch,
and one allreduce per step sums the gradients (:mod:`.data_parallel`). ``--sync-bn``
normalises with the global batch's statistics (:mod:`.syncbn`). ``cnnkit search`` spreads the
trials of a random hyperparameter search over the ranks.

:mod:`.comm` wraps MPI (mpi4py, imported only when the launcher started several ranks): every
collective has a timeout and notices a failed peer, so a job stops with one line naming the
rank at fault instead of hanging. :mod:`.launch` starts a job from the command line.

From Python, run under ``mpiexec``::

    from cnnkit import distributed
    comm = distributed.world()                      # None in a plain process
    dp = distributed.DataParallel(comm, sync_bn=True) if comm else None
    trainer = Trainer(model, optimizer, distributed=dp, progress=comm is None or comm.is_root)
"""

from .comm import (DEFAULT_TIMEOUT, AgreedError, CollectiveTimeout, Comm, DistributedError,
                   PeerFailed, active, exit_now, job_size, share_cores, together, world)
from .data_parallel import DataParallel

__all__ = ["Comm", "DataParallel", "DistributedError", "PeerFailed", "AgreedError",
           "CollectiveTimeout", "DEFAULT_TIMEOUT", "world", "active", "job_size", "exit_now",
           "together", "share_cores"]
