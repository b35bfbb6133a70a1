"""The served app in-process (ASGI) with every secret configured, for the edge's tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bookingguard.api.server import build_server_app
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import calcom_headers, retell_headers
from tests.support.slack import slack_standin
from tests.support.smtp import smtp_sink

__all__ = ["slack_standin", "smtp_sink"]

RETELL_KEY = "retell-edge-key-7f3a9c"
CALCOM_SECRET = "whsec-edge-secret-51d2e8"
API_SECRET = "edge-operate-token-c0ffee42"


def edge_settings(database: TestDatabase, calcom: CalcomStandin, **extra: Any) -> Settings:
    """Settings with the Cal.com, Retell and API secrets configured."""
    api = {"rate_limit": "100000/minute", "tokens": [f"ops:operate:{API_SECRET}"]}
    api.update(extra.pop("api", {}))
    return Settings(
        database_url=database.url,
        calcom={
            "api_key": calcom.api_key,
            "base_url": calcom.base_url,
            "webhook_secret": CALCOM_SECRET,
        },
        retell={"api_key": RETELL_KEY},
        api=api,
        **extra,
    )


@dataclass
class Edge:
    """A client of the served app, with signing helpers."""

    http: httpx.AsyncClient
    database: TestDatabase

    async def retell(self, path: str, body: bytes) -> httpx.Response:
        return await self.http.post(path, content=body, headers=retell_headers(body, RETELL_KEY))

    async def calcom(self, document: dict[str, Any], *, documented: bool = True) -> httpx.Response:
        body = json.dumps(document).encode()
        headers = calcom_headers(body, CALCOM_SECRET, documented=documented)
        return await self.http.post("/webhooks/calcom", content=body, headers=headers)


@pytest.fixture
async def edge(database: TestDatabase, calcom_standin: CalcomStandin) -> AsyncIterator[Edge]:
    app = build_server_app(edge_settings(database, calcom_standin), engine=database.engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 4711)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {API_SECRET}"},
    ) as http:
        yield Edge(http, database)
