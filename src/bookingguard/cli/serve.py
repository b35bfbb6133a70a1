"""``bookingguard serve``: the HTTP service and the monitor's scheduled work, in one process."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from bookingguard.cli.state import cli_errors, console, state_of

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default api.host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port to listen on (default api.port)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes sharing the port (one per core); /metrics sums their counters.",
        ),
    ] = 1,
) -> None:
    """Serve webhooks, the API, the dashboard and /metrics; run the monitor in the background.

    Stops gracefully on SIGTERM or Ctrl-C. With no API token yet it listens on
    loopback only and prints a one-time dashboard login URL.
    """
    from uvicorn.supervisors import Multiprocess

    from bookingguard.api.access import is_loopback, plan_access
    from bookingguard.api.observability import configure_logging
    from bookingguard.api.server import LOGIN_SECRET_ENV, serving_app
    from bookingguard.cli.serving import GracefulServer, metrics_directory, uvicorn_config
    from bookingguard.settings import CONFIG_ENV

    state = state_of(ctx)
    settings = state.settings
    bind_host = host or settings.api.host
    bind_port = port or settings.api.port
    engine = state.engine
    with cli_errors():
        access = plan_access(settings, engine, host=bind_host, port=bind_port)
    configure_logging(settings.logging)
    if access.login_url is not None:
        console().print(
            f"Dashboard (one-time login): {access.login_url}", highlight=False, soft_wrap=True
        )
    else:
        shown = bind_host if is_loopback(bind_host) or ":" not in bind_host else f"[{bind_host}]"
        console().print(
            f"Dashboard: http://{shown}:{bind_port}/ (sign in with an API token)",
            highlight=False,
            soft_wrap=True,
        )
    if workers == 1:
        app = serving_app(settings, extra_tokens=access.extra_tokens, engine=engine)
        GracefulServer(uvicorn_config(app, bind_host, bind_port)).run()
        return
    # Each worker builds its app from the same settings: the configuration file and
    # the one-time login secret reach the spawned processes through the environment.
    if state.config_file is not None:
        os.environ[CONFIG_ENV] = str(state.config_file.resolve())
    os.environ.pop(LOGIN_SECRET_ENV, None)
    if access.extra_tokens:
        os.environ[LOGIN_SECRET_ENV] = access.extra_tokens[0].secret
    state.close()
    config = uvicorn_config(
        "bookingguard.api.server:worker_app", bind_host, bind_port, factory=True, workers=workers
    )
    with metrics_directory():
        Multiprocess(config, sockets=[config.bind_socket()]).run()
