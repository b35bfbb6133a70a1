"""The demo's plan: which kind of call each row is, with exact counts for the injected ones."""

from __future__ import annotations

import random

__all__ = [
    "APPOINTMENT_KINDS",
    "BYPASS_KINDS",
    "DEFAULT_SHARES",
    "plan_kinds",
]

#: Share of all calls written with each inconsistency (missing_appointment = phantom).
DEFAULT_SHARES: dict[str, float] = {
    "missing_appointment": 0.02,
    "session_outcome_mismatch": 0.01,
    "missing_direction": 0.015,
    "orphaned_appointment": 0.01,
    "inconsistent_link_status": 0.01,
    "recent_failures": 0.02,
}
AUTO_CORRECTED_SHARE = 0.01
BOOKED_SHARE = 0.45
CANCELLED_SHARE = 0.03

#: Call kinds the guarantees would refuse or correct: written with them suspended.
BYPASS_KINDS = frozenset(
    {
        "mismatch_flag",
        "mismatch_outcome",
        "missing_direction",
        "orphan_unflagged",
        "inconsistent_link_status",
    }
)
#: Call kinds that come with an appointment.
APPOINTMENT_KINDS = frozenset(
    {"booked", "auto_corrected", "cancelled", "mismatch_flag", "orphan_unflagged",
     "inconsistent_link_status"}
)  # fmt: skip


def plan_kinds(
    rng: random.Random, total: int, shares: dict[str, float]
) -> tuple[list[str], dict[str, int]]:
    """One kind per call: exact counts for the injected ones, the rest drawn by weight."""
    counts = {kind: round(total * share) for kind, share in shares.items()}
    counts["auto_corrected"] = round(total * AUTO_CORRECTED_SHARE)
    kinds: list[str] = []
    for kind, count in counts.items():
        if kind == "session_outcome_mismatch":
            kinds += ["mismatch_flag" if i % 2 else "mismatch_outcome" for i in range(count)]
        elif kind == "orphaned_appointment":
            kinds += ["orphan_unflagged" if i % 2 else "orphan_no_call" for i in range(count)]
        else:
            kinds += [kind] * count
    rest = total - len(kinds)
    if rest < 0:
        raise ValueError("the inconsistency shares add up to more than all calls")
    normal = BOOKED_SHARE + CANCELLED_SHARE
    kinds += rng.choices(
        ["booked", "cancelled", "other"],
        [BOOKED_SHARE, CANCELLED_SHARE, 1 - normal],
        k=rest,
    )
    rng.shuffle(kinds)
    return kinds, counts
