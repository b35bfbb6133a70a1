"""``NodeLocalScript``: a Lua script that a Redis Cluster node missing it learns by itself.

redis-py's ``Script`` answers NOSCRIPT with ``SCRIPT LOAD``, which a cluster client
sends to every primary: while any node is down that fails, so a process that
started (or a node that restarted) during the outage could run no script at all,
even on the nodes that answer. This one sends the script with ``EVAL`` instead,
to the one node that owns its keys, which runs it and keeps it for the next
``EVALSHA``. On one server the two are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redis import Redis, RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT

__all__ = ["NodeLocalScript", "node_local"]


class NodeLocalScript(Script):
    """A ``Script`` whose NOSCRIPT is answered by ``EVAL`` on the keys' node, not a load on all."""

    def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: Redis | RedisCluster | None = None,
    ) -> object:
        keys = list(keys or [])
        parts = (*keys, *(args or []))
        runner = client if client is not None else self.registered_client
        try:
            return runner.evalsha(self.sha, len(keys), *parts)
        except NoScriptError:
            return runner.eval(self.script, len(keys), *parts)  # type: ignore[arg-type]


def node_local(script: Script) -> NodeLocalScript:
    """``script`` (registered on its client) as a ``NodeLocalScript``."""
    return NodeLocalScript(script.registered_client, script.script)
