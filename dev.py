"""One entry point for everything a developer runs; needs only Python >= 3.10 and pip.

    python dev.py demo    # set up .venv, then run `callthrottle simulate` (memory://)
    python dev.py test    # set up .venv with test tools, then run the whole test suite
    python dev.py lint    # mypy --strict and ruff
    python dev.py bench   # the benchmark suite (starts its own Redis-protocol server)

Set-up is idempotent: the virtual environment in .venv is created on first use and
re-synchronised when pyproject.toml changes. Extra arguments go to the tool that runs
(``python dev.py test -k fifo``, ``python dev.py demo --agents 100``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
CLI = BIN / ("callthrottle.exe" if os.name == "nt" else "callthrottle")

# What each command needs installed, as pip arguments (dependency groups need pip >= 25.1).
NEEDS = {
    "demo": ["-e", ".[cli,report]"],
    "test": ["-e", ".", "--group", "test"],
    "lint": ["-e", ".", "--group", "dev"],
    "bench": ["-e", ".", "--group", "bench"],
}


def run(*command: str | Path) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True)


def ensure_env(needs: list[str]) -> None:
    """Create .venv and install what ``needs`` names, unless already done for this pyproject."""
    stamp_key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + " ".join(needs).encode()
    ).hexdigest()[:16]
    stamp = VENV / f".installed-{stamp_key}"
    if stamp.exists():
        return
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip>=25.1")
    run(PYTHON, "-m", "pip", "install", "--quiet", *needs)
    stamp.touch()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in NEEDS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_env(NEEDS[command])
    try:
        if command == "demo":
            run(CLI, "simulate", *rest)
        elif command == "test":
            run(PYTHON, "-m", "pytest", *rest)
        elif command == "lint":
            run(PYTHON, "-m", "mypy", *rest)
            run(PYTHON, "-m", "ruff", "check", ".")
            run(PYTHON, "-m", "ruff", "format", "--check", ".")
        elif command == "bench":
            run(PYTHON, "benchmarks/suite.py", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
