"""How ``serve`` opens the door: a one-time dashboard login, or a refusal to listen publicly.

On the embedded default nobody has created a token yet. ``plan_access`` then
makes a random login token that lives only as long as the process (as Jupyter
does) and the URL to print; ``serve`` passes ``extra_tokens`` to
``install_operator_surface``. Without any token, binding anything but a
loopback address is refused: an unauthenticated service must not be reachable
from the network.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from sqlalchemy import Engine

from bookingguard.api.dashboard.routes import login_url
from bookingguard.db.uow import UnitOfWork, session_factory
from bookingguard.errors import ConfigurationError
from bookingguard.settings import Settings
from bookingguard.tokens import StaticToken, generate_secret, static_tokens, token_exists

__all__ = ["LOGIN_TOKEN_NAME", "ServeAccess", "is_loopback", "login_token", "plan_access"]

LOGIN_TOKEN_NAME = "dashboard-login"  # noqa: S105 (a name, not a secret)


@dataclass(frozen=True)
class ServeAccess:
    """What ``serve`` installs and prints."""

    extra_tokens: list[StaticToken] = field(default_factory=list)
    #: The one-time login URL to print, when ``serve`` made a login token.
    login_url: str | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def login_token(secret: str) -> StaticToken:
    """The one-time dashboard login token ``serve`` accepts besides the configured ones."""
    return StaticToken(name=LOGIN_TOKEN_NAME, scope="operate", secret=secret)


def plan_access(settings: Settings, engine: Engine, *, host: str, port: int) -> ServeAccess:
    """A login token and URL when no token exists; ``ConfigurationError`` for a public bind."""
    with UnitOfWork(session_factory(engine)) as uow:
        exists = token_exists(uow.session, static_tokens(settings))
    if exists:
        return ServeAccess()
    if not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host} (api.host): no API token exists yet. Create one with "
            "'bookingguard token create --name NAME --scope operate', or bind 127.0.0.1",
            key="api.host",
        )
    secret = generate_secret()
    shown_host = f"[{host}]" if ":" in host else host
    return ServeAccess(
        extra_tokens=[login_token(secret)],
        login_url=login_url(f"http://{shown_host}:{port}", secret),
    )
