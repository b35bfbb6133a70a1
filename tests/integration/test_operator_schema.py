"""The served app (``build_server_app``) against its own OpenAPI schema, via schemathesis.

Also an auth matrix read from the schema, so every ``/api/v1`` route added later is
covered: no token → 401, revoked token → 401, read token on a write → 403.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from bookingguard.api.server import build_server_app
from bookingguard.db.uow import UnitOfWork
from bookingguard.settings import Settings
from bookingguard.tokens import revoke_token
from tests.conftest import TestDatabase
from tests.operator_support import NOW, make_token, running_server, seed_review_items


@dataclass
class LiveApi:
    base_url: str
    operator: str
    reader: str
    revoked: str


@pytest.fixture
def live_api(database: TestDatabase) -> Iterator[LiveApi]:
    seed_review_items(database, [(1, 5), (2, 10), (3, 1)])
    tokens = {
        name: make_token(database, name, scope)
        for name, scope in (("ops", "operate"), ("reader", "read"), ("gone", "operate"))
    }
    with UnitOfWork(database.sessions) as uow:
        revoke_token(uow.session, name="gone", now=NOW)
        uow.commit()
    unlimited = Settings(database_url=database.url, api={"rate_limit": "100000/minute"})
    with running_server(build_server_app(unlimited, engine=database.engine)) as base_url:
        yield LiveApi(base_url, tokens["ops"], tokens["reader"], tokens["gone"])


def test_api_conforms_to_its_schema(live_api: LiveApi) -> None:
    """Generated requests with a valid token get no 5xx and responses that match the schema."""
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {live_api.operator}"}
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers)

        conforms()
        checked += 1
    assert checked >= 20


def test_auth_matrix_over_every_api_route(live_api: LiveApi) -> None:
    """Every /api/v1 operation: 401 without or with a revoked token; 403 for read on writes."""
    document = httpx.get(f"{live_api.base_url}/openapi.json").json()
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
        for path, methods in document["paths"].items()
        if path.startswith("/api/v1/")
        for method in methods
    ]
    assert set(operations) >= {
        ("GET", "/api/v1/consistency"),
        ("POST", "/api/v1/consistency/runs"),
        ("GET", "/api/v1/alerts"),
        ("POST", "/api/v1/alerts/1/ack"),
        ("POST", "/api/v1/alerts/1/resolve"),
        ("GET", "/api/v1/silences"),
        ("POST", "/api/v1/silences"),
        ("GET", "/api/v1/circuit-breakers"),
        ("GET", "/api/v1/circuit-breakers/1"),
        ("POST", "/api/v1/circuit-breakers/1/reset"),
        ("POST", "/api/v1/circuit-breakers/1/open"),
        ("GET", "/api/v1/reports/daily"),
        ("GET", "/api/v1/review-queue"),
        ("POST", "/api/v1/review-queue/1/claim"),
    }
    with httpx.Client(base_url=live_api.base_url) as client:
        for method, path in operations:
            assert client.request(method, path).status_code == 401, (method, path)
            revoked = {"Authorization": f"Bearer {live_api.revoked}"}
            assert client.request(method, path, headers=revoked).status_code == 401
            as_reader = client.request(
                method, path, headers={"Authorization": f"Bearer {live_api.reader}"}
            )
            if method == "GET":
                assert as_reader.status_code not in (401, 403), (method, path)
            else:
                assert as_reader.status_code == 403, (method, path)
