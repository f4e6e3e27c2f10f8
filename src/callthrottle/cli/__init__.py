"""The ``callthrottle`` command: status, live view, admin actions, simulated campaigns, a quick
benchmark. Needs the ``cli`` extra (``pip install 'callthrottle[cli]'``); charts in simulation
reports need the ``report`` extra too."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``callthrottle`` command (exits with its status)."""
    try:
        import click  # noqa: F401 - only checking that the extra is installed
        import rich  # noqa: F401
    except ImportError as exc:
        sys.stderr.write(
            f"callthrottle: the command line needs the 'cli' extra ({exc.name} is not "
            "installed): pip install 'callthrottle[cli]'\n"
        )
        raise SystemExit(2) from None
    from ._app import cli

    cli.main(args=None if argv is None else list(argv), prog_name="callthrottle")
