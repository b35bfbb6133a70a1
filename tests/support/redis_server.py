"""A redis-server of a test's (or the fault campaign's) own, on a port of its own.

No persistence: killed and started again, it comes back empty, as a Redis without
persistence does after a crash. Killing it disturbs nothing else on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

__all__ = ["RedisServer", "free_port"]

#: How long a started redis-server has to answer PING.
_START_SECONDS = 20.0


def free_port() -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class RedisServer:
    """A private redis-server on its own port, started and killed by pid; its log goes to
    ``log`` when given."""

    def __init__(self, log: Path | None = None) -> None:
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and return once it answers PING."""
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.log is not None:
            command += ["--logfile", str(self.log)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + _START_SECONDS
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """``kill -9``, and wait for it to be gone (nothing when it is not running)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
            self.process = None

    def close(self) -> None:
        self.kill()
