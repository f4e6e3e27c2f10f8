"""``python -m callthrottle.cli``: the ``callthrottle`` command."""

from . import main

main()
