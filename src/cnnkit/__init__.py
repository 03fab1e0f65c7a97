"""cnnkit: convolutional networks from first principles in NumPy.

``cnnkit.functional`` (also ``cnnkit.F``) holds the kernels, ``cnnkit.reference`` their naive
loop versions, ``cnnkit.gradcheck`` the numerical gradient checks; ``cnnkit.nn`` the modules,
``cnnkit.optim`` the optimizers and schedules, ``cnnkit.data`` the data sources,
``cnnkit.train`` the Trainer and ``cnnkit.callbacks`` what runs at its batch and epoch ends
(``cnnkit.monitor.LayerStats`` among them), ``cnnkit.io`` checkpoints, ``cnnkit.models`` the
model zoo and the pattern spec, ``cnnkit.summary`` the memory and parameter table,
``cnnkit.convert`` FC -> conv conversion, ``cnnkit.timing`` per-layer timing, ``cnnkit.viz``
pictures of what a net does, ``cnnkit.experiments`` the notes' experiments, ``cnnkit.report`` a
run's HTML page, and ``cnnkit.inference`` (also ``cnnkit.predict_images``) classifies image
files with a trained checkpoint. Submodules load on first use, so ``import cnnkit`` stays cheap.
"""

import importlib

__version__ = "0.1.0"
_SUBMODULES = {"functional": "functional", "F": "functional", "reference": "reference",
               "gradcheck": "gradcheck", "nn": "nn", "init": "init", "optim": "optim",
               "data": "data", "train": "train", "io": "io", "models": "models", "viz": "viz",
               "summary": "summary", "convert": "convert", "timing": "timing",
               "inference": "inference", "runs": "runs", "callbacks": "callbacks",
               "monitor": "monitor", "experiments": "experiments", "report": "report"}
__all__ = [*_SUBMODULES, "predict_images"]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module
        return module
    if name == "predict_images":
        from .inference import predict_images
        return predict_images
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
