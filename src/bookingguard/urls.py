"""Connection URLs: ``mask_url`` makes one safe for logs; ``parse_cluster_url`` reads a
Redis Cluster URL.

A Redis Cluster is named by the scheme the ``limits`` library uses for one,
``redis+cluster://[user[:password]@]host:port[,host:port…]``: any of the listed
nodes serves to discover the rest, so one URL configures redis-py's cluster clients
and the rate limiter alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["CLUSTER_SCHEME", "ClusterUrl", "mask_url", "parse_cluster_url"]

#: The scheme of a Redis Cluster URL (``limits``' own for a cluster storage).
CLUSTER_SCHEME = "redis+cluster"
_DEFAULT_PORT = 6379


def mask_url(url: str) -> str:
    """Hide the password of a URL; leave anything unparsable as ``<unparsable url>``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable url>"


@dataclass(frozen=True)
class ClusterUrl:
    """The startup nodes of a Redis Cluster and the credentials every node takes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def parse_cluster_url(url: str) -> ClusterUrl | None:
    """The nodes and credentials of a ``redis+cluster://`` URL; None for any other URL.

    A node without a port is on 6379; an IPv6 address goes in brackets. A path or a
    query (a database number, options) is refused: a cluster has database 0 only, and
    the timeouts come from the settings. Raises ``ValueError`` saying what is wrong.
    """
    head, separator, rest = url.partition("://")
    if not separator or head != CLUSTER_SCHEME:
        return None
    userinfo, at, hosts = rest.rpartition("@")
    if any(mark in hosts for mark in "/?#"):
        raise ValueError("a redis+cluster URL takes no path or query, only host:port,host:port")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(part) for part in hosts.split(","))
    return ClusterUrl(nodes=nodes, username=username, password=password)


def _node(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"malformed cluster node {text!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"a cluster node needs a host: {text!r}")
    if not port_text:
        return host, _DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"a cluster node's port must be 1-65535: {text!r}")
    return host, int(port_text)
