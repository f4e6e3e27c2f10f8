"""Fixtures of the SIP bench: one Redis for the module, a fresh carrier and proxy per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import redis
from callthrottle.sync import SyncThrottle
from tests._servers import Server, lift_fence, own_server

from ._bench import (
    Carrier,
    Kamailio,
    embedded_python_home,
    handler_pythonpath,
    missing_tools,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# The caller IDs the dialers use, in turn, and their caps (the configuration Kamailio loads).
CAPS = {"+8657188880001": 20, "+8657188880002": 20, "+8657188880003": 20, "+8657188880004": 3}
# Seconds the proxy's slots outlive its last keep-alive (its timer sends one a second). Short,
# so that the phases' calls and idle spells outlive it: a slot kept alive by nothing would lapse
# while its call is up. Long enough for what must not end the session: a restart of the proxy
# (under half a second here; the dialers' INVITEs and the timer keep the session alive again as
# soon as it answers) and a keep-alive or two missed while Redis is down. A long one (say 60,
# through CALLTHROTTLE_SIP_LEASE_TTL) is the bench's control run: no slot then lapses during a
# phase, kept alive or not, so every phase must pass.
LEASE_TTL = float(os.environ.get("CALLTHROTTLE_SIP_LEASE_TTL") or 4.0)


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    why = missing_tools()
    if why is None:
        return
    if os.environ.get("CI"):  # CI installs them (.ci/run): their absence is a failure there
        pytest.fail(f"the SIP bench cannot run: {why}")
    pytest.skip(f"the SIP bench cannot run: {why}")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """Logs and traces of every phase; kept for a look when CALLTHROTTLE_SIP_KEEP is set."""
    path = Path(tempfile.mkdtemp(prefix="callthrottle-sip-"))
    yield path
    if os.environ.get("CALLTHROTTLE_SIP_KEEP"):
        print(f"the SIP bench's logs are in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def sip_redis(_tools: None) -> Iterator[tuple[str, Server]]:
    # Persistent, so that a server stopped and started again (a Redis outage) keeps its leases.
    with own_server(persistent=True) as (url, server):
        yield url, server


@pytest.fixture(scope="module")
def caps_file(workdir: Path) -> Path:
    path = workdir / "caps.toml"
    path.write_text("".join(f'[numbers."{n}"]\ncap = {cap}\n\n' for n, cap in CAPS.items()))
    return path


@pytest.fixture(scope="module")
def callers(workdir: Path) -> Path:
    """sipp's injection file: one caller ID per call, in turn."""
    path = workdir / "callers.csv"
    path.write_text("SEQUENTIAL\n" + "".join(f"{number};\n" for number in CAPS))
    return path


@pytest.fixture(scope="module")
def viewer(sip_redis: tuple[str, Server], caps_file: Path) -> Iterator[SyncThrottle]:
    """A throttle that only looks (holders), to see what the proxy left in Redis."""
    url, _ = sip_redis
    with SyncThrottle.from_url(url, config=str(caps_file), lease_ttl=LEASE_TTL) as throttle:
        yield throttle


@dataclass
class Bench:
    workdir: Path
    redis_url: str
    redis: Server
    callers: Path
    carrier: Carrier
    kamailio: Kamailio


@pytest.fixture
def bench(
    request: pytest.FixtureRequest,
    workdir: Path,
    sip_redis: tuple[str, Server],
    caps_file: Path,
    callers: Path,
) -> Iterator[Bench]:
    url, server = sip_redis
    client = redis.Redis.from_url(url)
    client.flushdb()  # a fresh start for every phase (the function library stays loaded)
    client.close()
    lift_fence(url)  # no call is up: a flush is no loss here (else the server fences)
    phase = workdir / request.node.name
    phase.mkdir()
    home = embedded_python_home()
    env = {
        **os.environ,
        **({"PYTHONHOME": home} if home is not None else {}),
        "PYTHONPATH": handler_pythonpath(),
        "CALLTHROTTLE_URL": url,
        "CALLTHROTTLE_CONFIG": str(caps_file),
        "CALLTHROTTLE_LEASE_TTL": str(LEASE_TTL),
        "CALLTHROTTLE_ON_BACKEND_DOWN": "refuse",
        "CALLTHROTTLE_INSTANCE": "sip-bench",
    }
    carrier = Carrier(phase)
    kamailio = Kamailio(phase, carrier.port, env)
    try:
        carrier.start()
        kamailio.start()
        yield Bench(phase, url, server, callers, carrier, kamailio)
    finally:
        kamailio.stop()
        carrier.stop()
        if server.proc is None:  # a test that stopped Redis and failed before starting it
            server.start()
