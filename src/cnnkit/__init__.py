"""cnnkit: convolutional networks from first principles in NumPy.

``cnnkit.functional`` (also ``cnnkit.F``) holds the kernels, ``cnnkit.reference`` their naive
loop versions, ``cnnkit.gradcheck`` the numerical gradient checks; ``cnnkit.nn`` the modules,
``cnnkit.optim`` the optimizers and schedules, ``cnnkit.data`` the data sources,
``cnnkit.train`` the Trainer and ``cnnkit.callbacks`` what runs at its batch and epoch ends
(``cnnkit.monitor.LayerStats`` among them; ``cnnkit.writers`` those that write a run's
history and curves), ``cnnkit.io`` checkpoints and weights files, ``cnnkit.models`` the
model zoo and the pattern spec, ``cnnkit.summary`` the memory and parameter table,
``cnnkit.convert`` FC -> conv conversion, ``cnnkit.timing`` per-layer timing, ``cnnkit.viz``
pictures of what a net does, ``cnnkit.experiments`` the notes' experiments, ``cnnkit.report`` a
run's HTML page, and ``cnnkit.inference`` (also ``cnnkit.predict_images``) classifies image
files with a trained checkpoint. ``cnnkit.set_num_threads(n)`` / ``cnnkit.get_num_threads()``
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
               "parallel": "parallel", "export": "export", "weights": "weights",
               "checkpoint": "checkpoint", "writers": "writers"}
_THREAD_NAMES = ("set_num_threads", "get_num_threads", "num_threads")
__all__ = [*_SUBMODULES, "predict_images", *_THREAD_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module
        return module
    if name in _THREAD_NAMES:
        return getattr(importlib.import_module(".parallel", __name__), name)
    if name == "predict_images":
        from .inference import predict_images  # on first use: keeps `import cnnkit` cheap
        return predict_images
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
