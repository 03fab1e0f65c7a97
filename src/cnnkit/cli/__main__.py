"""``python -m cnnkit.cli ARGS``: the ``cnnkit`` command."""

import sys

from .main import main

sys.exit(main())
