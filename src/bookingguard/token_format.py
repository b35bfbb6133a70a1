"""The form of an API token's name, scope and configured ``name:scope:secret`` entry.

Below the settings (which validate ``api.tokens`` with ``parse_static_token``) and
the models (whose ``api_tokens.scope`` check uses ``TOKEN_SCOPES``), so neither has
to import ``bookingguard.tokens``, which stores and looks up tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NAME_PATTERN", "TOKEN_SCOPES", "StaticToken", "parse_static_token"]

#: ``read`` allows reading; ``operate`` includes ``read`` and allows changes.
TOKEN_SCOPES = ("read", "operate")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


@dataclass(frozen=True)
class StaticToken:
    """A token from the configuration (or one ``serve`` makes for the dashboard login)."""

    name: str
    scope: str
    secret: str


def parse_static_token(entry: str) -> StaticToken:
    """Parse a configured ``name:scope:secret`` entry; raise ``ValueError`` if malformed."""
    parts = entry.split(":", 2)
    if len(parts) != 3 or not parts[2]:
        raise ValueError("each api.tokens entry must look like 'name:scope:secret'")
    name, scope, secret = parts
    if not NAME_PATTERN.match(name) or scope not in TOKEN_SCOPES:
        raise ValueError("api.tokens entry with a bad name or a scope other than read|operate")
    if len(secret) < 16:
        raise ValueError("api.tokens secrets must be at least 16 characters")
    return StaticToken(name=name, scope=scope, secret=secret)
