"""/docs and /redoc work offline: their scripts, styles and icon come from the service itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from bookingguard.api.server import build_server_app
from bookingguard.settings import Settings
from tests.conftest import TestDatabase
from tests.operator_support import running_server

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")
EXTERNAL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)


@pytest.fixture
def docs_client(sqlite_database: TestDatabase) -> Iterator[httpx.Client]:
    """A client of the served app (as ``bookingguard serve`` composes it) on a real server."""
    settings = Settings(database_url=sqlite_database.url)
    app = build_server_app(settings, engine=sqlite_database.engine)
    with running_server(app) as base_url, httpx.Client(base_url=base_url) as client:
        yield client


@pytest.mark.parametrize(
    ("page", "scripts"),
    [("/docs", {"swagger-ui-bundle.js"}), ("/redoc", {"redoc.standalone.js"})],
)
def test_docs_page_references_only_local_assets_that_are_served(
    docs_client: httpx.Client, page: str, scripts: set[str]
) -> None:
    """The page names no external URL; each script, stylesheet and icon it loads answers 200."""
    response = docs_client.get(page)
    assert response.status_code == 200
    html = response.text
    assert EXTERNAL.search(html) is None, EXTERNAL.search(html)
    assets = ASSET.findall(html)
    assert {asset.rsplit("/", 1)[-1] for asset in assets} >= scripts
    for asset in assets:
        assert asset.startswith("/docs/assets/"), asset
        served = docs_client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset
    assert docs_client.get("/openapi.json").json()["info"]["title"] == "bookingguard"


def test_swagger_ui_does_not_call_the_online_validator(docs_client: httpx.Client) -> None:
    """Swagger UI is configured without the swagger.io validator (it would send the schema out)."""
    assert '"validatorUrl": null' in docs_client.get("/docs").text
