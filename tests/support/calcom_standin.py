"""A Cal.com v2 stand-in: a real HTTP server on loopback with fault injection.

It implements what bookingguard uses of the v2 API (bookings: create, get, list
with filters and take/skip, cancel, reschedule, confirm, decline; event types;
slots) with Cal.com's envelopes, error envelope and rate-limit headers, and checks
the Bearer key. Every request is held to the published spec for the
``cal-api-version`` it carries and every answer to the documented response schema
(``tests/contracts/calcom``): a violation is answered 400 and raised when the
stand-in stops, so the test fails. Event types are served in the documented shape
(``event_type_document``) and enforced on create: required booking fields, the
attendee-phone location, lengths, SMS reminders (phone required), minimum notice
and the confirmation policy (``pending``). Faults are queued per route:
an HTTP error status, a 429 with reset headers, latency, a hang past the
client's timeout, and "booked but the response was lost" (the booking is made,
then the connection is dropped or left hanging). A fault plan (``plan_faults``) picks
faults by each route's request count instead, so a seeded campaign is repeatable;
``faults_delivered`` counts what was served. The bookings' changes are kept in order
as the webhook deliveries Cal.com would make (``take_webhooks``).

    with CalcomStandin() as calcom:
        calcom.fail_next("create", status=500, times=3)
        client = CalcomClient(base_url=calcom.base_url, api_key=calcom.api_key)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from tests.contracts.calcom.contract import ContractViolation, Operation, calcom_contract

__all__ = [
    "CalcomStandin",
    "Fault",
    "FaultPlan",
    "Gate",
    "RecordedRequest",
    "event_type_document",
    "sign_calcom_webhook",
]

Route = Literal[
    "create",
    "get",
    "list",
    "cancel",
    "reschedule",
    "confirm",
    "decline",
    "slots",
    "event_type",
]
FaultKind = Literal["status", "rate_limit", "latency", "hang", "lost_response"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for the next request on a route."""

    kind: FaultKind
    status: int = 500
    seconds: float = 0.0
    #: For ``lost_response``: drop the connection (False) or hang ``seconds`` (True).
    hang: bool = False


class Gate:
    """Holds every request on a route until released, counting those it holds: a test
    makes concurrent requests overlap there, then lets them through when it chooses."""

    #: A held request never waits longer than this, so a failing test cannot hang the server.
    LONGEST_HOLD_SECONDS = 30.0

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._held = 0
        self._open = False

    @property
    def held(self) -> int:
        """Requests that have reached the gate so far (held now, or let through)."""
        with self._condition:
            return self._held

    def hold(self) -> None:
        """Called by a request: wait here until the gate is released."""
        with self._condition:
            self._held += 1
            self._condition.notify_all()
            self._condition.wait_for(lambda: self._open, timeout=self.LONGEST_HOLD_SECONDS)

    def wait_held(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests have reached the gate; False if none came in time."""
        with self._condition:
            return self._condition.wait_for(lambda: self._held >= count, timeout=timeout)

    def release(self) -> None:
        """Let the held requests, and every later one, through."""
        with self._condition:
            self._open = True
            self._condition.notify_all()


@dataclass(frozen=True)
class RecordedRequest:
    """A request the stand-in received, for assertions."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def event_type_document(
    event_type_id: int,
    *,
    length_minutes: int = 30,
    length_options: tuple[int, ...] = (),
    locations: tuple[dict[str, Any], ...] = ({"type": "integration", "integration": "cal-video"},),
    required_fields: tuple[str, ...] = (),
    sms_reminders: bool = False,
    requires_confirmation: bool = False,
    minimum_notice_minutes: int = 0,
) -> dict[str, Any]:
    """An event type as ``GET /v2/event-types/{id}`` (2024-06-14) returns it.

    ``required_fields`` are required custom text fields (answered by slug);
    ``sms_reminders`` adds the required ``attendeePhoneNumber`` phone field that
    Cal.com adds for SMS reminders to the attendee; an attendee-phone location is
    ``{"type": "attendeePhone"}``.
    """
    fields: list[dict[str, Any]] = [
        {
            "type": "name",
            "slug": "name",
            "label": "Your name",
            "placeholder": "",
            "isDefault": True,
            "required": True,
        },
        {"type": "email", "slug": "email", "label": "Email", "placeholder": "", "isDefault": True},
    ]
    fields += [
        {
            "type": "text",
            "slug": slug,
            "label": slug,
            "required": True,
            "placeholder": "",
            "hidden": False,
            "isDefault": False,
        }
        for slug in required_fields
    ]
    if sms_reminders:
        fields.append(
            {
                "type": "phone",
                "slug": "attendeePhoneNumber",
                "label": "Phone",
                "required": True,
                "placeholder": "",
                "hidden": False,
                "isDefault": False,
            }
        )
    policy: dict[str, Any] = (
        {"type": "always", "blockUnconfirmedBookingsInBooker": False}
        if requires_confirmation
        else {"disabled": True}
    )
    return {
        "id": event_type_id,
        "lengthInMinutes": length_minutes,
        "lengthInMinutesOptions": list(length_options),
        "title": f"Event {event_type_id}",
        "slug": f"event-{event_type_id}",
        "description": "",
        "locations": list(locations),
        "bookingFields": fields,
        "disableGuests": False,
        "slotInterval": None,
        "minimumBookingNotice": minimum_notice_minutes,
        "beforeEventBuffer": 0,
        "afterEventBuffer": 0,
        "recurrence": None,
        "metadata": {},
        "price": 0,
        "currency": "usd",
        "lockTimeZoneToggleOnBookingPage": False,
        "seatsPerTimeSlot": None,
        "forwardParamsSuccessRedirect": None,
        "successRedirectUrl": None,
        "isInstantEvent": False,
        "scheduleId": None,
        "confirmationPolicy": policy,
        "hidden": False,
        "bookingRequiresAuthentication": False,
        "ownerId": 1,
        "users": ["host"],
    }


#: A fault plan: the fault for the ``n``-th request (from 1) on a route, or None.
FaultPlan = Callable[[str, int], "Fault | None"]


@dataclass
class _State:
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    event_types: dict[int, dict[str, Any]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    latency: float = 0.0
    plan: FaultPlan | None = None
    route_counts: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    webhooks: list[tuple[str, str]] = field(default_factory=list)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _slot_bound(text: str, *, end: bool) -> datetime:
    """A slots bound: a date is the start (or the end) of that UTC day."""
    if len(text) == 10:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1) - timedelta(seconds=1) if end else day
    return _parse_time(text)


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("time without a zone")
    return parsed.astimezone(UTC)


def sign_calcom_webhook(body: bytes, secret: str) -> str:
    """The ``X-Cal-Signature-256`` value Cal.com sends: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class CalcomStandin:
    """Cal.com v2 bookings API on 127.0.0.1 (port chosen by the OS)."""

    def __init__(
        self,
        *,
        api_key: str = "cal_test_standin",
        duration_minutes: int = 30,
        reject_double_booking: bool = True,
        opening_hours: tuple[int, int] = (9, 17),
        check_contract: bool = True,
    ) -> None:
        self.api_key = api_key
        #: Hold every request and answer to the published spec. Only a benchmark turns it
        #: off: the checks cost the stand-in milliseconds that grow with the body, which
        #: would count as ours when a larger request is timed against a smaller one.
        self.check_contract = check_contract
        self.duration = timedelta(minutes=duration_minutes)
        self.reject_double_booking = reject_double_booking
        #: Free slots are offered between these UTC hours of each day.
        self.opening_hours = opening_hours
        self._state = _State()
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="calcom-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; ``ContractViolation`` if anything exchanged broke the spec."""
        self._release.set()
        for gate in self._state.gates.values():
            gate.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._state.violations:
            raise ContractViolation("\n".join(self._state.violations))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("stand-in not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What ``BOOKINGGUARD_CALCOM__BASE_URL`` should be."""
        return f"http://127.0.0.1:{self.port}/v2"

    # -- fault injection -------------------------------------------------------

    def inject(self, route: Route, fault: Fault, *, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests on ``route``."""
        with self._lock:
            queue = self._state.faults.setdefault(route, deque())
            queue.extend([fault] * times)

    def fail_next(self, route: Route, *, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` and Cal.com's error envelope."""
        self.inject(route, Fault("status", status=status), times=times)

    def rate_limit_next(self, route: Route, *, reset_seconds: float = 1.0, times: int = 1) -> None:
        """Answer 429 with ``Retry-After`` and ``X-RateLimit-*-Default`` headers."""
        self.inject(route, Fault("rate_limit", seconds=reset_seconds), times=times)

    def delay_next(self, route: Route, *, seconds: float, times: int = 1) -> None:
        """Answer the next requests normally, ``seconds`` late."""
        self.inject(route, Fault("latency", seconds=seconds), times=times)

    def hang_next(self, route: Route, *, seconds: float, times: int = 1) -> None:
        """Do nothing for ``seconds`` (past the client's timeout), then drop the connection."""
        self.inject(route, Fault("hang", seconds=seconds), times=times)

    def lose_response_next(self, route: Route, *, hang_seconds: float | None = None) -> None:
        """Carry the request out, then drop the connection (or hang) instead of answering."""
        self.inject(
            route,
            Fault("lost_response", seconds=hang_seconds or 0.0, hang=hang_seconds is not None),
        )

    def plan_faults(self, plan: FaultPlan | None) -> None:
        """Ask ``plan(route, n)`` for the fault of the ``n``-th request on each route from now
        on (counted from 1 since the stand-in started; queued faults still go first)."""
        with self._lock:
            self._state.plan = plan

    def faults_delivered(self) -> dict[str, int]:
        """How many faults of each kind were served (queued or planned)."""
        with self._lock:
            return dict(self._state.delivered)

    def take_webhooks(self) -> list[tuple[str, str]]:
        """The (trigger, booking uid) deliveries Cal.com would have made since the last call:
        ``BOOKING_CREATED`` (``BOOKING_REQUESTED`` if pending), ``BOOKING_RESCHEDULED`` for
        the new booking and ``BOOKING_CANCELLED``, for changes made through the API."""
        with self._lock:
            taken, self._state.webhooks = self._state.webhooks, []
            return taken

    def gate(self, route: Route) -> Gate:
        """Hold every request on ``route`` (after it is checked and recorded) at a new gate."""
        gate = Gate()
        with self._lock:
            self._state.gates[route] = gate
        return gate

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` to every answer from now on."""
        with self._lock:
            self._state.latency = seconds

    # -- event types -----------------------------------------------------------

    def add_event_type(self, event_type_id: int, **options: Any) -> dict[str, Any]:
        """Serve and enforce an event type (``event_type_document``'s options)."""
        document = event_type_document(event_type_id, **options)
        with self._lock:
            self._state.event_types[event_type_id] = document
        return document

    def _event_type(self, event_type_id: int) -> dict[str, Any]:
        """The configured event type, or a plain one of the stand-in's default length."""
        found = self._state.event_types.get(event_type_id)
        if found is not None:
            return found
        minutes = int(self.duration.total_seconds() // 60)
        return event_type_document(event_type_id, length_minutes=minutes)

    # -- inspection ------------------------------------------------------------

    @property
    def violations(self) -> list[str]:
        """Contract violations seen so far (``stop`` raises if there are any)."""
        with self._lock:
            return list(self._state.violations)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def request_count(self, route: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._state.requests if route is None or r.route == route)

    def bookings(self, *, include_cancelled: bool = True) -> list[dict[str, Any]]:
        """Every booking held, as Cal.com would return it."""
        with self._lock:
            return [
                dict(b)
                for b in self._state.bookings.values()
                if include_cancelled or b["status"] != "cancelled"
            ]

    def add_booking(
        self,
        *,
        start: datetime,
        event_type_id: int,
        metadata: dict[str, str] | None = None,
        name: str = "Walk-in",
        email: str = "walk-in@example.com",
    ) -> dict[str, Any]:
        """Create a booking directly, as if made in Cal.com's own UI."""
        with self._lock:
            return self._create(
                {
                    "start": _iso(start),
                    "eventTypeId": event_type_id,
                    "attendee": {"name": name, "email": email, "timeZone": "UTC"},
                    "metadata": metadata or {},
                },
                enforce=False,
            )

    def cancel(self, uid: str, reason: str = "cancelled by host") -> dict[str, Any]:
        """Cancel a booking directly, as a host would in Cal.com's UI."""
        with self._lock:
            booking = self._state.bookings[uid]
            booking["status"] = "cancelled"
            booking["cancellationReason"] = reason
            booking["updatedAt"] = _iso(datetime.now(UTC))
            return dict(booking)

    def webhook_body(self, trigger_event: str, uid: str) -> bytes:
        """A Cal.com webhook delivery for the booking ``uid`` (sign it with the secret)."""
        with self._lock:
            booking = dict(self._state.bookings[uid])
        # A webhook's Person is not the API's attendee: its language is {"locale": …}.
        attendees = [
            {
                "name": attendee["name"],
                "email": attendee["email"],
                "timeZone": attendee["timeZone"],
                "language": {"locale": attendee.get("language") or "en"},
            }
            for attendee in booking["attendees"]
        ]
        payload: dict[str, Any] = {
            "triggerEvent": trigger_event,
            "createdAt": _iso(datetime.now(UTC)),
            "payload": {
                "uid": booking["uid"],
                "bookingId": booking["id"],
                "eventTypeId": booking["eventTypeId"],
                "startTime": booking["start"],
                "endTime": booking["end"],
                "status": booking["status"].upper(),
                "metadata": booking["metadata"],
                "attendees": attendees,
                "cancellationReason": booking.get("cancellationReason"),
            },
        }
        if trigger_event == "BOOKING_RESCHEDULED" and booking.get("rescheduledFromUid"):
            payload["payload"]["rescheduleUid"] = booking["rescheduledFromUid"]
        return json.dumps(payload).encode()

    # -- request handling (called from the server's threads) -------------------

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            count = self._state.route_counts[route] = self._state.route_counts.get(route, 0) + 1
            queue = self._state.faults.get(route)
            fault = queue.popleft() if queue else None
            if fault is None and self._state.plan is not None:
                fault = self._state.plan(route, count)
            if fault is not None:
                self._state.delivered[fault.kind] = self._state.delivered.get(fault.kind, 0) + 1
            return fault

    def clear_violations(self) -> None:
        """Forget the violations a test provoked on purpose and has asserted."""
        with self._lock:
            self._state.violations.clear()

    def _violation(self, message: str) -> None:
        with self._lock:
            self._state.violations.append(message)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(request)

    def _create(self, body: dict[str, Any], *, enforce: bool = True) -> dict[str, Any]:
        start = _parse_time(str(body["start"]))
        event_type_id = int(body["eventTypeId"])
        event_type = self._event_type(event_type_id)
        length = int(body.get("lengthInMinutes") or event_type["lengthInMinutes"])
        status = "accepted"
        if enforce:
            self._enforce(event_type, body, start=start, length=length)
            if "type" in event_type["confirmationPolicy"]:
                status = "pending"
        if self.reject_double_booking:
            for other in self._state.bookings.values():
                if (
                    other["eventTypeId"] == event_type_id
                    and other["start"] == _iso(start)
                    and other["status"] not in ("cancelled", "rejected")
                ):
                    raise _ApiError(
                        400,
                        "BadRequestException",
                        "User either already has booking at this time or is not available",
                    )
        attendee = dict(body["attendee"])
        now = _iso(datetime.now(UTC))
        booked_attendee = {
            "name": attendee.get("name", ""),
            "email": attendee.get("email") or "",
            "timeZone": attendee.get("timeZone", "UTC"),
            "language": attendee.get("language", "en"),
            "absent": False,
        }
        if attendee.get("phoneNumber"):
            booked_attendee["phoneNumber"] = attendee["phoneNumber"]
        location = body.get("location")
        booking: dict[str, Any] = {
            "id": next(self._ids),
            "uid": uuid.uuid4().hex[:22],
            "title": f"Appointment with {attendee.get('name', '')}",
            "description": "",
            "hosts": [
                {
                    "id": 1,
                    "name": "Host",
                    "email": "host@example.com",
                    "username": "host",
                    "timeZone": "UTC",
                }
            ],
            "status": status,
            "start": _iso(start),
            "end": _iso(start + timedelta(minutes=length)),
            "duration": length,
            "eventTypeId": event_type_id,
            "eventType": {"id": event_type_id, "slug": event_type["slug"]},
            "location": str(location.get("phone", "")) if isinstance(location, dict) else "",
            "absentHost": False,
            "attendees": [booked_attendee],
            "guests": list(body.get("guests") or []),
            "bookingFieldsResponses": dict(body.get("bookingFieldsResponses") or {}),
            "metadata": {str(k): str(v) for k, v in dict(body.get("metadata") or {}).items()},
            "createdAt": now,
            "updatedAt": now,
        }
        self._state.bookings[booking["uid"]] = booking
        return dict(booking)

    def _enforce(
        self, event_type: dict[str, Any], body: dict[str, Any], *, start: datetime, length: int
    ) -> None:
        """Refuse what Cal.com would refuse for this event type, with a 400."""
        problems: list[str] = []
        notice = timedelta(minutes=int(event_type["minimumBookingNotice"]))
        # Only an event type given a notice checks it: the booking tests book fixed dates.
        if notice and start < datetime.now(UTC) + notice:
            problems.append(f"start must be at least {notice} from now (minimum booking notice)")
        options = event_type["lengthInMinutesOptions"] or [event_type["lengthInMinutes"]]
        if length not in options:
            problems.append(f"lengthInMinutes {length} is not one of {options}")
        types = [location["type"] for location in event_type["locations"]]
        location = body.get("location")
        if isinstance(location, dict):
            if location.get("type") not in types:
                problems.append(f"location {location.get('type')!r} is not one of {types}")
        elif types and all(
            t in ("attendeePhone", "attendeeAddress", "attendeeDefined") for t in types
        ):
            problems.append(f"location is required: one of {types}")
        attendee = body.get("attendee") or {}
        responses = body.get("bookingFieldsResponses") or {}
        for booking_field in event_type["bookingFields"]:
            slug = booking_field["slug"]
            if booking_field["isDefault"] or not booking_field.get("required"):
                continue
            if slug == "attendeePhoneNumber":
                if not attendee.get("phoneNumber"):
                    problems.append("attendee.phoneNumber is required: the event type sends SMS")
            elif not str(responses.get(slug, "")).strip():
                problems.append(f"bookingFieldsResponses.{slug} is required")
        if problems:
            raise _ApiError(400, "BadRequestException", "; ".join(problems))

    def _slots(self, query: dict[str, str]) -> dict[str, list[dict[str, str]]]:
        """Free slots of the opening hours, by date in the asked time zone."""
        zone = ZoneInfo(query.get("timeZone", "UTC"))
        event_type = self._event_type(int(query["eventTypeId"]))
        length = timedelta(minutes=int(event_type["lengthInMinutes"]))
        first = _slot_bound(query["start"], end=False)
        last = _slot_bound(query["end"], end=True)
        earliest = datetime.now(UTC) + timedelta(minutes=int(event_type["minimumBookingNotice"]))
        taken = {
            b["start"]
            for b in self._state.bookings.values()
            if b["eventTypeId"] == event_type["id"] and b["status"] not in ("cancelled", "rejected")
        }
        slots: dict[str, list[dict[str, str]]] = {}
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        while day <= last:
            moment = day.replace(hour=self.opening_hours[0])
            close = day.replace(hour=self.opening_hours[1])
            while moment + length <= close:
                free = _iso(moment) not in taken
                if free and first <= moment and moment + length <= last and moment >= earliest:
                    local = moment.astimezone(zone)
                    slots.setdefault(local.date().isoformat(), []).append(
                        {
                            "start": local.isoformat(timespec="milliseconds"),
                            "end": (local + length).isoformat(timespec="milliseconds"),
                        }
                    )
                moment += length
            day += timedelta(days=1)
        return slots

    def _list(self, query: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        items = sorted(self._state.bookings.values(), key=lambda b: (b["start"], b["id"]))
        now = datetime.now(UTC)
        if "afterStart" in query:
            after = _parse_time(query["afterStart"])
            items = [b for b in items if _parse_time(b["start"]) >= after]
        if "beforeEnd" in query:
            before = _parse_time(query["beforeEnd"])
            items = [b for b in items if _parse_time(b["end"]) <= before]
        if "afterCreatedAt" in query:
            created = _parse_time(query["afterCreatedAt"])
            items = [b for b in items if _parse_time(b["createdAt"]) >= created]
        if "eventTypeId" in query:
            items = [b for b in items if b["eventTypeId"] == int(query["eventTypeId"])]
        wanted = {s for s in query.get("status", "").split(",") if s}
        if wanted:

            def matches(b: dict[str, Any]) -> bool:
                cancelled = b["status"] == "cancelled"
                upcoming = _parse_time(b["end"]) >= now
                return (
                    ("cancelled" in wanted and cancelled)
                    or ("upcoming" in wanted and upcoming and not cancelled)
                    or ("past" in wanted and not upcoming and not cancelled)
                )

            items = [b for b in items if matches(b)]
        take = int(query.get("take", 100))
        skip = int(query.get("skip", 0))
        return [dict(b) for b in items[skip : skip + take]], len(items)

    def _handle(self, route: str, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        """Carry out one API call; returns the ``data`` of the success envelope."""
        with self._lock:
            if route == "create":
                if not isinstance(body, dict):
                    raise _ApiError(400, "BadRequestException", "body must be a JSON object")
                missing = [k for k in ("start", "eventTypeId", "attendee") if k not in body]
                if missing:
                    raise _ApiError(400, "BadRequestException", f"missing field(s): {missing}")
                try:
                    created = self._create(body)
                except (TypeError, ValueError) as exc:
                    raise _ApiError(400, "BadRequestException", str(exc)) from exc
                trigger = (
                    "BOOKING_REQUESTED" if created["status"] == "pending" else "BOOKING_CREATED"
                )
                self._state.webhooks.append((trigger, created["uid"]))
                return created
            if route == "list":
                items, total = self._list(query)
                return items, total
            if route == "slots":
                try:
                    return self._slots(query)
                except (KeyError, ValueError) as exc:
                    raise _ApiError(400, "BadRequestException", str(exc)) from exc
            if route == "event_type":
                return dict(self._event_type(int(path.split("/")[3])))
            uid = path.split("/")[3]
            booking = self._state.bookings.get(uid)
            if booking is None:
                raise _ApiError(404, "NotFoundException", f"Booking with uid={uid} was not found")
            now = _iso(datetime.now(UTC))
            if route == "cancel":
                if booking["status"] == "cancelled":
                    raise _ApiError(400, "BadRequestException", "This booking is already cancelled")
                reason = body.get("cancellationReason") if isinstance(body, dict) else None
                booking["status"] = "cancelled"
                if reason is not None:
                    booking["cancellationReason"] = reason
                booking["updatedAt"] = now
                self._state.webhooks.append(("BOOKING_CANCELLED", uid))
            elif route == "reschedule":
                moved = self._reschedule(booking, body)
                self._state.webhooks.append(("BOOKING_RESCHEDULED", moved["uid"]))
                return moved
            elif route in ("confirm", "decline"):
                if booking["status"] != "pending":
                    raise _ApiError(
                        400, "BadRequestException", f"Booking is {booking['status']}, not pending"
                    )
                booking["status"] = "accepted" if route == "confirm" else "rejected"
                if route == "decline" and isinstance(body, dict) and body.get("reason"):
                    booking["cancellationReason"] = body["reason"]
                booking["updatedAt"] = now
            return dict(booking)

    def _reschedule(self, booking: dict[str, Any], body: Any) -> dict[str, Any]:
        """A new booking at the new start; the old one is cancelled and points to it."""
        if booking["status"] in ("cancelled", "rejected"):
            raise _ApiError(400, "BadRequestException", "Can't reschedule a cancelled booking")
        if not isinstance(body, dict) or "start" not in body:
            raise _ApiError(400, "BadRequestException", "start is required")
        attendee = booking["attendees"][0]
        event_type = self._event_type(booking["eventTypeId"])
        new_body: dict[str, Any] = {
            "start": body["start"],
            "eventTypeId": booking["eventTypeId"],
            "attendee": attendee,
            "lengthInMinutes": booking["duration"],
            "bookingFieldsResponses": booking["bookingFieldsResponses"],
            "metadata": booking["metadata"],
        }
        if booking["location"]:
            new_body["location"] = {"type": "attendeePhone", "phone": booking["location"]}
        try:
            created = self._create(new_body, enforce=False)
        except ValueError as exc:
            raise _ApiError(400, "BadRequestException", str(exc)) from exc
        start = _parse_time(str(body["start"]))
        notice = timedelta(minutes=int(event_type["minimumBookingNotice"]))
        if notice and start < datetime.now(UTC) + notice:
            del self._state.bookings[created["uid"]]
            raise _ApiError(400, "BadRequestException", "minimum booking notice not met")
        new = self._state.bookings[created["uid"]]
        new["rescheduledFromUid"] = booking["uid"]
        if body.get("reschedulingReason"):
            new["reschedulingReason"] = body["reschedulingReason"]
        booking["status"] = "cancelled"
        booking["rescheduledToUid"] = new["uid"]
        booking["updatedAt"] = new["createdAt"]
        return dict(new)


class _Server(ThreadingHTTPServer):
    """The stand-in's server: a client that hangs up mid-request (its timeout ran out, its
    process was killed) is an ordinary event under fault injection, not a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _route_of(method: str, path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    if parts == ["v2", "slots"] and method == "GET":
        return "slots"
    if len(parts) == 3 and parts[:2] == ["v2", "event-types"] and method == "GET":
        return "event_type" if parts[2].isdigit() else None
    if parts[:2] != ["v2", "bookings"]:
        return None
    if len(parts) == 2:
        return {"POST": "create", "GET": "list"}.get(method)
    if len(parts) == 3 and method == "GET":
        return "get"
    if (
        len(parts) == 4
        and method == "POST"
        and parts[3]
        in (
            "cancel",
            "reschedule",
            "confirm",
            "decline",
        )
    ):
        return parts[3]
    return None


def _make_handler(standin: CalcomStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm meets the client's delayed ACK and adds ~40 ms to every answer.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if len(raw) < length:
                # The client went away mid-request (killed, say): nothing arrived to answer.
                self.close_connection = True
                return
            route = _route_of(method, split.path) or "unknown"
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            standin._record(
                RecordedRequest(
                    route,
                    method,
                    split.path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
            )
            latency = standin._state.latency
            if latency:
                time.sleep(latency)
            if route == "unknown":
                self._error(404, "NotFoundException", f"Cannot {method} {split.path}")
                return
            try:
                operation = (
                    calcom_contract().check_request(
                        method,
                        split.path,
                        headers=dict(self.headers.items()),
                        query=query,
                        body=body,
                    )
                    if standin.check_contract
                    else calcom_contract().operation(method, split.path)
                )
            except ContractViolation as exc:
                standin._violation(str(exc))
                self._error(400, "BadRequestException", f"contract violation: {exc}")
                return
            if self.headers.get("Authorization") != f"Bearer {standin.api_key}":
                self._error(401, "UnauthorizedException", "Invalid Access Token.")
                return
            gate = standin._state.gates.get(route)
            if gate is not None:
                gate.hold()
            fault = standin._next_fault(route)
            if fault is not None and fault.kind == "latency":
                time.sleep(fault.seconds)
            elif fault is not None and fault.kind == "hang":
                standin._release.wait(fault.seconds)
                self.close_connection = True
                return
            elif fault is not None and fault.kind == "status":
                self._error(fault.status, "InternalServerErrorException", "Injected failure")
                return
            elif fault is not None and fault.kind == "rate_limit":
                reset = fault.seconds
                self._error(
                    429,
                    "ThrottlerException",
                    "ThrottlerException: Too Many Requests",
                    headers={
                        "Retry-After": f"{reset:g}",
                        "X-RateLimit-Limit-Default": "120",
                        "X-RateLimit-Remaining-Default": "0",
                        "X-RateLimit-Reset-Default": f"{reset:g}",
                    },
                )
                return
            try:
                data = standin._handle(route, method, split.path, query, body)
            except _ApiError as exc:
                self._error(exc.status, exc.code, exc.message)
                return
            if fault is not None and fault.kind == "lost_response":
                if fault.hang:
                    standin._release.wait(fault.seconds)
                self.close_connection = True
                return
            if route == "list":
                items, total = data
                take = int(query.get("take", 100))
                skip = int(query.get("skip", 0))
                self._answer(
                    operation,
                    200,
                    {
                        "status": "success",
                        "data": items,
                        "pagination": {
                            "totalItems": total,
                            "remainingItems": max(total - skip - len(items), 0),
                            "returnedItems": len(items),
                            "itemsPerPage": take,
                            "currentPage": skip // take + 1 if take else 1,
                            "totalPages": -(-total // take) if take else 1,
                            "hasNextPage": skip + len(items) < total,
                            "hasPreviousPage": skip > 0,
                        },
                    },
                )
                return
            status = 201 if route in ("create", "reschedule") else 200
            self._answer(operation, status, {"status": "success", "data": data})

        def _answer(self, operation: Operation, status: int, body: dict[str, Any]) -> None:
            """Send a success answer, held to the documented response schema first."""
            try:
                if standin.check_contract:
                    calcom_contract().check_response(operation, status, body)
            except ContractViolation as exc:
                standin._violation(str(exc))
                self._error(500, "ContractViolation", str(exc))
                return
            self._send(status, body)

        def _error(
            self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
        ) -> None:
            body = {
                "status": "error",
                "timestamp": _iso(datetime.now(UTC)),
                "path": self.path,
                "error": {"code": code, "message": message},
            }
            self._send(status, body, headers=headers)

        def _send(
            self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None
        ) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("X-RateLimit-Limit-Default", "120")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

    return Handler
