"""Signature checks: Retell's verdicts match Retell's own SDK; Cal.com's HMAC is exact."""

from __future__ import annotations

import time

import pytest
from retell.lib import verify as retell_sdk_verify

from bookingguard.api.signatures import (
    calcom_signature,
    retell_signature,
    verify_calcom_signature,
    verify_retell_signature,
)

KEY = "key_0123456789abcdef"
BODY = '{"event":"call_started","call":{"call_id":"c1","note":"caf\u00e9"}}'


def _now_ms() -> int:
    return int(time.time() * 1000)


def _cases() -> list[tuple[str, str, str]]:
    """(label, body, signature header) pairs, valid and not."""
    now = _now_ms()
    good = retell_signature(BODY.encode(), KEY, timestamp_ms=now)
    digest = good.split(",d=")[1]
    minute = 60_000
    return [
        ("valid", BODY, good),
        (
            "four minutes old",
            BODY,
            retell_signature(BODY.encode(), KEY, timestamp_ms=now - 4 * minute),
        ),
        (
            "four minutes ahead",
            BODY,
            retell_signature(BODY.encode(), KEY, timestamp_ms=now + 4 * minute),
        ),
        (
            "six minutes old",
            BODY,
            retell_signature(BODY.encode(), KEY, timestamp_ms=now - 6 * minute),
        ),
        (
            "six minutes ahead",
            BODY,
            retell_signature(BODY.encode(), KEY, timestamp_ms=now + 6 * minute),
        ),
        ("wrong key", BODY, retell_signature(BODY.encode(), "other", timestamp_ms=now)),
        ("body changed", BODY + " ", good),
        ("uppercase hex", BODY, good.upper().replace("V=", "v=").replace(",D=", ",d=")),
        (
            "leading zeros",
            BODY,
            f"v=000{now},d="
            + retell_signature(BODY.encode(), KEY, timestamp_ms=now).split(",d=")[1],
        ),
        ("space after comma", BODY, good.replace(",", ", ")),
        ("trailing newline", BODY, good + "\n"),
        ("digest too short", BODY, good[:-1]),
        ("digest too long", BODY, good + "0"),
        ("fields swapped", BODY, f"d={digest},v={now}"),
        ("seconds not ms", BODY, retell_signature(BODY.encode(), KEY, timestamp_ms=now // 1000)),
        ("empty", BODY, ""),
        ("garbage", BODY, "sha256=abc"),
        ("negative timestamp", BODY, f"v=-{now},d={digest}"),
        ("extra field", BODY, good + ",x=1"),
    ]


@pytest.mark.parametrize(("label", "body", "signature"), _cases(), ids=[c[0] for c in _cases()])
def test_retell_verdict_matches_sdk(label: str, body: str, signature: str) -> None:
    """Our verifier accepts exactly what retell.lib.verify accepts, and rejects what it rejects."""
    expected = bool(retell_sdk_verify(body, KEY, signature))
    ours = verify_retell_signature(body.encode(), signature, api_key=KEY, now_ms=_now_ms())
    assert ours is expected, label


def test_retell_expected_verdicts() -> None:
    """Sanity of the differential set: valid and fresh pass, stale and tampered fail."""
    verdicts = {
        label: verify_retell_signature(body.encode(), sig, api_key=KEY, now_ms=_now_ms())
        for label, body, sig in _cases()
    }
    assert verdicts["valid"]
    assert verdicts["four minutes old"]
    assert verdicts["leading zeros"]
    assert not verdicts["six minutes old"]
    assert not verdicts["wrong key"]
    assert not verdicts["body changed"]
    assert not verdicts["uppercase hex"]


def test_retell_tolerance_is_inclusive() -> None:
    """Exactly five minutes old passes; one millisecond more fails (as the SDK's abs() > 5 min)."""
    now = 1_800_000_000_000
    at_edge = retell_signature(b"{}", KEY, timestamp_ms=now - 300_000)
    past_edge = retell_signature(b"{}", KEY, timestamp_ms=now - 300_001)
    assert verify_retell_signature(b"{}", at_edge, api_key=KEY, now_ms=now)
    assert not verify_retell_signature(b"{}", past_edge, api_key=KEY, now_ms=now)


def test_retell_without_key_rejects_everything() -> None:
    """No configured API key: nothing verifies (fail closed)."""
    now = _now_ms()
    signature = retell_signature(b"{}", "", timestamp_ms=now)
    assert not verify_retell_signature(b"{}", signature, api_key="", now_ms=now)


def test_calcom_signature() -> None:
    """Cal.com's hex HMAC-SHA256 of the raw body verifies; anything else does not."""
    body = b'{"triggerEvent":"BOOKING_CREATED"}'
    good = calcom_signature(body, "whsec")
    assert verify_calcom_signature(body, good, secret="whsec")
    assert verify_calcom_signature(body, good.upper(), secret="whsec")
    assert not verify_calcom_signature(body + b" ", good, secret="whsec")
    assert not verify_calcom_signature(body, good, secret="other")
    assert not verify_calcom_signature(body, "sha256=" + good, secret="whsec")
    assert not verify_calcom_signature(body, None, secret="whsec")
    assert not verify_calcom_signature(body, good, secret="")
