"""Real SIP, end to end: does the carrier ever see more calls on a number than its cap?

Kamailio (``examples/kamailio/kamailio.cfg``, 4 workers, the callthrottle handler) is the
outbound proxy; sipp dialers offer far more calls than the caps from four caller IDs (caps 20,
20, 20 and 3); a sipp carrier answers every call it gets. The count comes from the carrier's
message log alone: per caller ID, the most calls answered and not yet hung up at one instant.
Each phase then checks that no slot is left in Redis once every call ended.

Every slot belongs to the proxy's session, which Kamailio's timer process keeps alive once a
second; slots outlive the last keep-alive by ``LEASE_TTL`` (4 s) here. Calls and idle spells
last longer than that, so a slot that nothing kept alive would lapse while its call is up, and
the next call on the number would find a free slot: the carrier would see one call too many.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from ._bench import Dialer
from ._carrier import peak, peaks
from .conftest import CAPS, LEASE_TTL

if TYPE_CHECKING:
    from callthrottle.sync import SyncThrottle

    from .conftest import Bench

pytestmark = [pytest.mark.sip, pytest.mark.slow, pytest.mark.timeout(90)]


def dial(
    bench: Bench, name: str, *, rate: float, calls: int, hold: float, scenario: str = "dialer.xml"
) -> Dialer:
    return Dialer(
        bench.workdir,
        name,
        bench.kamailio.port,
        bench.callers,
        rate=rate,
        calls=calls,
        hold=hold,
        scenario=scenario,
    )


def check_carrier(bench: Bench, viewer: SyncThrottle, phase: str) -> None:
    """What the carrier saw stays within every cap, and nothing is left held in Redis."""
    # The proxy gives a slot back as soon as it relayed the BYE, and every dialer has had the
    # answer to its last call's BYE: every slot is back by now. (One nobody gave back would stay
    # while the proxy keeps its session alive.)
    left = {number: [h.token for h in viewer.holders(number)] for number in CAPS}
    time.sleep(0.5)  # for the carrier's log of the last messages to reach the disk
    calls = bench.carrier.calls()
    seen = peaks(calls.values())
    answered = Counter(call.number for call in calls.values() if call.answered is not None)
    still_up = sorted(c.call_id for c in calls.values() if c.answered and c.ended is None)
    # The handler's own word, to explain a failure (never counted): leases its throttles found
    # expired while their calls were up.
    log = bench.kamailio.log_text()
    lost = log.count("lapsed before the call ended")
    late = log.count("once Redis was back")
    failed_keepalives = log.count("keep-alive of session")
    summary = (
        f"{phase} (lease TTL {LEASE_TTL:g} s): carrier peaks {seen} (caps {CAPS}); "
        f"calls answered {dict(answered)} of {len(calls)} that reached the carrier; "
        f"still up {len(still_up)}; "
        f"slots left in Redis {sum(map(len, left.values()))}; the proxy logged {lost} slots "
        f"lapsed, {late} given back once Redis was back, {failed_keepalives} keep-alives failed"
    )
    print(summary)
    over = {number: top for number, top in seen.items() if top > CAPS.get(number, 0)}
    assert not over, f"the carrier saw more calls than the cap on {over}. {summary}"
    unfilled = {
        number: seen.get(number, 0) for number in CAPS if seen.get(number, 0) < CAPS[number]
    }
    assert not unfilled, f"the load did not fill these numbers' caps: {unfilled}. {summary}"
    held = {
        number: f"{len(tokens)} ({', '.join(tokens[:3])}...)"
        for number, tokens in left.items()
        if tokens
    }
    assert not held, f"slots still held once the calls ended: {held}. {summary}"
    assert not still_up, f"calls never hung up at the carrier: {still_up[:5]}. {summary}"


def test_a_steady_load_of_short_calls(bench: Bench, viewer: SyncThrottle) -> None:
    """The carrier hangs up here (the other phases' calls are hung up by the dialer): the
    proxy finds the caller ID of a BYE that comes from the carrier in To."""
    bench.carrier.stop()
    bench.carrier.start("carrier_hangs_up.xml", hold=1.5)
    dialer = dial(bench, "steady", rate=80, calls=400, hold=0, scenario="dialer_held.xml")
    dialer.wait()
    check_carrier(bench, viewer, "a) steady, 1.5 s calls, the carrier hangs up")


def test_b_calls_longer_than_the_lease_ttl(bench: Bench, viewer: SyncThrottle) -> None:
    dialer = dial(bench, "long", rate=40, calls=320, hold=6)
    dialer.wait()
    check_carrier(bench, viewer, "b) 6 s calls")


def test_c_workers_idle_for_longer_than_the_lease_ttl(bench: Bench, viewer: SyncThrottle) -> None:
    """A burst fills every number in half a second; then no SIP message reaches any worker for
    5 s (more than the lease TTL) while those calls are up; then a second burst."""
    first = dial(bench, "burst-1", rate=200, calls=100, hold=9)
    time.sleep(5.5)
    second = dial(bench, "burst-2", rate=200, calls=100, hold=2)
    first.wait()
    second.wait()
    check_carrier(bench, viewer, "c) 9 s calls, workers idle 5 s")


def test_d_a_worker_killed(bench: Bench, viewer: SyncThrottle) -> None:
    """SIGKILL to one SIP worker while calls are up. Kamailio's main process then stops every
    other process and exits; it is started again, as a supervisor would, and the dialer's
    retransmissions and hang-ups go through the new one."""
    dialer = dial(bench, "steady", rate=40, calls=400, hold=5)
    time.sleep(3)
    began = time.monotonic()
    os.kill(bench.kamailio.workers()[0], signal.SIGKILL)
    if bench.kamailio.wait_exit(10) is not None:
        bench.kamailio.proc = None
        bench.kamailio.start()
    took = time.monotonic() - began
    dialer.wait()
    check_carrier(bench, viewer, f"d) a worker killed, the proxy back {took:.2f} s later")


def test_e_the_proxy_restarted_while_calls_are_up(bench: Bench, viewer: SyncThrottle) -> None:
    """The proxy stops and starts again while calls are up. Its session has the same name
    after the restart: the calls keep their slots (the restart is shorter than the lease TTL),
    and their BYEs, relayed by the new processes, give them back."""
    dialer = dial(bench, "steady", rate=40, calls=400, hold=5)
    time.sleep(3)
    began = time.monotonic()
    bench.kamailio.stop()
    bench.kamailio.start()
    took = time.monotonic() - began
    dialer.wait()
    check_carrier(bench, viewer, f"e) proxy restarted in {took:.2f} s")


def test_f_redis_unreachable_for_a_moment(bench: Bench, viewer: SyncThrottle) -> None:
    """Redis stops for a second while the first calls hang up and new ones come in: the
    keep-alives fail (the session, alive a lease TTL past the last one that succeeded, lives
    on), the proxy refuses the calls it cannot count (fail closed), and gives back the slots of
    the BYEs it relayed meanwhile once Redis is back."""
    dialer = dial(bench, "steady", rate=40, calls=320, hold=5)
    time.sleep(5.5)
    bench.redis.stop()
    time.sleep(1)
    bench.redis.start()
    dialer.wait()
    check_carrier(bench, viewer, "f) Redis down for 1 s")
    log = bench.kamailio.log_text()
    assert "keep-alive of session" in log, "no keep-alive failed: Redis was not down long enough"
    assert "once Redis was back (released)" in log, "no BYE came while Redis was down"


def test_g_calls_cancelled_while_ringing(bench: Bench, viewer: SyncThrottle) -> None:
    """The carrier only rings and the dialer cancels each call after 1.5 s: a ringing call
    holds its slot (at most the cap ring at once), and the CANCEL (then the failure route, on
    the 487) gives it back."""
    bench.carrier.stop()
    bench.carrier.start("carrier_rings.xml")
    dialer = dial(bench, "cancels", rate=80, calls=320, hold=1.5, scenario="dialer_cancels.xml")
    dialer.wait()
    left = {number: len(viewer.holders(number)) for number in CAPS}
    time.sleep(0.5)  # for the carrier's log of the last messages to reach the disk
    calls = bench.carrier.calls().values()
    ringing = {
        number: peak((c.offered, c.ended) for c in calls if c.number == number) for number in CAPS
    }
    summary = (
        f"g) cancelled while ringing (lease TTL {LEASE_TTL:g} s): calls ringing at once at the "
        f"carrier {ringing} (caps {CAPS}); answered {sum(c.answered is not None for c in calls)}"
        f", not cancelled {sum(c.ended is None for c in calls)} of {len(calls)}; "
        f"slots left in Redis {left}"
    )
    print(summary)
    over = {number: top for number, top in ringing.items() if top > CAPS[number]}
    assert not over, f"more calls rang at once than the cap on {over}. {summary}"
    assert ringing == CAPS, f"the load did not fill every cap. {summary}"
    assert not any(left.values()), f"slots still held once the calls ended. {summary}"
    assert all(c.ended is not None and c.answered is None for c in calls), summary
