"""A real local SMTP server (aiosmtpd) capturing the messages it receives."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

__all__ = ["SmtpSink", "smtp_sink"]


class SmtpSink:
    """aiosmtpd handler keeping every accepted message, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


class _FreePortController(Controller):  # type: ignore[misc]
    """Binds port 0 and learns the real port before aiosmtpd connects to itself."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    """An SMTP server on 127.0.0.1 and a free port; yields (sink, port)."""
    sink = SmtpSink()
    controller = _FreePortController(sink, hostname="127.0.0.1", port=0)
    controller.start()
    port = int(controller.port)
    try:
        yield sink, port
    finally:
        controller.stop()
