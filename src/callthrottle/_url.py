"""URL scheme -> backend factory."""

from __future__ import annotations

from typing import Any

from ._errors import InvalidArgument, UnknownScheme
from .backends import Backend, MemoryBackend, RedisBackend

__all__ = ("SCHEMES", "backend_from_url")


def _memory(url: str, options: dict[str, Any]) -> Backend:
    if options:
        raise InvalidArgument(
            "options", sorted(options), "empty for memory:// (they are Redis client options)"
        )
    return MemoryBackend()


def _redis(url: str, options: dict[str, Any]) -> Backend:
    return RedisBackend.from_url(url, **options)


def _sentinel(url: str, options: dict[str, Any]) -> Backend:
    return RedisBackend.from_sentinel_url(url, **options)


def _cluster(url: str, options: dict[str, Any]) -> Backend:
    return RedisBackend.from_cluster_url(url, **options)


#: Supported schemes and the factory that builds their backend.
SCHEMES = {
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "redis+sentinel": _sentinel,
    "redis+cluster": _cluster,
    "rediss+cluster": _cluster,
}


def backend_from_url(url: str, options: dict[str, Any]) -> Backend:
    """Build the backend a URL names: ``memory://``, ``redis://``, ``rediss://``, ``unix://``,
    ``redis+sentinel://``, ``redis+cluster://``, ``rediss+cluster://``."""
    if not isinstance(url, str):
        raise InvalidArgument("url", url, "a str such as 'memory://' or 'redis://host:6379/0'")
    scheme, sep, _ = url.partition("://")
    factory = SCHEMES.get(scheme.lower()) if sep else None
    if factory is None:
        raise UnknownScheme(url, tuple(SCHEMES))
    try:
        return factory(url, options)
    except InvalidArgument:
        raise
    except (ValueError, TypeError) as exc:  # the driver's own parsing of the URL or options
        argument = "options" if isinstance(exc, TypeError) and options else "url"
        raise InvalidArgument(
            argument, url if argument == "url" else options, f"valid for {scheme}:// ({exc})"
        ) from exc
