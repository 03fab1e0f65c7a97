"""``python -m cnnkit ARGS``: the ``cnnkit`` command."""

import sys

from .cli import main

sys.exit(main())
