"""Pytest fixtures shared across the suite (registered by ``pytest_plugins`` in conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.calcom_standin import CalcomStandin


@pytest.fixture
def calcom_standin() -> Iterator[CalcomStandin]:
    """A fresh Cal.com v2 stand-in on 127.0.0.1 (port 0), stopped after the test."""
    with CalcomStandin() as standin:
        yield standin
