"""Local Slack and SMTP servers for the monitor's notification tests."""

from tests.support.slack import slack_standin
from tests.support.smtp import smtp_sink

__all__ = ["slack_standin", "smtp_sink"]
