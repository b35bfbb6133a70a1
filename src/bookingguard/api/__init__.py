"""The HTTP service: webhooks, the agent's booking function, and what the operator issue adds."""

from bookingguard.api.app import create_app

__all__ = ["create_app"]
