"""The words of a campaign's summary, one table for the command line and the HTML report, so
both say the same thing the same way."""

from __future__ import annotations

__all__ = (
    "CAUSES", "COLUMNS", "REFUSED", "STATES", "TIMED_OUT", "cause_of", "cause_words",
    "failure_kind", "state_words",
)  # fmt: skip

#: An attempt that waited the whole timeout for a slot, then gave up.
TIMED_OUT = "timed out"
#: An attempt turned away at once: the number's state admitted no call.
REFUSED = "refused"

#: Why an attempt failed, by cause. A number's state (``cooling``, ``disabled``, ...) is a
#: cause too, worded by :data:`STATES`.
CAUSES = {
    "cap": "at its cap",
    "lowered_cap": "at its lowered cap",
    "window": "rate window full",
    "trunk": "trunk at its cap",
    "tenant": "tenant at its cap",
    "pool": "no number of the pool free",
    "fence": "backend fenced (it may have lost calls up)",
}

#: A number's states, as sampled over the campaign (``lowered``: active, its cap lowered for a
#: while after a carrier's answer).
STATES = {
    "active": "active",
    "lowered": "cap lowered",
    "warming": "warming up",
    "cooling": "cooling down",
    "flagged": "flagged",
    "disabled": "disabled",
    "expired": "expired",
    "released": "released",
}

#: The per-number table's columns, in the summary and in the report.
COLUMNS = (
    "number", "cap", "attempts", "placed", TIMED_OUT, REFUSED, "why", "states", "max up",
    "<= cap", "wait p50", "wait p99",
)  # fmt: skip


def state_words(state: str) -> str:
    return STATES.get(state, state)


def cause_words(cause: str) -> str:
    """``"cap"`` -> ``"at its cap"``, ``"cooling"`` -> ``"cooling down"``."""
    return CAUSES.get(cause) or state_words(cause)


def failure_kind(cause: str) -> str:
    """:data:`TIMED_OUT` or :data:`REFUSED`."""
    return TIMED_OUT if cause in CAUSES else REFUSED


def cause_of(refused_by: str | None, state: str | None) -> str:
    """The cause of a failed attempt: from an ``AcquireTimeout``'s ``refused_by`` (``"cap"``,
    ``"rate window ..."``, ``"trunk:x"``, ``"pool"``, ``"fence"``), or from the state of a
    ``NumberUnavailable``."""
    if state is not None:
        return state
    by = refused_by or "cap"
    if by.startswith("rate window"):
        return "window"
    kind = by.partition(":")[0]
    return kind if kind in CAUSES else "cap"
