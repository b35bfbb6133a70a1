"""A local HTTP server standing in for a Slack incoming webhook, capturing what arrives."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["SlackStandIn", "slack_standin"]


class SlackStandIn:
    """Answers ``ok`` (or a programmed failure) and keeps every JSON body it accepted."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures: list[int] = []
        self.delay_seconds = 0.0
        self.requests = 0
        self.crash: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(standin.delay_seconds)
                with standin._lock:
                    standin.requests += 1
                    crash = standin.crash
                if crash is not None and standin.requests == crash[0]:
                    # The sender dies while this request is in flight: nothing is accepted.
                    os.kill(crash[1], crash[2])
                    self.close_connection = True
                    return
                with standin._lock:
                    status = standin.failures.pop(0) if standin.failures else 200
                    if status == 200:
                        standin.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"invalid_payload")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/services/T000/B000/XXXX"

    def fail_next(self, count: int, status: int = 500) -> None:
        with self._lock:
            self.failures.extend([status] * count)

    def crash_on(self, request_number: int, *, pid: int, sig: int) -> None:
        """Kill process ``pid`` when request ``request_number`` arrives, and drop that request."""
        self.crash = (request_number, pid, sig)

    def texts(self) -> list[str]:
        return [str(body.get("text")) for body in self.received]


@pytest.fixture
def slack_standin() -> Iterator[SlackStandIn]:
    """A Slack webhook stand-in on 127.0.0.1 and a free port."""
    standin = SlackStandIn()
    standin.thread.start()
    yield standin
    standin.server.shutdown()
    standin.server.server_close()
