"""API tokens: created once and shown once, stored as a SHA-256 hash, revoked by name.

Two sources of tokens are accepted: rows in ``api_tokens`` (``bookingguard token
create``) and static ``api.tokens`` entries from the configuration
(``BOOKINGGUARD_API__TOKENS='["ci:operate:SECRET"]'``, each entry
``name:scope:secret``). A presented secret is looked up by its hash and the
static entries are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bookingguard.db.models import ApiToken
from bookingguard.errors import BookingGuardError
from bookingguard.settings import Settings
from bookingguard.token_format import (
    NAME_PATTERN,
    TOKEN_SCOPES,
    StaticToken,
    parse_static_token,
)

__all__ = [
    "TOKEN_PREFIX",
    "Principal",
    "StaticToken",
    "TokenError",
    "authenticate",
    "create_token",
    "generate_secret",
    "hash_secret",
    "parse_static_token",
    "revoke_token",
    "scope_allows",
    "static_tokens",
    "token_exists",
]

TOKEN_PREFIX = "bg_"  # noqa: S105 (a public prefix, not a secret)
#: ``last_used_at`` is refreshed at most this often, so reads do not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenError(BookingGuardError):
    """A token cannot be created or revoked (bad name or scope, duplicate, unknown)."""

    code = "token_error"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name (the audit actor) and its scope."""

    name: str
    scope: str

    def allows(self, required: str) -> bool:
        return scope_allows(self.scope, required)


def scope_allows(granted: str, required: str) -> bool:
    """``operate`` includes ``read``; ``read`` allows reading only."""
    return granted == required or (granted == "operate" and required == "read")


def generate_secret() -> str:
    """A new random token secret (256 bits, URL-safe)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest stored instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _check(name: str, scope: str) -> None:
    if not NAME_PATTERN.match(name):
        raise TokenError(
            f"invalid token name {name!r}: use 1-100 letters, digits, '_', '.', '@' or '-'"
        )
    if scope not in TOKEN_SCOPES:
        raise TokenError(f"invalid scope {scope!r}: use one of {', '.join(TOKEN_SCOPES)}")


def create_token(session: Session, *, name: str, scope: str, now: datetime) -> str:
    """Store a new token's hash and return its secret (the only time it is visible)."""
    _check(name, scope)
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise TokenError(f"a token named {name!r} already exists")
    secret = generate_secret()
    session.add(ApiToken(name=name, scope=scope, token_hash=hash_secret(secret), created_at=now))
    try:
        session.flush()
    except IntegrityError:
        raise TokenError(f"a token named {name!r} already exists") from None
    return secret


def revoke_token(session: Session, *, name: str, now: datetime) -> ApiToken:
    """Mark the named token revoked (idempotent); it stops working at once."""
    token = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if token is None:
        raise TokenError(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def token_exists(session: Session, static_tokens: Sequence[StaticToken] = ()) -> bool:
    """Whether any usable (configured or unrevoked stored) token exists."""
    if static_tokens:
        return True
    stored = session.scalar(select(ApiToken.id).where(ApiToken.revoked_at.is_(None)).limit(1))
    return stored is not None


def authenticate(
    session: Session,
    secret: str,
    *,
    static_tokens: Iterable[StaticToken] = (),
    now: datetime,
) -> Principal | None:
    """The principal a presented secret stands for, or ``None`` (unknown or revoked).

    Static tokens are all compared with ``hmac.compare_digest`` (no early exit);
    stored tokens are found by the hash of the secret, so the secret itself is never
    compared byte by byte.
    """
    found: Principal | None = None
    presented = secret.encode()
    for static in static_tokens:
        if hmac.compare_digest(presented, static.secret.encode()) and found is None:
            found = Principal(static.name, static.scope)
    if found is not None:
        return found
    digest = hash_secret(secret)
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if token is None or token.revoked_at is not None:
        return None
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.flush()
    return Principal(token.name, token.scope)


def static_tokens(settings: Settings) -> list[StaticToken]:
    """The tokens configured in ``api.tokens`` (validated when the settings were read)."""
    return [parse_static_token(entry.get_secret_value()) for entry in settings.api.tokens]
