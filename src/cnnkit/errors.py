"""The one error base of cnnkit: :class:`CnnkitError`.

Every error cnnkit raises about what a user gave it (an option, a file, a folder, a net, data)
is a ``CnnkitError``: one line saying what went wrong and naming the thing at fault, which the
command line prints as ``cnnkit COMMAND: error: LINE`` and Python code can catch as one type.
Each module's own errors derive from it and also from the built-in type code has long caught
them as (``DataError`` is a ``ValueError``, ``RunFolderError`` an ``OSError``), so both work:

    >>> from cnnkit.data import DataError
    >>> issubclass(DataError, CnnkitError), issubclass(DataError, ValueError)
    (True, True)

This module imports nothing of cnnkit: every tier may import it.
"""

from __future__ import annotations

__all__ = ["CnnkitError", "UsageError"]


class CnnkitError(Exception):
    """What went wrong, in one line, with the file and the MPI rank where they apply.

    Attributes
    ----------
    message : the line (a spec error's message has more lines: the spec with a caret)
    path : the file or folder at fault, when there is one (the message names it too)
    rank : the MPI rank the error happened on, when it is one rank of several and that matters
    """

    def __init__(self, message: str = "", *args, path=None, rank: int | None = None):
        super().__init__(message, *args)
        self.message = str(message)
        self.path = path
        self.rank = rank

    def __str__(self) -> str:
        return self.message

    def line(self) -> str:
        """What the command line prints after ``error:``: the message, with the rank in front
        when there is one."""
        return self.message if self.rank is None else f"rank {self.rank}: {self.message}"


class UsageError(CnnkitError, ValueError):
    """A setting or option the user gave is wrong: its name and what it takes are in the message
    (``epochs must be a count from 1 to 100,000, got 0``)."""
