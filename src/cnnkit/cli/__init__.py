"""The ``cnnkit`` command: a thin shell over the library, one module per group of commands
(``train.py``, ``search.py``; ``use.py``: evaluate, predict; ``nets.py``: gradcheck, summary,
convert, time; ``transfer.py``: export, import; ``pages.py``: report, experiment). Each command
parses its options, makes one library call and prints; its examples live beside its options.
``main.py`` holds the parser, ``cnnkit help`` and the error boundary (bad input is one line on
stderr and a non-zero exit; ``CNNKIT_DEBUG=1`` or ``--debug`` shows the traceback). The options
of ``train`` and ``search`` are generated from :class:`cnnkit.RunConfig` (``options.py``).
"""

from .main import build_parser, main

__all__ = ["main", "build_parser"]
