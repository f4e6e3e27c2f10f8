"""``python -m callthrottle``: the ``callthrottle`` command, as the installed script runs it
(without the ``cli`` extra, it says which extra to install)."""

from .cli import main

main()
