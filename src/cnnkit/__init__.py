"""cnnkit: convolutional networks from first principles in NumPy.

``cnnkit.functional`` (also ``cnnkit.F``) holds the kernels, ``cnnkit.reference`` their naive
loop versions, ``cnnkit.gradcheck`` the numerical gradient checks. Submodules load on first use,
so ``import cnnkit`` stays cheap.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["functional", "F", "reference", "gradcheck"]

_SUBMODULES = {"functional": "functional", "F": "functional", "reference": "reference",
               "gradcheck": "gradcheck"}


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{_SUBMODULES[name]}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
