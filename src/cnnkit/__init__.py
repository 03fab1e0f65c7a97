"""cnnkit: convolutional networks from first principles in NumPy.

``cnnkit.fit(data, model, **settings)`` trains a net as ``cnnkit train`` does and returns a
``cnnkit.Run`` (its net, history and test accuracy, with ``predict``, ``evaluate``, ``report``
and ``save``); ``cnnkit.load_run(folder_or_checkpoint)`` reads one back; ``cnnkit.RunConfig``
is the schema of a run's settings (:mod:`cnnkit.app`). Every error about what a user gave is a
``cnnkit.CnnkitError`` (:mod:`cnnkit.errors`).

``cnnkit.functional`` (also ``cnnkit.F``) holds the kernels, ``cnnkit.reference`` their naive
loop versions, ``cnnkit.gradcheck`` the numerical gradient checks; ``cnnkit.nn`` the modules,
``cnnkit.optim`` the optimizers and schedules, ``cnnkit.data`` the data sources,
``cnnkit.train`` the Trainer and ``cnnkit.callbacks`` what runs at its batch and epoch ends
(``cnnkit.monitor.LayerStats`` among them; ``cnnkit.writers`` those that write a run's
history and curves; ``cnnkit.tensorboard`` TensorBoard's event files), ``cnnkit.io``
checkpoints and weights files, ``cnnkit.models`` the model zoo and the pattern spec,
``cnnkit.summary`` the memory and parameter table, ``cnnkit.convert`` FC -> conv conversion,
``cnnkit.timing`` per-layer timing, ``cnnkit.viz`` pictures of what a net does,
``cnnkit.experiments`` the notes' experiments, ``cnnkit.lr_find`` the learning-rate range test
(``cnnkit.lr_find.lr_find(data, model, **settings)``), ``cnnkit.compare`` runs side by side,
``cnnkit.report`` a run's HTML page, and ``cnnkit.inference`` (also ``cnnkit.predict_images``)
classifies image files with a trained checkpoint. ``cnnkit.set_num_threads(n)`` / ``cnnkit.get_num_threads()``
(from ``cnnkit.parallel``) set and read the threads the kernels use: by default the cores this
process may use, or ``CNNKIT_NUM_THREADS``; results are the same bits on any count. Submodules
load on first use, so ``import cnnkit`` stays cheap.
"""

import importlib

__version__ = "0.1.0"
_SUBMODULES = {"functional": "functional", "F": "functional", "reference": "reference",
               "gradcheck": "gradcheck", "nn": "nn", "init": "init", "optim": "optim",
               "data": "data", "train": "train", "io": "io", "models": "models", "viz": "viz",
               "summary": "summary", "convert": "convert", "timing": "timing",
               "inference": "inference", "runs": "runs", "callbacks": "callbacks",
               "monitor": "monitor", "experiments": "experiments", "report": "report",
               "parallel": "parallel", "allocator": "allocator", "export": "export",
               "weights": "weights", "checkpoint": "checkpoint", "writers": "writers", "app": "app",
               "tensorboard": "tensorboard",
               "evaluation": "evaluation", "errors": "errors", "search": "search",
               "distributed": "distributed", "checks": "checks", "geometry": "geometry",
               "notation": "notation", "files": "files", "finite": "finite",
               "compare": "compare", "lr_find": "lr_find", "classify_files": "classify_files"}
# names defined in a submodule, imported from it on first use
_NAMES = {"predict_images": "inference", "set_num_threads": "parallel",
          "get_num_threads": "parallel", "num_threads": "parallel", "fit": "app", "Run": "app",
          "load_run": "app", "RunConfig": "app", "CnnkitError": "errors"}
__all__ = [*_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module
        return module
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
