"""``mask_url``: a connection URL made safe for logs and error messages."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["mask_url"]


def mask_url(url: str) -> str:
    """Hide the password of a URL; leave anything unparsable as ``<unparsable url>``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable url>"
