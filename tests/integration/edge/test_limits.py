"""Finding 4: bodies are limited while they are read, before signatures; JSON depth is bounded."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from bookingguard.api.server import build_server_app
from tests.conftest import TestDatabase
from tests.integration.edge.conftest import CALCOM_SECRET, Edge, edge_settings
from tests.operator_support import running_server
from tests.support.calcom_standin import CalcomStandin
from tests.support.retell import calcom_headers

CHUNK = 64 * 1024
TWO_MIB = 2 * 1024 * 1024


class CountingBody:
    """A 2 MiB body sent in 64 KiB chunks, counting how many were pulled from it."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(TWO_MIB // CHUNK):
            self.pulled += 1
            yield b"x" * CHUNK


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/webhooks/retell", 1024 * 1024),
        ("/webhooks/calcom", 1024 * 1024),
        ("/retell/functions/book_appointment", 1024 * 1024),
        ("/api/v1/silences", 64 * 1024),
    ],
)
async def test_chunked_body_over_the_limit_is_413_and_not_read_whole(
    edge: Edge, path: str, limit: int
) -> None:
    """2 MiB of unsigned chunks: 413 problem; the read stops at the first chunk past the limit."""
    body = CountingBody()
    response = await edge.http.post(path, content=body)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"request body larger than {limit} bytes"
    assert body.pulled == limit // CHUNK + 1


async def test_declared_length_over_the_limit_is_413_before_the_body_is_sent(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> None:
    """A real server answers a 200 MB Content-Length with 413 without waiting for the body."""
    app = build_server_app(edge_settings(database, calcom_standin), engine=database.engine)
    with running_server(app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(
                b"POST /webhooks/retell HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{"
            )
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = connection.recv(4096)
                if not chunk:
                    break
                answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(payload)["status"] == 413


async def test_a_body_under_the_limit_still_meets_the_signature_check(edge: Edge) -> None:
    """The limit changes nothing below it: an unsigned small body is 401, as before."""
    response = await edge.http.post("/webhooks/retell", content=b"{}")
    assert response.status_code == 401


async def test_configured_limit_is_the_one_enforced(
    database: TestDatabase, calcom_standin: CalcomStandin
) -> None:
    """api.max_webhook_body_bytes = 1000: a 1001-byte webhook is 413, a 1000-byte one is not."""
    settings = edge_settings(database, calcom_standin, api={"max_webhook_body_bytes": 1000})
    app = build_server_app(settings, engine=database.engine)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        over = await http.post("/webhooks/calcom", content=b" " * 1001)
        at = await http.post("/webhooks/calcom", content=b" " * 1000)
    assert over.status_code == 413
    assert at.status_code == 401


async def test_json_nested_100000_deep_is_400_with_a_message(edge: Edge) -> None:
    """A signed Retell webhook nested 100 000 deep is refused 400, not a RecursionError 500."""
    body = b"[" * 100_000 + b"]" * 100_000
    response = await edge.retell("/webhooks/retell", body)
    assert response.status_code == 400
    assert response.json()["detail"] == "malformed JSON: nested deeper than 64 levels"
    deep_object = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    calcom = await edge.http.post(
        "/webhooks/calcom",
        content=deep_object,
        headers=calcom_headers(deep_object, CALCOM_SECRET, documented=False),
    )
    assert calcom.status_code == 400
    assert calcom.json()["detail"] == "malformed JSON: nested deeper than 64 levels"


async def test_deep_json_on_the_api_is_a_4xx(edge: Edge) -> None:
    """An API body nested 30 000 deep (under 64 KiB) is a 4xx problem, not a 500."""
    response = await edge.http.post(
        "/api/v1/silences",
        content=b"[" * 30_000 + b"]" * 30_000,
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"


async def test_string_brackets_do_not_count_as_nesting(edge: Edge) -> None:
    """Brackets inside strings are text: a transcript full of them is parsed normally."""
    document = {"event": "call_started", "call": {"call_id": "c-1", "transcript": "[{" * 500}}
    response = await edge.retell("/webhooks/retell", json.dumps(document).encode())
    assert response.status_code == 204
