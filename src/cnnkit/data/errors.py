"""The one exception type of ``cnnkit.data``."""

from ..errors import CnnkitError

__all__ = ["DataError"]


class DataError(CnnkitError, ValueError):
    """A data file is corrupt, truncated, or not the kind of file asked for.

    The message names the file and the problem. A subclass of ``ValueError``, as
    ``cnnkit.io.CheckpointError`` is, so code that catches bad values catches it too. A file that
    does not exist raises ``FileNotFoundError`` as usual, not this.
    """
