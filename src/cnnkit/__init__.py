"""cnnkit: convolutional networks from first principles in NumPy.

``cnnkit.functional`` (also ``cnnkit.F``) holds the kernels, ``cnnkit.reference`` their naive
loop versions, ``cnnkit.gradcheck`` the numerical gradient checks; ``cnnkit.nn`` the modules,
``cnnkit.optim`` the optimizers and schedules, ``cnnkit.data`` MNIST and CIFAR-10,
``cnnkit.train`` the Trainer, ``cnnkit.io`` checkpoints, ``cnnkit.models`` the model zoo and the
pattern spec, ``cnnkit.summary`` the memory and parameter table, ``cnnkit.convert`` FC -> conv
conversion, ``cnnkit.timing`` per-layer timing and ``cnnkit.viz`` plots. Submodules load on
first use, so ``import cnnkit`` stays cheap.
"""

import importlib

__version__ = "0.1.0"
_SUBMODULES = {"functional": "functional", "F": "functional", "reference": "reference",
               "gradcheck": "gradcheck", "nn": "nn", "init": "init", "optim": "optim",
               "data": "data", "train": "train", "io": "io", "models": "models", "viz": "viz",
               "summary": "summary", "convert": "convert", "timing": "timing"}
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
