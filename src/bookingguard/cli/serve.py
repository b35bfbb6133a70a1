"""``bookingguard serve``: the HTTP service and the monitor's scheduled work, in one process."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
import uvicorn

from bookingguard.api.access import is_loopback, plan_access
from bookingguard.api.observability import configure_logging
from bookingguard.api.server import build_server_app
from bookingguard.cli.state import cli_errors, console, state_of

__all__ = ["serve"]


class _Server(uvicorn.Server):
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


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default api.host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port to listen on (default api.port)."),
    ] = None,
) -> None:
    """Serve webhooks, the API, the dashboard and /metrics; run the monitor in the background.

    Stops gracefully on SIGTERM or Ctrl-C. With no API token yet it listens on
    loopback only and prints a one-time dashboard login URL.
    """
    state = state_of(ctx)
    settings = state.settings
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    engine = state.engine
    with cli_errors():
        access = plan_access(settings, engine, host=bind_host, port=bind_port)
    configure_logging()
    app = build_server_app(
        settings, extra_tokens=access.extra_tokens, background=True, engine=engine
    )
    if access.login_url is not None:
        console.print(
            f"Dashboard (one-time login): {access.login_url}", highlight=False, soft_wrap=True
        )
    else:
        shown = bind_host if is_loopback(bind_host) or ":" not in bind_host else f"[{bind_host}]"
        console.print(
            f"Dashboard: http://{shown}:{bind_port}/ (sign in with an API token)",
            highlight=False,
            soft_wrap=True,
        )
    server = _Server(
        uvicorn.Config(
            app,
            host=bind_host,
            port=bind_port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
