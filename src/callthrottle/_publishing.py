"""Publishing the carrier policy to a backend, for every process: the document, then the
pools it lists (their numbers and what a pick needs to know of each), then, on a Cluster, every
slot's stamp (the backend's part). See ``_policy_source`` for how throttles take it."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import InvalidArgument, PolicyConflict
from ._plans import Plans
from ._policy_doc import PolicyDocument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._config import Config
    from .backends import Backend
    from .backends._policy import Published

__all__ = ("PublishedPolicy", "finish", "publish", "publisher", "read_published", "write")

_MAX_COMMENT = 500


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    """One version of the carrier policy published to a backend.

    :ivar version: 1 for the first one published, then one more each time
    :ivar digest: the SHA-256 of its canonical text (hex): equal digests, equal policies
    :ivar config: the configuration
    :ivar default_limit: the cap of a number the configuration gives none
    :ivar published_at: when (seconds since the epoch, by the backend's clock)
    :ivar by: who published it (``user@host``)
    :ivar comment: why, as they said
    :ivar stamp: what the requests decided with it carry (see ``policy_stale``)
    """

    version: int
    digest: str
    config: Config
    default_limit: int
    published_at: float
    by: str
    comment: str
    stamp: int

    @property
    def document(self) -> PolicyDocument:
        return PolicyDocument.of(self.config, self.default_limit)


def read_published(published: Published) -> PublishedPolicy:
    document = PolicyDocument.parse(published.document)
    return PublishedPolicy(
        published.version,
        published.digest,
        document.config,
        document.default_limit,
        published.published_at,
        published.by,
        published.comment,
        published.stamp,
    )


def publisher() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def check_comment(comment: object) -> str:
    if (
        not isinstance(comment, str)
        or len(comment) > _MAX_COMMENT
        or any(c in comment for c in "\t\r\n")
    ):
        raise InvalidArgument(
            "comment", comment, f"one line of at most {_MAX_COMMENT} characters, without tabs"
        )
    return comment


async def publish(
    backend: Backend,
    document: PolicyDocument,
    *,
    expected: int,
    previous: PolicyDocument | None,
    comment: str = "",
    by: str | None = None,
) -> PublishedPolicy:
    """Publish ``document`` as the next version, if version ``expected`` is still in force
    (``previous``: its document, None if none): :func:`write` it, then :func:`finish`.

    The backend must use ``document``'s layout (:meth:`Backend.use_layout`).

    :raises PolicyConflict: if another version was published meanwhile (nothing is written)
    """
    published = await write(backend, document, expected=expected, comment=comment, by=by)
    return await finish(backend, published, previous)


async def write(
    backend: Backend,
    document: PolicyDocument,
    *,
    expected: int,
    comment: str = "",
    by: str | None = None,
    floor: int = 0,
) -> PublishedPolicy:
    """Write ``document`` as the version in force, on top of version ``expected``. Bad input
    (a comment, a pool where it cannot be) is refused before anything is written. It binds
    the processes once :func:`finish` has run.

    :raises PolicyConflict: if another version was published meanwhile (nothing is written)
    """
    comment = check_comment(comment)
    for name, numbers in document.config.pool_numbers().items():
        backend.check_pool_members(name, numbers)  # before anything is written
    result = await backend.publish_policy(
        document.text,
        document.digest,
        expected=expected,
        by=publisher() if by is None else by,
        comment=comment,
        floor=floor,
    )
    if isinstance(result, int):
        raise PolicyConflict(expected, result)
    return read_published(result)


async def finish(
    backend: Backend, published: PublishedPolicy, previous: PolicyDocument | None
) -> PublishedPolicy:
    """What follows the document, safe to run again (an ``apply`` cut off half-way, run
    again, finishes here): its pools (each pool it lists gets its numbers, with their caps,
    windows and paid periods as it says, and loses the numbers it no longer lists; a pool it
    no longer lists, the numbers ``previous`` listed there; a pool made at run time keeps its
    numbers, told what the document says of them), then every slot's stamp. If a slot's stamp
    is above the policy's (processes still decide with a policy the backend lost), the
    document is written again, stamped above it, and finished.

    :raises PolicyConflict: if a newer version was published meanwhile
    """
    document = published.document
    stamp = published.stamp
    plans = Plans(document.config, document.default_limit)
    before = {} if previous is None else dict(previous.config.pool_numbers())
    for name, numbers in document.config.pool_numbers().items():
        held = set(before.pop(name, ())) | set(await backend.pool_members(name))
        gone = sorted(held - set(numbers))
        await _pool(backend, name, plans, numbers, gone, published)
    for name, numbers in before.items():  # pools the document no longer lists
        await _pool(backend, name, plans, (), list(numbers), published)
    listed = set(document.config.pools) | (
        set() if previous is None else set(previous.config.pools)
    )
    for name, members in (await backend.known_pools()).items():
        if name not in listed:  # made at run time (add_to_pool): a renewal reaches it too
            await _pool(backend, name, plans, members, (), published)
    highest = await backend.raise_stamps(stamp)
    if highest > stamp:
        again = await write(
            backend,
            document,
            expected=published.version,
            comment=published.comment,
            by=published.by,
            floor=highest + 1,
        )
        return await finish(backend, again, previous)
    return published


async def _pool(
    backend: Backend,
    name: str,
    plans: Plans,
    numbers: Sequence[str],
    gone: Sequence[str],
    published: PublishedPolicy,
) -> None:
    if await backend.pool_update(name, plans.specs(numbers), gone, published.stamp) < 0:
        current = await backend.published_policy()
        raise PolicyConflict(published.version, 0 if current is None else current.version)
