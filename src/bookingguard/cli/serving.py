"""What ``bookingguard serve`` runs: uvicorn with a graceful stop, and the workers' metric files.

Imported by the ``serve`` command when it runs, so that the rest of the CLI does not
load uvicorn.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from bookingguard.api.server import METRICS_DIR_ENV

__all__ = ["GracefulServer", "metrics_directory", "uvicorn_config"]


class GracefulServer(uvicorn.Server):
    """uvicorn's server, but a SIGTERM or Ctrl-C that shut it down cleanly exits 0.

    uvicorn re-raises the captured signal after shutting down, so the process
    would die of it (exit -15); a graceful stop is a success for ``serve``.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            signum: signal.signal(signum, self.handle_exit)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def uvicorn_config(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        lifespan="on",
        timeout_graceful_shutdown=10,
        **extra,
    )


@contextmanager
def metrics_directory() -> Iterator[None]:
    """A fresh directory for the workers' metric files (unless one is configured), removed after."""
    if os.environ.get(METRICS_DIR_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="bookingguard-metrics-")
    os.environ[METRICS_DIR_ENV] = directory
    try:
        yield
    finally:
        del os.environ[METRICS_DIR_ENV]
        shutil.rmtree(directory, ignore_errors=True)
