"""API tokens (stored hashed, revocable, from the environment) and the shared rate limit."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import redis
from limits.storage import RedisStorage
from sqlalchemy import select

from bookingguard.api.ratelimit import RateLimiter
from bookingguard.bootstrap import build_blocking_redis
from bookingguard.db.models import ApiToken
from bookingguard.db.uow import UnitOfWork
from bookingguard.errors import ConfigurationError
from bookingguard.settings import Settings, load_settings
from bookingguard.tokens import TokenError, authenticate, create_token, revoke_token
from tests.conftest import TestDatabase
from tests.operator_support import NOW, make_token, operator_app, running_server

QUEUE = "/api/v1/review-queue"


def test_tokens_are_stored_hashed_and_revocable(database: TestDatabase) -> None:
    """Only the SHA-256 of the secret is stored; a revoked token no longer authenticates."""
    with UnitOfWork(database.sessions) as uow:
        secret = create_token(uow.session, name="ops", scope="operate", now=NOW)
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        row = uow.session.scalars(select(ApiToken)).one()
        assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (row.name, row.token_hash)
        principal = authenticate(uow.session, secret, now=NOW)
        assert principal is not None
        assert (principal.name, principal.scope) == ("ops", "operate")
        revoke_token(uow.session, name="ops", now=NOW)
        uow.commit()
    with UnitOfWork(database.sessions) as uow:
        assert authenticate(uow.session, secret, now=NOW) is None


def test_duplicate_name_and_bad_scope_are_refused(database: TestDatabase) -> None:
    """A second token with the same name, or an unknown scope, raises TokenError."""
    make_token(database, "ops", "read")
    with UnitOfWork(database.sessions) as uow, pytest.raises(TokenError, match="already exists"):
        create_token(uow.session, name="ops", scope="read", now=NOW)
    with UnitOfWork(database.sessions) as uow, pytest.raises(TokenError, match="scope"):
        create_token(uow.session, name="other", scope="admin", now=NOW)


def test_environment_tokens_authenticate(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BOOKINGGUARD_API__TOKENS entries 'name:scope:secret' work as read/operate tokens."""
    monkeypatch.setenv(
        "BOOKINGGUARD_API__TOKENS",
        '["ci-reader:read:0123456789abcdef-read", "ci-ops:operate:0123456789abcdef-ops"]',
    )
    settings = Settings(database_url=database.url)
    with (
        running_server(operator_app(database, settings=settings)) as base_url,
        httpx.Client(base_url=base_url) as client,
    ):
        read = {"Authorization": "Bearer 0123456789abcdef-read"}
        ops = {"Authorization": "Bearer 0123456789abcdef-ops"}
        assert client.get(QUEUE, headers=read).status_code == 200
        assert client.post(f"{QUEUE}/1/claim", headers=read).status_code == 403
        assert client.post(f"{QUEUE}/1/claim", headers=ops).status_code == 404


def test_malformed_environment_token_fails_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """An api.tokens entry that is not name:scope:secret is a configuration error for that key."""
    monkeypatch.setenv("BOOKINGGUARD_API__TOKENS", '["just-a-secret"]')
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.key.startswith("api.tokens")
    assert "BOOKINGGUARD_API__TOKENS" in caught.value.message
    assert "just-a-secret" not in caught.value.message


def test_61st_request_in_a_minute_gets_429(database: TestDatabase) -> None:
    """With 60/minute, sixty requests pass and the 61st gets 429 with Retry-After."""
    reader = make_token(database, "reader", "read")
    with (
        running_server(operator_app(database)) as base_url,
        httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {reader}"}) as client,
    ):
        statuses = [client.get(QUEUE).status_code for _ in range(60)]
        assert statuses == [200] * 60
        limited = client.get(QUEUE)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["content-type"] == "application/problem+json"
        other = make_token(database, "other", "read")
        assert client.get(QUEUE, headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_unauthenticated_requests_are_limited_per_ip(database: TestDatabase) -> None:
    """Requests without a valid token count against the client IP: brute force is capped."""
    settings = Settings(database_url=database.url, api={"rate_limit": "5/minute"})
    with (
        running_server(operator_app(database, settings=settings)) as base_url,
        httpx.Client(base_url=base_url) as client,
    ):
        statuses = [client.get(QUEUE).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


@pytest.mark.redis
def test_rate_limit_is_shared_between_replicas_through_redis(
    database: TestDatabase, redis_url: str, redis_prefix: str
) -> None:
    """Two app instances on one Redis share a token's budget: 30 + 30 pass, the 61st is 429."""
    reader = make_token(database, "reader", "read")
    settings = Settings(database_url=database.url, redis_url=redis_url)
    limiters = [
        RateLimiter.from_settings(
            settings,
            redis_client=build_blocking_redis(redis_url),
            namespace=f"{redis_prefix}ratelimit",
        )
        for _ in range(2)
    ]
    assert all(isinstance(limiter.storage, RedisStorage) for limiter in limiters)
    headers = {"Authorization": f"Bearer {reader}"}
    with (
        running_server(operator_app(database, settings=settings, rate_limiter=limiters[0])) as a,
        running_server(operator_app(database, settings=settings, rate_limiter=limiters[1])) as b,
        httpx.Client(headers=headers) as client,
    ):
        first = [client.get(a + QUEUE).status_code for _ in range(30)]
        second = [client.get(b + QUEUE).status_code for _ in range(30)]
        assert first + second == [200] * 60
        limited = client.get(a + QUEUE)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
    client_redis = redis.Redis.from_url(redis_url)
    keys = list(client_redis.scan_iter(match=f"*{redis_prefix}*"))
    assert keys, "the limiter's counters live in Redis"
    client_redis.delete(*keys)
    client_redis.close()
