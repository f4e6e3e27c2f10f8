"""The ``callthrottle`` command group."""

from __future__ import annotations

import click

from ._admin import lift_fence, release, release_owner, reset, set_state
from ._bench import bench
from ._keepalive import keepalive
from ._metrics import metrics
from ._policy import policy
from ._simulate import simulate
from ._status import status
from ._top import top

__all__ = ("cli",)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="callthrottle")
def cli() -> None:
    """Per-number concurrency caps for outbound call centers: watch and fix them, and load-test
    them with a simulated campaign.

    Every command takes --url (env CALLTHROTTLE_URL; default memory://, this process only),
    --config (the TOML carrier configuration) and --prefix (the Redis key prefix)."""


for command in (
    simulate, status, top, metrics, reset, release, release_owner, set_state, lift_fence, bench,
    keepalive, policy,
):  # fmt: skip
    cli.add_command(command)
