"""The SIP bench: Kamailio running ``examples/kamailio/kamailio.cfg`` with the callthrottle
handler, a sipp carrier behind it and sipp dialers in front of it, all on 127.0.0.1.

Every process is started by the tests and stopped by them; every load is bounded in calls and
in time (sipp's ``-timeout``), so it ends by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests._servers import free_port

from ._carrier import CarrierCall, parse_trace

__all__ = (
    "Carrier",
    "Dialer",
    "Kamailio",
    "handler_pythonpath",
    "missing_tools",
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "kamailio" / "kamailio.cfg"
HANDLER = ROOT / "examples" / "kamailio" / "callthrottle_handler.py"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
APP_PYTHON3 = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/app_python3.so")


def _embedded_python() -> str | None:
    """The Python version Kamailio's app_python3 is linked with (``3.11``), if found."""
    modules = sorted(Path("/usr/lib").glob("*/kamailio/modules/app_python3.so"))
    if not modules or shutil.which("ldd") is None:
        return None
    linked = subprocess.run(
        ["ldd", str(modules[0])], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"libpython(\d+\.\d+)", linked)
    return found.group(1) if found else None


def missing_tools() -> str | None:
    """Why the bench cannot run here, or None."""
    absent = [tool for tool in ("kamailio", "kamcmd", "sipp") if shutil.which(tool) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (see .ci/debian-pins)"
    embedded = _embedded_python()
    if embedded is None:
        return "Kamailio's app_python3 module is not installed (kamailio-python3-modules)"
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if embedded != ours:
        return f"Kamailio embeds Python {embedded}; these tests' packages are for Python {ours}"
    return None


def embedded_python_home() -> str | None:
    """PYTHONHOME for Kamailio's embedded Python: the system's own (``/usr`` on Debian), when
    it holds that Python's standard library. Without it, the embedded interpreter takes the
    standard library and site packages of the first ``python3`` on PATH (a pyenv or a virtual
    environment, as under ``python dev.py test``), whose version may differ from the one it is
    linked with (Debian's 3.11.2 needs ``async_timeout`` for redis-py; 3.11.7's path has none)."""
    embedded = _embedded_python()
    if embedded is not None and Path(f"/usr/lib/python{embedded}/os.py").exists():
        return "/usr"
    return None


def handler_pythonpath() -> str:
    """PYTHONPATH for Kamailio's embedded Python: this checkout's callthrottle first, then the
    packages of the Python running the tests (redis, anyio, ...: same minor version)."""
    paths = [str(ROOT / "src"), *site.getsitepackages()]
    return os.pathsep.join(dict.fromkeys(paths))


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Kamailio:
    """The proxy, in the foreground (``-DD -E``), with its own runtime folder and ports."""

    def __init__(self, workdir: Path, carrier_port: int, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.carrier_port = carrier_port
        self.env = env
        self.ctl = workdir / "kamailio.ctl"
        self.log = workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "kamailio", "-DD", "-E",
            "-f", str(CONFIG),
            "-Y", str(self.workdir),
            "-P", str(self.workdir / "kamailio.pid"),
            "-A", f"LISTEN=udp:127.0.0.1:{self.port}",
            "-A", f'CARRIER="sip:127.0.0.1:{self.carrier_port}"',
            "-A", f'HANDLER="{HANDLER}"',
            "-A", f'CTL_SOCKET="unix:{self.ctl}"',
        ]  # fmt: skip
        with self.log.open("ab") as output:
            self.proc = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
            )
        self._wait_until_answering(time.monotonic() + 30)

    def _wait_until_answering(self, deadline: float) -> None:
        """Until a worker answers an OPTIONS (the script refuses it: any answer will do)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.2)
            local = sock.getsockname()[1]
            probe = (
                f"OPTIONS sip:probe@127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-probe-{time.monotonic_ns()}\r\n"
                f"From: <sip:probe@127.0.0.1:{local}>;tag=probe\r\n"
                f"To: <sip:probe@127.0.0.1:{self.port}>\r\n"
                f"Call-ID: probe-{time.monotonic_ns()}@127.0.0.1\r\n"
                "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"kamailio exited with {self.proc.returncode}:\n{_log_tail(self.log)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kamailio did not answer:\n{_log_tail(self.log)}")
                sock.sendto(probe, ("127.0.0.1", self.port))
                try:
                    if sock.recv(4096).startswith(b"SIP/2.0 "):
                        return
                except (TimeoutError, ConnectionRefusedError):
                    continue

    def workers(self) -> list[int]:
        """The pids of the processes that read SIP messages (``udp receiver``)."""
        listing = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl}", "core.psx"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        pids = re.findall(r"PID: (\d+)\s+DSC: udp receiver", listing)
        return [int(pid) for pid in pids]

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the proxy to exit by itself; its exit code, or None if it is still up."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_until_bound(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until someone listens on UDP ``port`` (binding it fails)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"sipp exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"sipp did not bind port {port}")
        time.sleep(0.05)


class Carrier:
    """The sipp UAS behind the proxy; its message log is the only source of the counts."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.trace = workdir / "carrier-messages.log"
        self.errors = workdir / "carrier-errors.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, scenario: str = "carrier.xml", hold: float = 0) -> None:
        """Answer calls as ``scenario`` says (``carrier_hangs_up.xml`` hangs up after ``hold``
        seconds)."""
        command = [
            "sipp", "-sf", str(SCENARIOS / scenario),
            "-i", "127.0.0.1", "-p", str(self.port), "-d", str(int(hold * 1000)),
            "-trace_msg", "-message_file", str(self.trace),
            "-trace_err", "-error_file", str(self.errors),
            "-nostdin", "-timeout", "120s",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_bound(self.port, self.proc, time.monotonic() + 10)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def calls(self) -> dict[str, CarrierCall]:
        text = self.trace.read_text(errors="replace") if self.trace.exists() else ""
        return parse_trace(text)


class Dialer:
    """One sipp UAC run: ``calls`` calls at ``rate`` per second through the proxy, each held
    ``hold`` seconds once answered, caller IDs taken in turn from ``callers`` (a sipp injection
    file). Bounded: sipp stops after ``limit`` seconds whatever happens. With the scenario
    ``dialer_held.xml`` the calls wait for the carrier to hang up instead."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        proxy_port: int,
        callers: Path,
        *,
        rate: float,
        calls: int,
        hold: float,
        limit: float = 60,
        scenario: str = "dialer.xml",
    ) -> None:
        self.name = name
        self.stats = workdir / f"{name}-errors.log"
        self.limit = limit
        command = [
            "sipp", "-sf", str(SCENARIOS / scenario),
            "-inf", str(callers),
            "-i", "127.0.0.1", "-p", str(free_port()),
            f"127.0.0.1:{proxy_port}", "-s", "carrier",
            "-r", str(rate), "-m", str(calls), "-d", str(int(hold * 1000)),
            "-recv_timeout", "20000",
            "-timeout", f"{int(limit)}s",
            "-trace_err", "-error_file", str(self.stats),
            "-nostdin",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> int:
        """Wait for the run to end; sipp's exit code (0: every call went as scripted)."""
        try:
            return self.proc.wait(self.limit + 10)
        except subprocess.TimeoutExpired:
            _stop(self.proc)
            raise RuntimeError(f"dialer {self.name} did not stop by itself") from None

    def stop(self) -> None:
        _stop(self.proc)
