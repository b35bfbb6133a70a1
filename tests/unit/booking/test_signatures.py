"""Signature checks: Retell's verdicts match Retell's own SDK; Cal.com's HMAC is exact."""

from __future__ import annotations

import random
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


def _mutations(count: int) -> list[str]:
    """Signatures with random edits and random ages (never within a second of the edge)."""
    rng = random.Random(20261129)
    alphabet = "v=,d0123456789abcdefABCDEF -\n"
    now = _now_ms()
    signatures = []
    for _ in range(count):
        offset = rng.choice([-1, 1]) * rng.randrange(0, 600_000)
        if abs(abs(offset) - 300_000) < 1_000:
            offset = 0
        signature = list(retell_signature(BODY.encode(), KEY, timestamp_ms=now + offset))
        for _ in range(rng.choice([0, 0, 1, 2])):
            position = rng.randrange(len(signature))
            action = rng.choice(["replace", "insert", "delete"])
            if action == "replace":
                signature[position] = rng.choice(alphabet)
            elif action == "insert":
                signature.insert(position, rng.choice(alphabet))
            else:
                del signature[position]
        signatures.append("".join(signature))
    return signatures


def test_retell_verdicts_match_sdk_on_random_mutations() -> None:
    """Over 500 randomly edited and aged signatures, our verdict equals the SDK's every time."""
    verdicts = [
        (
            signature,
            verify_retell_signature(BODY.encode(), signature, api_key=KEY, now_ms=_now_ms()),
            bool(retell_sdk_verify(BODY, KEY, signature)),
        )
        for signature in _mutations(500)
    ]
    assert [signature for signature, ours, sdk in verdicts if ours is not sdk] == []
    accepted = sum(ours for _, ours, _ in verdicts)
    assert 0 < accepted < len(verdicts)
