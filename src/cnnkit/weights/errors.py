"""The one error of :mod:`cnnkit.weights`, in a module of its own so that every file of the
package (and ``cnnkit.io``) can import it without importing the others."""

from __future__ import annotations

from ..errors import CnnkitError

__all__ = ["WeightsError"]


class WeightsError(CnnkitError, ValueError):
    """A weights file is missing, corrupt, of a format cnnkit does not read, or does not fit the
    model. The message is one line naming the file; ``match`` is the
    :class:`~cnnkit.weights.transfer.Match` when the file was read but does not fit (its
    ``problems()`` lists every missing, unexpected and mismatched array), else None."""

    def __init__(self, message: str, match=None):
        super().__init__(message)
        self.match = match
