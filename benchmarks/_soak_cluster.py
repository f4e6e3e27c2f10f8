"""Failovers on a Redis Cluster for ``benchmarks/soak.py --cluster``; not run by hand.

A failover here is what a crashed master causes: the master's process is SIGKILLed (it writes
nothing more, its replica may lack its newest writes), its replica is elected in its place, and
the killed node is started again from its ``nodes-<port>.conf``: it learns that its slots went
to a newer epoch and rejoins as a replica of the node that replaced it, copying its data. The
next failover waits until every master has a replica that has caught up (else no replica could
take over, or the one that does would miss everything).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.crc import key_slot

import redis

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests._servers import Server

# A replica starts its first copy of a master's data at once (by default a master waits 5 s for
# more replicas to ask, which would leave the cluster with a master without a replica as long).
FAST_SYNC = ("repl-diskless-sync-delay", "0")


@dataclass(frozen=True)
class Failover:
    """A master killed at ``down``, its replica seen serving its slots at ``back``; it served
    the keys of ``numbers``. Meanwhile, for ``refused`` seconds (as polled), the cluster as a
    whole refused every call (CLUSTERDOWN: with its default cluster-require-full-coverage, a
    cluster with a slot unserved serves none)."""

    down: float
    back: float
    numbers: frozenset[str]
    refused: float


@dataclass(frozen=True)
class Node:
    port: int
    node_id: str
    flags: frozenset[str]
    master_id: str
    slots: tuple[tuple[int, int], ...]

    @property
    def master(self) -> bool:
        return "master" in self.flags and not self.flags & {"fail", "fail?"}

    def serves(self, slot: int) -> bool:
        return any(first <= slot <= last for first, last in self.slots)


def _client(server: Server) -> redis.Redis:
    return redis.Redis(port=server.port, socket_timeout=2, decode_responses=True)


def nodes(server: Server) -> dict[int, Node]:
    """The cluster as ``server`` sees it, by port (CLUSTER NODES)."""
    with _client(server) as client:
        # As text: redis-py's parsed form has no type, and differs between its versions.
        text = str(client.execute_command("CLUSTER", "NODES"))
    found: dict[int, Node] = {}
    for line in text.splitlines():
        fields = line.split()
        address, flags = fields[1], frozenset(fields[2].split(","))
        slots = tuple(
            (int(first), int(last or first))
            for first, _, last in (span.partition("-") for span in fields[8:] if "[" not in span)
        )
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        found[port] = Node(port, fields[0], flags - {"myself"}, fields[3], slots)
    return found


def _state(server: Server) -> str:
    with _client(server) as client:
        return str(client.cluster("INFO").get("cluster_state"))


def _replication(server: Server) -> dict[str, object]:
    with _client(server) as client:
        return dict(client.info("replication"))


def _until(what: str, check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass  # a node still starting, or one just killed: asked again
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster did not get there in {within:.0f} s: {what}")
        time.sleep(0.05)


class Failovers:
    """Kills masters of ``servers`` (a running cluster) one at a time, as above."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = {server.port: server for server in servers}
        self.killed: Server | None = None
        for server in servers:
            with _client(server) as client:
                client.config_set(*FAST_SYNC)

    def live(self) -> list[Server]:
        return [server for server in self.servers.values() if server.proc is not None]

    def masters_of(self, numbers: list[str]) -> dict[str, int]:
        """The port of the master serving each number's keys (their hash tag is the number)."""
        view = nodes(self.live()[0])
        masters = [node for node in view.values() if node.master]
        return {
            number: next(m.port for m in masters if m.serves(key_slot(number.encode())))
            for number in numbers
        }

    def healthy(self) -> bool:
        """Every live node sees every slot served, and every master has a replica linked to it
        that has finished copying its data."""
        live = self.live()
        if any(_state(server) != "ok" for server in live):
            return False
        view = nodes(live[0])
        for master in (node for node in view.values() if node.master):
            replicas = [
                node
                for node in view.values()
                if node.master_id == master.node_id and "fail" not in node.flags
            ]
            if not any(self._caught_up(self.servers[node.port]) for node in replicas):
                return False
        return True

    def _caught_up(self, replica: Server) -> bool:
        if replica.proc is None:
            return False
        info = _replication(replica)
        return (
            info.get("role") == "slave"
            and info.get("master_link_status") == "up"
            and info.get("master_sync_in_progress") == 0
        )

    def fail_master(self, numbers: list[str], within: float = 30.0) -> Failover:
        """Kill one master (one that serves some of ``numbers``) and wait until its replica
        serves its slots (every live node's cluster_state ok again)."""
        _until("every master with a replica in sync", self.healthy, within)
        served = self.masters_of(numbers)
        victim = self.servers[random.choice(sorted(set(served.values())))]
        slots = nodes(victim)[victim.port].slots
        assert victim.proc is not None
        down = time.monotonic()
        victim.proc.kill()
        victim.proc.wait()
        victim.proc = None
        self.killed = victim

        refused: list[float] = []  # when a live node was seen refusing: first, last

        def replaced() -> bool:
            live = self.live()
            if any(_state(server) != "ok" for server in live):
                refused[1:] = [time.monotonic()]
                return False
            for server in live:
                owner = [node for node in nodes(server).values() if node.slots == slots]
                if not owner or owner[0].port == victim.port or not owner[0].master:
                    return False
            return True

        _until(f"a replica serving the slots of {victim.port}", replaced, within)
        return Failover(
            down,
            time.monotonic(),
            frozenset(n for n, port in served.items() if port == victim.port),
            refused[-1] - refused[0] if refused else 0.0,
        )

    def restart_killed(self, within: float = 30.0) -> None:
        """Start the node killed last again; wait until it is a replica that caught up."""
        victim, self.killed = self.killed, None
        assert victim is not None
        victim.start()
        with _client(victim) as client:
            client.config_set(*FAST_SYNC)
        _until(f"{victim.port} a replica in sync again", lambda: self._caught_up(victim), within)
