"""``bookingguard token``: create (shown once) and revoke API tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from bookingguard.cli.state import console, fail, print_json, state_of

__all__ = ["app"]

app = typer.Typer(
    help="API tokens (scopes: read, operate).", no_args_is_help=True, rich_markup_mode=None
)


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Option("--name", metavar="NAME", help="Unique name; the audit log's actor.")
    ],
    scope: Annotated[
        str, typer.Option("--scope", metavar="SCOPE", help="read or operate.")
    ] = "read",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Create a token and print it once: only its hash is stored."""
    from bookingguard.db.uow import UnitOfWork, session_factory
    from bookingguard.tokens import TokenError, create_token

    state = state_of(ctx)
    try:
        with UnitOfWork(session_factory(state.engine)) as uow:
            secret = create_token(uow.session, name=name, scope=scope, now=datetime.now(UTC))
            uow.commit()
    except TokenError as exc:
        fail(exc.message, 2)
    if as_json:
        print_json({"name": name, "scope": scope, "token": secret})
        return
    console().print(
        f"token {name!r} ({scope}) created. It is shown only this once:", highlight=False
    )
    console().print(secret, highlight=False, soft_wrap=True)


@app.command()
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name.")],
) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    from bookingguard.db.uow import UnitOfWork, session_factory
    from bookingguard.tokens import TokenError, revoke_token

    state = state_of(ctx)
    try:
        with UnitOfWork(session_factory(state.engine)) as uow:
            token = revoke_token(uow.session, name=name, now=datetime.now(UTC))
            revoked_at = token.revoked_at
            uow.commit()
    except TokenError as exc:
        fail(exc.message, 1)
    console().print(
        f"token {name!r} revoked at {revoked_at:%Y-%m-%d %H:%M:%S} UTC", highlight=False
    )
