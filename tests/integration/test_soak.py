"""The soak run, short: no number goes over its cap through data loss.

``benchmarks/soak.py`` runs dialer processes (one SIGKILLed every few seconds) against a server
that loses its data again and again: a server without persistence restarted, and a Redis
Cluster whose masters are SIGKILLed in turn (a replica takes over, the killed node rejoins as
its replica). Its check is independent of the library: from the dialers' own logs of each
call's start and end, it counts the calls really up on each number at every moment. Here it
must find every number at or under its cap, no call-second over it, and no slot leaked once
every lease could expire.

The runs are tuned so that the fence is what keeps the cap: short leases, calls that outlive
a loss, more callers than slots. With ``--lift-fence`` added (the fence ended every 20 ms, so
as soon as a restarted server or a promoted replica answers) the same runs went over the cap
and exited with status 1, every time they were tried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import callthrottle

pytestmark = [pytest.mark.soak, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "benchmarks" / "soak.py"

# Short leases (2 s) and calls of a second: a restart without persistence forgets calls that
# go on well after it. 3 dialer processes x 20 callers on 5 numbers of cap 3; a restart every
# 5 s, a dialer SIGKILLed every 4 s.
RESTARTS = [
    "--minutes", "0.3", "--no-persistence", "--restart-every", "5", "--kill-every", "4",
    "--processes", "3", "--coroutines", "20", "--numbers", "5", "--cap", "3",
    "--call-ms", "1000", "--ttl", "2",
]  # fmt: skip
# A failover takes 3.5-5 s (node timeout 2 s), during which a dead master's leases (TTL 3 s)
# lapse; calls of 4 s go on past it, and 40 callers per process share 3 numbers (one per
# master), ready to take a slot the new master shows free. The whole cluster refuses every
# call for about a second of each failover (CLUSTERDOWN): leases shorter than about 3 s would
# lapse on the masters that lost nothing, which no fence is meant to cover.
FAILOVERS = [
    "--minutes", "0.4", "--cluster", "--failover-every", "4", "--kill-every", "4",
    "--processes", "3", "--coroutines", "40", "--numbers", "3", "--cap", "3",
    "--call-ms", "4000", "--ttl", "3",
]  # fmt: skip


def soak(arguments: list[str]) -> dict[str, Any]:
    """Run the soak; its report. It must exit 0: no number over its cap, no slot leaked."""
    here = str(Path(callthrottle.__file__).resolve().parents[1])  # the library under test
    path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(SOAK), *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
    details = {key: report.get(key) for key in ("peaks", "over_cap", "losses", "leaked_slots")}
    assert done.returncode == 0, f"{details}\n{done.stderr[-2000:]}"
    return report


def check_the_cap_held(report: dict[str, Any]) -> None:
    assert report["calls"] > 0
    assert all(peak <= report["cap"] for peak in report["peaks"].values()), report["peaks"]
    assert report["over_cap_call_seconds"] == 0, report["over_cap"]
    assert report["leaked_slots"] == 0
    assert report["kills"] >= 1


def test_the_cap_holds_through_restarts_without_persistence() -> None:
    report = soak(RESTARTS)
    check_the_cap_held(report)
    assert report["restarts"] >= 2
    assert not report["persistence"]
    assert not report["fence_lifted"]


@pytest.mark.cluster
def test_the_cap_holds_through_cluster_failovers() -> None:
    report = soak(FAILOVERS)
    check_the_cap_held(report)
    assert report["failovers"] >= 2
    assert report["mode"] == "cluster"
    assert not report["fence_lifted"]
