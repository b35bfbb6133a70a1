"""The campaign's checker: six invariants judged from the outside, exactly.

It reads only what a user could see: the answers the replicas gave, the Cal.com
stand-in's ledger, the database's rows and ``/metrics`` (``evidence``). Each
invariant lists every violation it found, as a sentence naming the call, booking
or circuit after a
``[kind]`` tag (the report shows examples of each kind).

I1  every ``booked: true`` (and ``rescheduled: true``) answer has exactly one live
    Cal.com booking and one live appointment linked to its call, the same booking,
    at the start told (unless a later change to the call had no clear answer); a
    ``cancelled: true`` answer leaves none.
I2  no idempotency key produced more than one Cal.com booking (cancelled ones count).
I3  every "we'll call you back" answer has a durable record: the call flagged
    (booking_failed or requires_manual_processing), a review item, or an alert.
I4  every acknowledged (2xx) webhook is stored: its delivery recorded, its call or
    booking written.
I5  after one reconcile and one check, every Cal.com booking is known locally with
    the same liveness, or alerted.
I6  every breaker transition is in the history, in order: the history chains (each
    transition leaves the state its store's previous one entered, or one that another
    store entered since, which it may have taken over: while processes disagree on
    which store is up, two stores decide for a circuit, each recorded as
    ``decided_by``), the state row agrees with it, every state the API showed is the
    one the history gives for that version, and /metrics counted no transition the
    history lacks.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.faults_campaign.driver import Answer
from bench.faults_campaign.evidence import Evidence

from bookingguard.booking.types import IDEMPOTENCY_METADATA_KEY, RETELL_CALL_METADATA_KEY
from bookingguard.db.models import NOT_LIVE_APPOINTMENT_STATUSES

__all__ = ["INVARIANTS", "Verdict", "check"]

INVARIANTS = {
    "I1": "booked answer = one live Cal.com booking + one linked appointment",
    "I2": "one Cal.com create per idempotency key",
    "I3": "every call-back answer has a durable record",
    "I4": "every acknowledged webhook is stored",
    "I5": "every Cal.com booking known locally or alerted",
    "I6": "every breaker transition in the history, in order",
}
CALLBACK = "call you back"
_FUNCTIONS = (
    "check_availability",
    "book_appointment",
    "reschedule_appointment",
    "cancel_appointment",
)


@dataclass
class Verdict:
    """Violations by invariant, and how many cases each invariant examined."""

    violations: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in INVARIANTS})
    examined: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(len(found) for found in self.violations.values())


def _remote_live(booking: dict[str, Any]) -> bool:
    return booking["status"] not in ("cancelled", "rejected")


def _local_live(appointment: dict[str, Any]) -> bool:
    return appointment["status"] not in NOT_LIVE_APPOINTMENT_STATUSES


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Index:
    """The evidence, indexed the ways the invariants look things up."""

    def __init__(self, evidence: Evidence) -> None:
        db = evidence.database
        self.calls = {row["retell_call_id"]: row for row in db.calls}
        self.appointments_of: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.appointment_by_uid: dict[str, dict[str, Any]] = {}
        for row in db.appointments:
            if row["call_id"] is not None:
                self.appointments_of[row["call_id"]].append(row)
            if row["calcom_booking_uid"] is not None:
                self.appointment_by_uid[row["calcom_booking_uid"]] = row
        self.bookings_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for booking in evidence.ledger:
            call = booking["metadata"].get(RETELL_CALL_METADATA_KEY)
            if call:
                self.bookings_of[call].append(booking)
        self.reviewed = {row["call_id"] for row in db.reviews}
        self.alert_entities = {(row["entity_type"], row["entity_id"]) for row in db.alerts}
        self.alert_texts = [row["metadata"] or "" for row in db.alerts]
        self.alerted_calls: set[int] = set()
        for row in db.alerts:
            if row["entity_type"] == "call" and row["entity_id"] is not None:
                self.alerted_calls.add(int(row["entity_id"]))
            metadata = json.loads(row["metadata"]) if row["metadata"] else {}
            if isinstance(metadata, dict) and isinstance(metadata.get("call_id"), int):
                self.alerted_calls.add(metadata["call_id"])

    def alerted_uid(self, uid: str) -> bool:
        return any(uid in text for text in self.alert_texts)


def check(evidence: Evidence) -> Verdict:
    """Judge the six invariants over ``evidence``."""
    verdict = Verdict()
    index = _Index(evidence)
    _booked_answers(evidence, index, verdict)
    _one_create_per_key(evidence, verdict)
    _callbacks_recorded(evidence, index, verdict)
    _webhooks_stored(evidence, index, verdict)
    _bookings_known(evidence, index, verdict)
    _breaker_history(evidence, verdict)
    return verdict


def _booked_answers(evidence: Evidence, index: _Index, verdict: Verdict) -> None:
    by_call: dict[str, list[Answer]] = defaultdict(list)
    for answer in evidence.answers:
        if answer.operation in _FUNCTIONS[1:] and answer.call_id is not None:
            by_call[answer.call_id].append(answer)
    found = verdict.violations["I1"]
    for call_id, answers in sorted(by_call.items()):
        expected: str | None = None
        start: str | None = None
        ambiguous = False
        for answer in answers:
            body = answer.body or {}
            if answer.status == 200 and (body.get("booked") or body.get("rescheduled")):
                expected, start, ambiguous = "live", body.get("start"), False
            elif answer.status == 200 and body.get("cancelled"):
                expected, start, ambiguous = "gone", None, False
            elif expected is not None and answer.operation != "book_appointment":
                ambiguous = ambiguous or answer.status != 200 or CALLBACK in body.get("message", "")
        if expected is None:
            continue
        verdict.examined["I1"] += 1
        remote = [b for b in index.bookings_of.get(call_id, []) if _remote_live(b)]
        call = index.calls.get(call_id)
        local = (
            [a for a in index.appointments_of.get(call["id"], []) if _local_live(a)] if call else []
        )
        told = "booked" if expected == "live" else "cancelled"
        if len(remote) > 1:
            found.append(
                f"[several live] {call_id}: {len(remote)} live Cal.com bookings "
                f"{[b['uid'] for b in remote]}"
            )
        if not ambiguous and expected == "live" and not remote:
            found.append(f"[none live] {call_id}: answered {told}, Cal.com holds no live booking")
        if not ambiguous and expected == "gone" and remote:
            found.append(
                f"[still live] {call_id}: answered cancelled, Cal.com still holds "
                f"{remote[0]['uid']}"
            )
        remote_uids = sorted(b["uid"] for b in remote)
        local_uids = sorted(str(a["calcom_booking_uid"]) for a in local)
        if remote_uids != local_uids:
            found.append(
                f"[local differs] {call_id}: live at Cal.com {remote_uids}, locally {local_uids}"
            )
        elif (
            len(remote) == 1
            and call is not None
            and (not call["appointment_made"] or call["appointment_link_status"] != "linked")
        ):
            found.append(
                f"[call flags] {call_id}: live booking {remote_uids[0]}, the call reads "
                f"appointment_made={call['appointment_made']}, {call['appointment_link_status']}"
            )
        if (
            not ambiguous
            and start
            and len(remote) == 1
            and _moment(remote[0]["start"]) != _moment(start)
        ):
            found.append(f"[start] {call_id}: told {start}, Cal.com holds {remote[0]['start']}")


def _one_create_per_key(evidence: Evidence, verdict: Verdict) -> None:
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for booking in evidence.ledger:
        key = booking["metadata"].get(IDEMPOTENCY_METADATA_KEY)
        if key and not booking.get("rescheduledFromUid"):
            by_key[key].append(booking)
    verdict.examined["I2"] += len(by_key)
    for key, bookings in sorted(by_key.items()):
        if len(bookings) > 1:
            made = ", ".join(f"{b['uid']} ({b['status']})" for b in bookings)
            call = bookings[0]["metadata"].get(RETELL_CALL_METADATA_KEY)
            verdict.violations["I2"].append(
                f"[double create] key {key[:16]}… of {call}: {len(bookings)} creates: {made}"
            )


def _callbacks_recorded(evidence: Evidence, index: _Index, verdict: Verdict) -> None:
    for answer in evidence.answers:
        body = answer.body or {}
        if answer.operation not in _FUNCTIONS or CALLBACK not in str(body.get("message", "")):
            continue
        verdict.examined["I3"] += 1
        call = index.calls.get(answer.call_id or "")
        recorded = call is not None and (
            call["booking_failed"]
            or call["requires_manual_processing"]
            or call["id"] in index.reviewed
            or call["id"] in index.alerted_calls
        )
        if not recorded:
            state = (
                "no call row" if call is None else f"call {call['id']} unflagged, no review item"
            )
            verdict.violations["I3"].append(f"[{answer.operation}] {answer.call_id}: {state}")


def _webhooks_stored(evidence: Evidence, index: _Index, verdict: Verdict) -> None:
    events = evidence.database.webhook_events
    for answer in evidence.answers:
        if not answer.acknowledged or answer.operation not in ("retell_webhook", "calcom_webhook"):
            continue
        verdict.examined["I4"] += 1
        detail = answer.detail
        problem = None
        if answer.operation == "retell_webhook":
            key = f"retell:{detail['event']}:{answer.call_id}"
            if key not in events or answer.call_id not in index.calls:
                problem = "delivery not recorded" if key not in events else "no call row"
        else:
            key = f"calcom:{detail['trigger']}:{detail['uid']}"
            stored = index.appointment_by_uid.get(detail["uid"])
            if key not in events:
                problem = "delivery not recorded"
            elif detail["trigger"] != "BOOKING_CANCELLED" and stored is None:
                problem = "no appointment for the booking"
            elif detail["trigger"] == "BOOKING_CANCELLED" and stored and _local_live(stored):
                problem = f"appointment {stored['id']} still {stored['status']}"
        if problem is not None:
            verdict.violations["I4"].append(
                f"[{answer.operation}] {key} ({answer.status} from {answer.replica}): {problem}"
            )


def _bookings_known(evidence: Evidence, index: _Index, verdict: Verdict) -> None:
    for booking in evidence.ledger:
        verdict.examined["I5"] += 1
        local = index.appointment_by_uid.get(booking["uid"])
        live = _remote_live(booking)
        if local is not None and _local_live(local) == live:
            continue
        if local is None and not live:
            continue
        alerted = (
            ("calcom_booking", booking["id"]) in index.alert_entities
            or (local is not None and ("appointment", local["id"]) in index.alert_entities)
            or index.alerted_uid(booking["uid"])
        )
        if not alerted:
            here = "unknown locally" if local is None else f"locally {local['status']}"
            call = booking["metadata"].get(RETELL_CALL_METADATA_KEY)
            verdict.violations["I5"].append(
                f"[{booking['status']}] {booking['uid']} (call {call}): {here} and not alerted"
            )


def _breaker_history(evidence: Evidence, verdict: Verdict) -> None:
    found = verdict.violations["I6"]
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in evidence.database.transitions:
        history[row["circuit_key"]].append(row)
    for circuit, rows in sorted(history.items()):
        # Each store that decided for the circuit has its own chain. A store may also go
        # on from a state another store entered since its own last transition (SQL from
        # Redis's audited state, Redis from the circuit it adopted from SQL): what a
        # missing transition cannot explain.
        own: dict[str | None, str] = {}
        others: dict[str | None, set[str]] = {}
        entered: set[str] = set()
        for row in rows:
            verdict.examined["I6"] += 1
            decider = row.get("decided_by")
            allowed = {own.get(decider, "closed")} | others.get(decider, entered)
            if row["from_state"] not in allowed:
                found.append(
                    f"[chain] {circuit} v{row['version']} ({decider}): "
                    f"{row['from_state']}→{row['to_state']} follows its store's transition "
                    f"into {own.get(decider, 'closed')} and no other store's into "
                    f"{row['from_state']} since"
                )
            to_state = row["to_state"]
            for other, states in others.items():
                if other != decider:
                    states.add(to_state)
            others[decider] = set()
            own[decider] = to_state
            entered.add(to_state)
    for row in evidence.database.breaker_states:
        rows = history.get(row["circuit_key"], [])
        last = rows[-1]["to_state"] if rows else "closed"
        if row["state"] != last:
            found.append(
                f"[state row] {row['circuit_key']}: state row {row['state']}, history ends {last}"
            )
    seen = {(o.circuit_key, o.version, o.state, o.store) for o in evidence.observations}
    for circuit, version, state, store in sorted(seen):
        verdict.examined["I6"] += 1
        before = [row for row in history.get(circuit, []) if row["version"] <= version]
        expected = before[-1]["to_state"] if before else "closed"
        if state != expected:
            found.append(
                f"[API] {circuit}: the API showed {state} at v{version} ({store}), "
                f"the history gives {expected}"
            )
    recorded = Counter(
        (r["circuit_key"], r["from_state"], r["to_state"]) for r in evidence.database.transitions
    )
    for (circuit, source, target), counted in sorted(evidence.metric_transitions.items()):
        if counted > recorded[(circuit, source, target)]:
            found.append(
                f"[metrics] {circuit}: /metrics counted {counted} {source}→{target}, "
                f"the history holds {recorded[(circuit, source, target)]}"
            )
