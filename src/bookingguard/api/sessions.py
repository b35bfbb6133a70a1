"""Dashboard sessions: a token is exchanged once for a random session id kept in a cookie.

The cookie never holds the token. A session lives in ``dashboard_sessions`` (only
the SHA-256 of its id is stored, as for API tokens), so every worker and replica
knows it; it expires after ``api.session_ttl_seconds``, ends at log-out, and
ends when the API token it came from is revoked. Each session has a CSRF token
that every dashboard form carries back. The one-time login link of ``serve``
makes one session and is spent: its hash is stored unique with that session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bookingguard.api.auth import principal_for_secret
from bookingguard.api.context import OperatorContext
from bookingguard.db.models import ApiToken, DashboardSession
from bookingguard.db.uow import UnitOfWork
from bookingguard.tokens import Principal

__all__ = [
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "SignedIn",
    "csrf_matches",
    "end_session",
    "find_session",
    "login_principal",
    "open_session",
]

SESSION_COOKIE = "bookingguard_session"
#: The form field (and ``X-CSRF-Token`` header) that carries the session's CSRF token.
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class SignedIn:
    """A live session: who, and the CSRF token its forms carry."""

    principal: Principal
    csrf_token: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def login_principal(context: OperatorContext, secret: str) -> tuple[Principal, bool] | None:
    """Who ``secret`` signs in as, and whether it is a one-time login token; ``None`` if nobody.

    The one-time login tokens are compared here only: they are no API tokens.
    """
    presented = secret.encode()
    for login in context.login_tokens:
        if hmac.compare_digest(presented, login.secret.encode()):
            return Principal(login.name, login.scope), True
    principal = principal_for_secret(context, secret)
    return (principal, False) if principal is not None else None


def open_session(
    context: OperatorContext, principal: Principal, *, one_time_secret: str | None = None
) -> str | None:
    """A new session id for ``principal``; ``None`` when ``one_time_secret`` was already spent."""
    session_id = secrets.token_urlsafe(32)
    now = context.clock()
    row = DashboardSession(
        session_hash=_digest(session_id),
        token_name=principal.name,
        scope=principal.scope,
        csrf_token=secrets.token_urlsafe(32),
        login_hash=_digest(one_time_secret) if one_time_secret is not None else None,
        created_at=now,
        expires_at=now + timedelta(seconds=context.settings.api.session_ttl_seconds),
    )
    try:
        with UnitOfWork(context.sessions) as uow:
            uow.session.add(row)
            uow.commit()
    except IntegrityError:
        return None
    return session_id


def find_session(context: OperatorContext, session_id: str) -> SignedIn | None:
    """The live session ``session_id`` names: not expired, not ended, its token not revoked."""
    now = context.clock()
    revoked_token = (
        select(ApiToken.id)
        .where(ApiToken.name == DashboardSession.token_name, ApiToken.revoked_at.is_not(None))
        .exists()
    )
    query = select(
        DashboardSession.token_name, DashboardSession.scope, DashboardSession.csrf_token
    ).where(
        DashboardSession.session_hash == _digest(session_id),
        DashboardSession.revoked_at.is_(None),
        DashboardSession.expires_at > now,
        ~revoked_token,
    )
    with UnitOfWork(context.sessions) as uow:
        row = uow.session.execute(query).first()
    if row is None:
        return None
    return SignedIn(Principal(row.token_name, row.scope), row.csrf_token)


def end_session(context: OperatorContext, session_id: str) -> None:
    """Revoke the session ``session_id`` names (log-out)."""
    with UnitOfWork(context.sessions) as uow:
        uow.session.execute(
            update(DashboardSession)
            .where(
                DashboardSession.session_hash == _digest(session_id),
                DashboardSession.revoked_at.is_(None),
            )
            .values(revoked_at=context.clock())
        )
        uow.commit()


def csrf_matches(signed_in: SignedIn, presented: str | None) -> bool:
    """Whether a form carried this session's CSRF token."""
    return presented is not None and hmac.compare_digest(
        presented.encode(), signed_in.csrf_token.encode()
    )
