"""The Slack stand-in for the CLI's delivery test."""

from tests.support.slack import slack_standin

__all__ = ["slack_standin"]
