"""The campaign's own servers: PostgreSQL, Redis and ``bookingguard serve`` replicas.

Each runs from a temporary directory on a port of its own, so killing and restarting
it disturbs nothing else on the machine. PostgreSQL is a fresh ``initdb`` cluster
(trust auth, fsync on) run as the ``postgres`` user when the campaign runs as root,
as PostgreSQL refuses root. A replica is ``bookingguard serve --workers 2`` in a
process group of its own, so ``kill -9`` of the group takes the master and its
workers at once, as a crashed host would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.support.redis_server import RedisServer, free_port

__all__ = ["Postgres", "RedisServer", "Replica", "free_port", "wait_until"]


def wait_until(what: str, ready: Callable[[], bool], *, seconds: float) -> None:
    """Poll ``ready()`` until it is true; ``RuntimeError`` naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {seconds} s")
        time.sleep(0.05)


def _pg_binary(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin")
    return found[-1]


class Postgres:
    """A PostgreSQL cluster of the campaign's own: ``initdb``, then ``pg_ctl`` start/stop."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.log = root / "postgres.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        # The postgres user must reach its directories through the campaign's.
        root.parent.chmod(0o755)
        for directory in (root, self.data, self.sockets):
            directory.mkdir(mode=0o700)
            if self._user is not None:
                entry = pwd.getpwnam(self._user)
                os.chown(directory, entry.pw_uid, entry.pw_gid)

    def url(self, database: str = "bookingguard") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            list(args),
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def init(self) -> None:
        """``initdb`` (trust auth, fsync on), start, and create the ``bookingguard`` database."""
        self._run(
            _pg_binary("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
        )
        self.start()
        with self.connect("postgres") as connection:
            connection.execute("CREATE DATABASE bookingguard")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c max_connections=200"
        )
        self._run(
            _pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """A fast stop: clients are disconnected, transactions rolled back, data flushed."""
        self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def connect(self, database: str = "bookingguard") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def terminate_clients(self) -> int:
        """``pg_terminate_backend`` of every client connection but this one; how many."""
        with self.connect("postgres") as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        return len(rows)

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


class Replica:
    """``bookingguard serve --workers 2`` on its own port, in its own process group."""

    def __init__(self, name: str, root: Path, env: dict[str, str], *, workers: int = 2) -> None:
        self.name = name
        self.port = free_port()
        self.workers = workers
        self.metrics_dir = root / f"metrics-{name}"
        self.metrics_dir.mkdir()
        self.log = root / f"{name}.log"
        self._env = env | {"PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it; returns at once (``wait_ready`` waits for ``/readyz``)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bookingguard",
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                stdout=log,
                stderr=log,
                env=self._env,
                start_new_session=True,
            )

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, seconds: float = 120) -> None:
        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited: see {self.log}")
            return self.ready()

        wait_until(f"replica {self.name}", up, seconds=seconds)

    def kill(self) -> None:
        """``kill -9`` of the master's process group (master and workers), then reap it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
            self.process = None

    def stop(self) -> None:
        """A graceful stop (SIGTERM), ``kill -9`` if it does not go within 20 s."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
