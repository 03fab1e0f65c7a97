"""Values made JSON-safe: what cnnkit's results (an experiment's, a comparison's, an
evaluation's, a range test's) go through before ``json.dumps(..., allow_nan=False)``."""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

__all__ = ["jsonable"]


def jsonable(value):
    """``value`` with NumPy scalars and arrays made Python, tuples made lists and non-finite floats
    made None (JSON has no NaN or infinity)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value
