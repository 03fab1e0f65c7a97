"""What both weight readers accept as an array's shape, and how their messages show what a file
holds, so that neither reader's work nor its messages grow with what a hostile file declares.

A file declares each array's shape itself (a safetensors header's ``"shape"`` list, a PyTorch
pickle's size tuple), and a few hundred bytes can declare a hundred thousand dimensions. So a
shape is refused on its length first, before any size in it is looked at (:func:`shape_problem`
is O(1) for a shape over the cap, O(dims) otherwise), and a message shows a shape or a name
cut short (:func:`shape_text`, :func:`quoted`), never all of it.
"""

from __future__ import annotations

import sys

__all__ = ["MAX_DIMS", "MAX_ARRAY_BYTES", "shape_problem", "shape_text", "quoted"]

#: The most dimensions an array in a weights file may have: NumPy 1.x's limit (NumPy 2 allows
#: 64), so that every array a file passes with describes can be made under any NumPy cnnkit
#: supports. Weights have at most 5 or 6.
MAX_DIMS = 32

#: No array can hold more bytes than the largest index NumPy (and the C library) can hold.
MAX_ARRAY_BYTES = sys.maxsize

_SHOWN_SIZES = 6


def shape_problem(sizes, itemsize: int) -> str | None:
    """What is wrong with ``sizes`` (a list or tuple a file gave) as the shape of an array of
    ``itemsize``-byte elements, as words that follow "its shape [...]", or None: more than
    :data:`MAX_DIMS` sizes (checked before any size is read), a size that is not a
    non-negative integer, or more bytes than any array can hold (NumPy refuses such a shape
    even when a zero size leaves it empty)."""
    if len(sizes) > MAX_DIMS:
        return f"has {len(sizes):,} dimensions, more than {MAX_DIMS}"
    for size in sizes:
        if type(size) is not int or size < 0:
            return f"has a size {quoted(size, 40)}, not a non-negative integer"
    span = itemsize
    for size in sizes:
        span *= size or 1
        if span > MAX_ARRAY_BYTES:
            return "spans more than 2**63 - 1 bytes, more than any array can hold"
    return None


def shape_text(sizes) -> str:
    """A shape for a message, as ``[3, 64, 7, 7]``, or its first sizes and the count of all
    when it has more than a few: ``[1, 1, 1, 1, 1, 1, ... (100,000 sizes)]``."""
    if len(sizes) <= _SHOWN_SIZES:
        return "[" + ", ".join(quoted(s, 40) for s in sizes) + "]"
    first = ", ".join(quoted(s, 40) for s in list(sizes[:_SHOWN_SIZES]))
    return f"[{first}, ... ({len(sizes):,} sizes)]"


def quoted(value, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, without formatting all of a long value (a
    name in a file can be megabytes long, a size a thousand-digit integer)."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[:limit]
    elif type(value) is int and value.bit_length() > 4 * limit:
        return f"an integer of {value.bit_length():,} bits"
    elif isinstance(value, (list, tuple, dict)) and len(value) > _SHOWN_SIZES:
        return f"a {type(value).__name__} of {len(value):,} items"
    text = repr(value)                 # str's and bytes' repr escape what is not printable
    return text if len(text) <= limit else text[:limit - 3] + "..."
