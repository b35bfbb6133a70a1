"""Webhook signatures: Retell's ``x-retell-signature`` and Cal.com's ``X-Cal-Signature-256``.

Retell signs ``raw body + str(ms)`` with HMAC-SHA256 keyed by the API key and
sends ``v=<unix ms>,d=<hex digest>``. This verifier accepts exactly what
Retell's own SDK (``retell.lib.verify``) accepts: the same pattern (lowercase
hex, no spaces), the timestamp read as an integer (so ``v=007`` signs ``7``),
and the tolerance inclusive.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from bookingguard.calcom import calcom_signature, verify_calcom_signature

__all__ = [
    "calcom_signature",
    "retell_signature",
    "verify_calcom_signature",
    "verify_retell_signature",
]

_RETELL_SIGNATURE = re.compile(r"v=(\d+),d=([0-9a-f]{64})")


def _retell_digest(body: bytes, api_key: str, timestamp_ms: int) -> str:
    message = body + str(timestamp_ms).encode()
    return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest()


def retell_signature(body: bytes, api_key: str, *, timestamp_ms: int) -> str:
    """The ``x-retell-signature`` value Retell would send for ``body`` at ``timestamp_ms``."""
    return f"v={timestamp_ms},d={_retell_digest(body, api_key, timestamp_ms)}"


def verify_retell_signature(
    body: bytes,
    signature: str | None,
    *,
    api_key: str,
    now_ms: int,
    tolerance_ms: int = 300_000,
) -> bool:
    """True only for a well-formed, fresh signature of ``body`` under ``api_key``."""
    if not signature or not api_key:
        return False
    match = _RETELL_SIGNATURE.fullmatch(signature)
    if match is None:
        return False
    timestamp_ms = int(match.group(1))
    if abs(now_ms - timestamp_ms) > tolerance_ms:
        return False
    return hmac.compare_digest(_retell_digest(body, api_key, timestamp_ms), match.group(2))
