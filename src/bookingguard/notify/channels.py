"""Delivery channels: Slack incoming webhook (Block Kit), SMTP e-mail (text + HTML), the log.

A channel renders an outbox row and sends it, raising ``DeliveryError`` when the
other side did not take it; the delivery worker decides about retries.

A Slack incoming-webhook URL is a credential (whoever has it can post), and
httpx logs every request's URL at INFO: ``redact_http_logs`` makes the ``httpx``
and ``httpcore`` loggers show only a URL's scheme and host.
"""

from __future__ import annotations

import html
import logging
import smtplib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import httpx
import structlog

from bookingguard.settings import AlertSettings

__all__ = [
    "Channel",
    "DeliveryError",
    "EmailChannel",
    "LogChannel",
    "OutgoingMessage",
    "RedactUrls",
    "SlackChannel",
    "channels_from_settings",
    "redact_http_logs",
    "render_email",
    "render_slack",
]

SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}


class DeliveryError(Exception):
    """The channel did not accept the message; it will be retried."""


@dataclass(frozen=True)
class OutgoingMessage:
    """What a channel needs from an outbox row."""

    outbox_id: int
    kind: str
    subject: str
    payload: Mapping[str, Any]

    @property
    def severity(self) -> str:
        return str(self.payload.get("severity", "info"))


class Channel(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> None: ...


def _sample_text(sample: Mapping[str, Any]) -> str:
    return f"{sample.get('entity_type')} {sample.get('entity_id')}"


def _lines(message: OutgoingMessage) -> list[str]:
    payload = message.payload
    lines = []
    if "count" in payload:
        lines.append(f"Count: {payload['count']}")
    if payload.get("circuits"):
        lines.append("Open circuits: " + ", ".join(str(c) for c in payload["circuits"]))
    samples = payload.get("samples") or []
    if samples:
        lines.append("Samples: " + ", ".join(_sample_text(s) for s in samples))
    for key, value in payload.items():
        if key not in {"severity", "count", "samples", "circuits", "dashboard_url", "alert_type"}:
            lines.append(f"{key}: {value}")
    return lines


def render_slack(message: OutgoingMessage) -> dict[str, Any]:
    """The Block Kit body of an incoming-webhook POST (``text`` is the notification fallback)."""
    emoji = SEVERITY_EMOJI.get(message.severity, "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{emoji} *{message.severity}*\n" + "\n".join(_lines(message)),
            },
        },
    ]
    url = message.payload.get("dashboard_url")
    if url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open dashboard"},
                        "url": url,
                    }
                ],
            }
        )
    return {"text": message.subject, "blocks": blocks}


def render_email(message: OutgoingMessage, *, sender: str, recipients: list[str]) -> EmailMessage:
    """A multipart/alternative e-mail; Message-ID derives from the outbox id."""
    email = EmailMessage()
    email["Subject"] = message.subject
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Message-ID"] = f"<outbox-{message.outbox_id}@bookingguard>"
    lines = _lines(message)
    url = message.payload.get("dashboard_url")
    text = "\n".join([message.subject, f"Severity: {message.severity}", *lines])
    if url:
        text += f"\nDashboard: {url}"
    email.set_content(text + "\n")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    link = f'<p><a href="{html.escape(str(url))}">Open dashboard</a></p>' if url else ""
    email.add_alternative(
        f"<html><body><h2>{html.escape(message.subject)}</h2>"
        f"<p>Severity: <b>{html.escape(message.severity)}</b></p>"
        f"<ul>{items}</ul>{link}</body></html>",
        subtype="html",
    )
    return email


def _origin_only(value: object) -> object:
    if isinstance(value, httpx.URL):
        return f"{value.scheme}://{value.host}/…"
    return value


class RedactUrls(logging.Filter):
    """Shows URL arguments of a log record as their scheme and host: no path, query or user."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_origin_only(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _origin_only(arg) for key, arg in record.args.items()}
        return True


def redact_http_logs() -> None:
    """Install ``RedactUrls`` on httpx's loggers (once, whoever calls it first)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactUrls) for existing in logger.filters):
            logger.addFilter(RedactUrls())


class SlackChannel:
    """POSTs Block Kit JSON to an incoming webhook; anything but 2xx is a failure."""

    name = "slack"

    def __init__(self, webhook_url: str, *, client: httpx.Client | None = None) -> None:
        self._url = webhook_url
        self._client = client or httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0))
        redact_http_logs()

    def send(self, message: OutgoingMessage) -> None:
        try:
            response = self._client.post(self._url, json=render_slack(message))
        except httpx.HTTPError as exc:
            # The error's text may quote the URL, which is the credential.
            detail = str(exc).replace(self._url, "<slack webhook url>")
            raise DeliveryError(f"slack: {type(exc).__name__}: {detail}") from exc
        if response.status_code // 100 != 2:
            raise DeliveryError(f"slack: HTTP {response.status_code}: {response.text[:200]}")


class EmailChannel:
    """Sends through an SMTP server (optional STARTTLS and login)."""

    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self._host, self._port = host, port
        self._sender, self._recipients = sender, recipients
        self._username, self._password = username, password
        self._starttls = starttls
        self._timeout = timeout

    def send(self, message: OutgoingMessage) -> None:
        email = render_email(message, sender=self._sender, recipients=self._recipients)
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls()
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(email)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}") from exc


class LogChannel:
    """Writes the message as one structured log event."""

    name = "log"

    def __init__(self, logger: Any = None) -> None:
        # stderr, as JSON lines: stdout belongs to the CLI's --json output.
        self._logger = logger or structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(default=str),
            ],
            logger_name="bookingguard.alerts",
        )

    def send(self, message: OutgoingMessage) -> None:
        level = {"critical": "critical", "warning": "warning"}.get(message.severity, "info")
        if message.kind in {"resolved", "auto_corrected"}:
            level = "info"
        getattr(self._logger, level)(
            message.subject,
            kind=message.kind,
            outbox_id=message.outbox_id,
            **{k: v for k, v in message.payload.items() if k != "severity"},
        )


def channels_from_settings(settings: AlertSettings) -> dict[str, Channel]:
    """The configured channels: Slack with a webhook URL, e-mail with a host and recipients."""
    channels: dict[str, Channel] = {"log": LogChannel()}
    if settings.slack_webhook_url is not None:
        channels["slack"] = SlackChannel(settings.slack_webhook_url.get_secret_value())
    if settings.smtp_host and settings.email_to:
        channels["email"] = EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.email_from,
            recipients=list(settings.email_to),
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value() if settings.smtp_password else None
            ),
            starttls=settings.smtp_starttls,
        )
    return channels
