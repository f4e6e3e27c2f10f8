"""``python -m callthrottle.simulate``: the ``callthrottle simulate`` command (the command line
drives the engine in ``__init__.py``, which knows nothing of it)."""

import sys

from ..cli import main

main(["simulate", *sys.argv[1:]])
