"""``bookingguard serve`` as a real subprocess on SQLite: login URL, health, metrics, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bookingguard.api.server import METRICS_DIR_ENV
from tests.support.cli import run_cli


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_for(predicate_url: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "serve exited early"
        try:
            if httpx.get(predicate_url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{predicate_url} did not answer 200 in {seconds} s")


def spawned_workers(parent: int) -> list[int]:
    """The worker processes ``parent`` spawned (multiprocessing children, from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def metric_file_owners(directory: Path, expected: int, seconds: float = 30) -> set[str]:
    """The pids with metric files in ``directory``, once ``expected`` have one (or time is up)."""
    deadline = time.monotonic() + seconds
    while True:
        owners = {path.stem.rsplit("_", 1)[1] for path in directory.glob("*.db")}
        if len(owners) >= expected or time.monotonic() > deadline:
            return owners
        time.sleep(0.1)


def environment_of(pid: int) -> dict[str, str]:
    """The environment process ``pid`` started with."""
    entries = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_runs_until_sigterm_and_prints_a_working_login_url(
    tmp_path: Path, workers: int
) -> None:
    """serve answers readyz/healthz/metrics, the printed URL signs in, SIGTERM exits 0.

    With two workers every process knows the session the printed secret made, once.
    """
    env = {
        "BOOKINGGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "BOOKINGGUARD_MONITORING__INTERVAL_SECONDS": "3600",
    }
    assert run_cli("db", "upgrade", env=env).returncode == 0
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
    environment.update(env)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bookingguard",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=stdout,
            stderr=stderr,
            env=environment,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/readyz", process, 60)
            assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
            assert (
                "# TYPE bookingguard_review_queue_size gauge" in httpx.get(f"{base}/metrics").text
            )
            found = re.search(r"http://127\.0\.0\.1:\d+/login\?token=\S+", out.read_text())
            assert found is not None, out.read_text()
            worker_pids = spawned_workers(process.pid)
            assert len(worker_pids) == (workers if workers > 1 else 0)
            # Several workers keep their metrics in files of a shared directory, which
            # /metrics reads (prometheus_client's multiprocess mode); serve removes it.
            directories = {environment_of(pid).get(METRICS_DIR_ENV) for pid in worker_pids}
            if workers > 1:
                (metrics_dir,) = directories
                assert metrics_dir is not None
                # /readyz answered from one worker; the other may still be building its app.
                assert metric_file_owners(Path(metrics_dir), len(worker_pids)) == {
                    str(pid) for pid in worker_pids
                }
            with httpx.Client(follow_redirects=True) as browser:
                dashboard = browser.get(found.group(0))
                assert dashboard.status_code == 200
                assert "signed in as dashboard-login" in dashboard.text
                cookies = browser.cookies
            # New connections each time, so with two workers both may answer: the
            # session is known to both, and the link, spent, signs nobody else in.
            for _ in range(2 * workers):
                with httpx.Client(cookies=cookies) as browser:
                    assert "signed in as dashboard-login" in browser.get(f"{base}/").text
                    assert browser.get(found.group(0)).status_code == 401
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
    assert code == 0
    assert all(directory is None or not Path(directory).exists() for directory in directories)
    lines = [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert {line["path"] for line in requests} >= {"/readyz", "/healthz", "/metrics", "/login"}
    assert all(line["request_id"] for line in requests)
    assert "token=" not in err.read_text()


def test_public_bind_without_any_token_exits_2_naming_api_host(tmp_path: Path) -> None:
    """serve --host 0.0.0.0 with no token refuses to start (exit 2) and names api.host."""
    env = {"BOOKINGGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'public.db'}"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    refused = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env)  # noqa: S104
    assert refused.returncode == 2
    assert "api.host" in refused.stderr
