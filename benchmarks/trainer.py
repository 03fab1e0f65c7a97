"""``python -m benchmarks.trainer``: what the Trainer's loop and its callbacks cost.

One epoch of the same mini-batch steps, timed four ways on the same net, data and seed, with
NumPy's BLAS at one thread:

- ``bare``: a hand-written loop (shuffle, index, forward, loss, backward, update, accuracy), the
  floor any trainer pays;
- ``trainer``: ``Trainer.fit`` with no callbacks (``progress=False, log=None``);
- ``layer stats``: the same with ``LayerStats(every=50)``, which ``cnnkit train`` records;
- ``progress bar``: the same with the tqdm bar (written to a null stream).

Each is reported as the median of its epochs and as a percentage over ``bare``. The variants
take turns, repeat after repeat, so that a slow spell of a shared machine falls on all of them.
Two nets: LeNet-BN on MNIST digits (the loop's cost beside real work) and a 16 -> 10 linear
layer on 16 pixels (the loop's own cost per mini-batch, in microseconds).

This compares cnnkit with itself, not with PyTorch, so it is not part of ``python -m
benchmarks``' ratio tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time

__all__ = ["measure_epochs", "main"]


def _nets(images: int):
    """(name, make_model, x, y, batch) for the two nets."""
    import numpy as np

    from cnnkit import nn
    from cnnkit.data import MNIST_MEAN, MNIST_STD, load_mnist, normalize, to_float
    from cnnkit.models import lenet_bn

    pixels, labels = load_mnist("train")
    x = normalize(to_float(pixels[:images]), MNIST_MEAN, MNIST_STD)
    y = labels[:images]
    flat = np.ascontiguousarray(x.reshape(len(x), -1)[:, 300:316])
    return [
        ("LeNet-BN, batch 64", lambda: nn.Sequential(*lenet_bn(rng=np.random.default_rng(0))),
         x, y, 64),
        ("Linear 16->10, batch 16",
         lambda: nn.Sequential(nn.Linear(16, 10, rng=np.random.default_rng(0))), flat, y, 16),
    ]


def _bare_epoch(model, optimizer, x, y, batch: int, seed: int) -> None:
    import numpy as np

    from cnnkit.functional import softmax_loss

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    model.train()
    for start in range(0, len(x), batch):
        idx = order[start:start + batch]
        xb, yb = x[idx], y[idx]
        optimizer.zero_grad()
        scores = model.forward(xb)
        loss, dscores = softmax_loss(scores, yb)
        model.backward(dscores, input_grad=False)
        optimizer.step()
        float(loss), int(np.sum(scores.argmax(axis=1) == yb))


def measure_epochs(make_model, x, y, batch: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of one epoch per variant (see the module docstring), ``repeats`` samples each."""
    from cnnkit.monitor import LayerStats
    from cnnkit.optim import SGD
    from cnnkit.train import Trainer

    def trainer(callbacks=list, progress=False):
        def epoch():
            model = make_model()
            opt = SGD(model.named_parameters(), lr=0.01)
            t = Trainer(model, opt, batch_size=batch, epochs=1, progress=progress, log=None,
                        callbacks=list(callbacks()), restore_best=False)
            with contextlib.redirect_stderr(io.StringIO()):
                start = time.perf_counter()
                t.fit((x, y))
                return time.perf_counter() - start
        return epoch

    def bare():
        model = make_model()
        opt = SGD(model.named_parameters(), lr=0.01)
        start = time.perf_counter()
        _bare_epoch(model, opt, x, y, batch, seed=0)
        return time.perf_counter() - start

    variants = {"bare": bare, "trainer": trainer(),
                "layer stats": trainer(lambda: [LayerStats(every=50)]),
                "progress bar": trainer(progress=True)}
    samples = {name: [] for name in variants}
    for fn in variants.values():          # one untimed round: first-call costs
        fn()
    for _ in range(repeats):
        for name, fn in variants.items():
            samples[name].append(fn())
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trainer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=6400,
                        help="training images per epoch (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=9,
                        help="epochs timed per variant (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.images < 64 or args.repeats < 1:
        parser.error("--images must be at least 64 and --repeats at least 1")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        for name, make_model, x, y, batch in _nets(args.images):
            samples = measure_epochs(make_model, x, y, batch, args.repeats)
            batches = -(-len(x) // batch)
            floor = statistics.median(samples["bare"])
            print(f"{name}: one epoch of {len(x)} images ({batches} mini-batches), median of "
                  f"{args.repeats}")
            for variant, values in samples.items():
                median = statistics.median(values)
                print(f"  {variant:<13} {median * 1e3:9.1f} ms  (range {min(values) * 1e3:.1f}"
                      f"-{max(values) * 1e3:.1f})  {100 * (median - floor) / floor:+6.1f}%  "
                      f"{1e6 * (median - floor) / batches:+7.1f} us per mini-batch")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
