"""The application tier: a training run as a library call.

    config.py     RunConfig: the one schema of a run's settings (types, defaults, bounds, help,
                  JSON); the command line's options are generated from it
    inputs.py     the run's data, net, preprocessing and validation split
    training.py   fit(data, model, **settings) -> Run: what `cnnkit train` does
    run.py        Run (model, history, test accuracy, predict, evaluate, report, save) and
                  load_run(folder or checkpoint)

``cnnkit.fit``, ``cnnkit.Run``, ``cnnkit.load_run`` and ``cnnkit.RunConfig`` are these.
"""

from .config import RunConfig
from .run import Run, load_run
from .training import fit

__all__ = ["RunConfig", "Run", "fit", "load_run"]
