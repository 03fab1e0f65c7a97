"""Nets and runs shared by the data-parallel tests: the same code trains in the test process
(the single-process reference) and, as ``python -m tests.distributed.nets``, on MPI ranks.

    mpiexec -n P python -m tests.distributed.nets KIND MODE OUT [--epochs E] [--batch B]
                      [--n-train N] [--fail-at STEP] [--hang-at STEP] [--timeout T]

KIND: "bn" (conv -> BN2d -> ... -> BN1d -> dropout -> fc), "plain" (no batch norm, with
dropout), "gn" (conv -> GroupNorm -> ... -> LayerNorm -> dropout -> fc: per-sample norms), MODE: "sync" or "local" (batch norm per shard). Rank 0 writes OUT (.npz): the state
dict, the batch losses and the validation accuracies. --fail-at makes rank 1 raise at a step,
--hang-at makes it sleep there (the fault tests).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from cnnkit import nn, optim
from cnnkit.train import Trainer

#: 110 = 9 batches of 12 and a short one of 2 (fewer than 3 ranks: one trains a stand-in);
#: batch norm per shard needs 2 examples a shard, so its runs take 120
N_TRAIN, N_EVEN, N_VAL = 110, 120, 31


def data(n_train: int = N_TRAIN, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_train + N_VAL, 3, 8, 8))
    y = rng.integers(0, 5, n_train + N_VAL)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def build(kind: str, seed: int = 1):
    """A float64 net: ``bn`` has both batch norms (the conv before BN2d has no bias, as in the
    zoo: its gradient is 0 in exact arithmetic, and Adam would amplify the rounding noise),
    ``plain`` none, ``gn`` GroupNorm and LayerNorm (each sample by its own statistics, so the
    ranks need nothing for them); all have dropout."""
    r = np.random.default_rng(seed)
    if kind == "bn":
        layers = [nn.Conv2d(3, 4, 3, padding=1, bias=False, rng=r), nn.BatchNorm2d(4), nn.ReLU(),
                  nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 16, bias=False, rng=r),
                  nn.BatchNorm1d(16), nn.ReLU()]
    elif kind == "gn":
        layers = [nn.Conv2d(3, 4, 3, padding=1, bias=False, rng=r), nn.GroupNorm(2, 4),
                  nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 16, bias=False, rng=r),
                  nn.LayerNorm(16), nn.ReLU()]
    else:
        layers = [nn.Conv2d(3, 4, 3, padding=1, rng=r), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Flatten(), nn.Linear(64, 16, rng=r), nn.Tanh()]
    layers += [nn.Dropout(0.3, rng=np.random.default_rng(seed + 4)), nn.Linear(16, 5, rng=r)]
    model = nn.Sequential(*layers)
    model.astype(np.float64)
    return model


def optimizer(model):
    return optim.Adam(model.named_parameters(), lr=1e-2, weight_decay=1e-3)


def train(kind: str, distributed=None, *, epochs: int = 2, batch: int = 12,
          n_train: int = N_TRAIN, callbacks=()):
    """Train ``epochs`` epochs (10 batches each: 20 steps by default) with Adam; returns the
    model and the history."""
    model = build(kind)
    trainer = Trainer(model, optimizer(model), batch_size=batch, epochs=epochs, progress=False,
                      log=None, distributed=distributed, restore_best=False,
                      callbacks=list(callbacks))
    train_data, val = data(n_train)
    trainer.fit(train_data, val)
    return model, trainer.history


def state(model) -> dict:
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


def main(argv=None) -> int:
    from cnnkit import distributed
    from cnnkit.callbacks import Callback

    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=("bn", "plain", "gn"))
    p.add_argument("mode", choices=("sync", "local"))
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--n-train", type=int, default=N_TRAIN)
    p.add_argument("--fail-at", type=int, default=None)
    p.add_argument("--hang-at", type=int, default=None)
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args(argv)
    comm = distributed.world(args.timeout)
    assert comm is not None, "run under mpiexec with at least 2 ranks"
    dp = distributed.DataParallel(comm, sync_bn=args.mode == "sync")

    class Fault(Callback):
        def on_batch_begin(self, batch, logs):
            if comm.rank != 1:
                return
            if logs["iteration"] == args.fail_at:
                raise RuntimeError(f"a planted fault at step {args.fail_at}")
            if logs["iteration"] == args.hang_at:
                time.sleep(3600)

    model, history = train(args.kind, dp, epochs=args.epochs, batch=args.batch,
                           n_train=args.n_train, callbacks=[Fault()])
    if comm.is_root:
        np.savez(args.out, **state(model), batch_loss=np.array(history["batch_loss"]),
                 val_acc=np.array(history["val_acc"]),
                 reduce_seconds=np.array(dp.reduce_seconds), steps=np.array(dp.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
