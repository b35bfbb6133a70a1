"""A three-node Redis Cluster of local ``redis-server`` processes, on ports of its own.

Each node runs with ``--cluster-enabled yes`` in its own directory of a temporary
one; ``redis-cli --cluster create`` joins them (no replicas) and the cluster is
ready once every node reports ``cluster_state:ok``. Every wait polls a condition
under a deadline (a node answering PING, the cluster's state), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis
from redis.crc import key_slot

#: How long a node may take to start, and the cluster to agree it is ready.
READY_WITHIN_SECONDS = 30.0
#: A node is judged failed after this long without answers. Long, so that a killed
#: node's slots stay assigned (the others still serve theirs) until a test shortens it.
NODE_TIMEOUT_MS = 60_000
_POLL_SECONDS = 0.02


def cluster_tools_missing() -> str | None:
    """Why a local cluster cannot be started here, or None."""
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    return None


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_node_ports(count: int) -> list[int]:
    """``count`` loopback ports that are free, each with its cluster bus port (+10000) free."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port + 10_000 < 65_536 and port not in ports and _bindable(port + 10_000):
            ports.append(port)
    return ports


def wait_until(condition: Callable[[], bool], *, what: str, within: float) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(_POLL_SECONDS)


@dataclass
class LocalRedisCluster:
    """Three cluster nodes on ``ports``; ``url`` names them as bookingguard's settings do."""

    directory: Path
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (the caller closes it)."""
        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def _cluster(self, port: int, *command: str) -> object:
        """The reply of ``CLUSTER <command>`` from the node on ``port``."""
        client = self.node(port)
        try:
            reply: object = client.cluster(*command)
        finally:
            client.close()
        return reply

    def state(self, port: int) -> str:
        """The node's ``cluster_state`` (``ok`` or ``fail``)."""
        info = self._cluster(port, "INFO")
        assert isinstance(info, dict)
        return str(info["cluster_state"])

    def owner_of(self, key: str) -> int:
        """The port of the node that owns ``key``'s hash slot."""
        return self.owner_of_slot(key_slot(key.encode()))

    def owner_of_slot(self, slot: int) -> int:
        """The port of the node that owns hash slot ``slot``."""
        reply = self._cluster(self.ports[0], "SLOTS")
        assert isinstance(reply, list)
        for start, end, primary, *_ in reply:
            if start <= slot <= end:
                return int(primary[1])
        raise AssertionError(f"no node owns slot {slot}")

    def _spawn(self, port: int) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        log = open(node_dir / "redis.log", "ab")  # noqa: SIM115 - the node writes it
        self.processes[port] = subprocess.Popen(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--dir", str(node_dir),
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

    def start(self) -> None:
        for port in self.ports:
            self._spawn(port)
        for port in self.ports:
            wait_until(partial(self._answers, port), what=f"node {port} up", within=10)
        subprocess.run(
            ["redis-cli", "--cluster", "create"]
            + [f"127.0.0.1:{port}" for port in self.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=READY_WITHIN_SECONDS,
        )
        wait_until(
            lambda: all(self.state(port) == "ok" for port in self.ports),
            what="cluster_state:ok on every node",
            within=READY_WITHIN_SECONDS,
        )

    def _answers(self, port: int) -> bool:
        client = self.node(port)
        try:
            return client.ping()
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crashed host would go."""
        process = self.processes.pop(port)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Start a killed node again (empty: no persistence) and wait until it is back in the
        cluster, every node saying ``cluster_state:ok``."""
        self._spawn(port)
        wait_until(partial(self._answers, port), what=f"node {port} up", within=10)
        wait_until(
            lambda: all(self.state(node) == "ok" for node in self.ports),
            what="cluster_state:ok on every node",
            within=READY_WITHIN_SECONDS,
        )

    def judge_failed_soon(self, dead: int) -> None:
        """Let the surviving nodes notice ``dead`` is gone and wait until they say ``fail``."""
        survivors = [port for port in self.ports if port != dead]
        for port in survivors:
            client = self.node(port)
            client.config_set("cluster-node-timeout", 200)
            client.close()
        wait_until(
            lambda: all(self.state(port) == "fail" for port in survivors),
            what="cluster_state:fail on the surviving nodes",
            within=READY_WITHIN_SECONDS,
        )

    def unassign(self, key: str) -> None:
        """Take ``key``'s slot from its owner, which then answers CLUSTERDOWN to every command
        (it requires every slot served), and wait until it says ``cluster_state:fail``."""
        owner = self.owner_of(key)
        client = self.node(owner)
        client.cluster("DELSLOTS", str(key_slot(key.encode())))
        client.close()
        wait_until(
            lambda: self.state(owner) == "fail",
            what=f"cluster_state:fail on {owner}",
            within=READY_WITHIN_SECONDS,
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


@contextlib.contextmanager
def local_redis_cluster(directory: Path) -> Iterator[LocalRedisCluster]:
    """Start a three-node cluster in ``directory``; stop it on exit."""
    cluster = LocalRedisCluster(directory, free_node_ports(3))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
