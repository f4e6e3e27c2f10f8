"""Reading the Redis backend's URLs: the Sentinel and Cluster forms, which redis-py does not
parse, and the client settings every form starts from."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from .._errors import InvalidArgument

__all__ = ("default_options", "parse_cluster_url", "parse_sentinel_url")


def default_options() -> dict[str, Any]:
    """The client settings a URL's own and the caller's options go over."""
    # Every function is safe to run twice for the same token, so a dropped connection is retried.
    return {
        "socket_timeout": 5.0,
        "socket_connect_timeout": 5.0,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries=2),
    }


def _hosts(url: str, netloc: str, form: str) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument("url", url, form)
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``: the
    sentinels' addresses, the service, and the master's settings the URL gives (username,
    password, db).

    :raises InvalidArgument: naming ``url``
    """
    parts = urlsplit(url)
    hosts = _hosts(url, parts.netloc, "redis+sentinel://host:port[,host:port...]/service")
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise InvalidArgument("url", url, "redis+sentinel://host:port[,...]/service[/db]")
    settings: dict[str, Any] = {}
    if parts.password is not None:
        settings["password"] = unquote(parts.password)
    if parts.username:
        settings["username"] = unquote(parts.username)
    if len(path) == 2:
        settings["db"] = int(path[1])
    return hosts, path[0], settings


def parse_cluster_url(
    url: str, options: dict[str, Any]
) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """``redis+cluster://[[user]:password@]host:port[,host:port...][?option=value...]``
    (``rediss+cluster://`` for TLS): the nodes where the slot map is first read, and the
    settings of ``redis.asyncio.RedisCluster`` (the defaults, the URL's, then ``options``).

    :raises InvalidArgument: naming ``url``
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    hosts = _hosts(url, parts.netloc, "redis+cluster://host:port[,host:port...]")
    if parts.path.strip("/") not in ("", "0"):
        raise InvalidArgument("url", url, "no database: a Redis Cluster has only database 0")
    # The URL's settings (credentials, query options) as redis-py reads them for one node.
    first = "{}://{}@{}:{}/{}".format(
        "rediss" if scheme.startswith("rediss") else "redis",
        parts.netloc.rpartition("@")[0],
        *hosts[0],
        f"?{parts.query}" if parts.query else "",
    )
    settings = {**default_options(), **parse_url(first), **options}
    for key in ("host", "port", "db", "connection_class", "path"):
        settings.pop(key, None)
    if scheme.startswith("rediss"):
        settings["ssl"] = True
    return hosts, settings
