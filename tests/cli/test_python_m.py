"""``python -m callthrottle`` runs the ``callthrottle`` command, as the installed script does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: Every subcommand the README's command table lists.
COMMANDS = (
    "simulate", "status", "top", "metrics", "reset", "release", "release-owner", "lift-fence", "set-state",
    "keepalive", "bench", "policy",
)  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` importing this tree's package."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, *args], check=False, capture_output=True, text=True, timeout=60, env=env
    )


def test_python_m_callthrottle_lists_the_commands() -> None:
    done = _run("-m", "callthrottle", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: callthrottle ")
    listed = {
        line.split()[0]
        for line in done.stdout.partition("Commands:")[2].splitlines()
        if line.strip()
    }
    assert listed >= set(COMMANDS)


def test_python_m_callthrottle_without_the_cli_extra_says_which_to_install() -> None:
    # click made unimportable, as when the extra is not installed.
    code = "import sys, runpy; sys.modules['click'] = None; runpy.run_module('callthrottle', run_name='__main__')"
    done = _run("-c", code, "--help")
    assert done.returncode == 2, done.stderr
    assert "pip install 'callthrottle[cli]'" in done.stderr
    assert "Traceback" not in done.stderr
