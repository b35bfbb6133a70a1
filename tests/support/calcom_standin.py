"""A Cal.com v2 stand-in: a real HTTP server on loopback with fault injection.

It implements what bookingguard uses of the bookings API (create, get, list with
filters and take/skip, cancel) with Cal.com's envelopes, error envelope and
rate-limit headers, and checks the Bearer key. Faults are queued per route:
an HTTP error status, a 429 with reset headers, latency, a hang past the
client's timeout, and "booked but the response was lost" (the booking is made,
then the connection is dropped or left hanging).

    with CalcomStandin() as calcom:
        calcom.fail_next("create", status=500, times=3)
        client = CalcomClient(base_url=calcom.base_url, api_key=calcom.api_key)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["CalcomStandin", "Fault", "RecordedRequest", "sign_calcom_webhook"]

Route = Literal["create", "get", "list", "cancel"]
FaultKind = Literal["status", "rate_limit", "latency", "hang", "lost_response"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for the next request on a route."""

    kind: FaultKind
    status: int = 500
    seconds: float = 0.0
    #: For ``lost_response``: drop the connection (False) or hang ``seconds`` (True).
    hang: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """A request the stand-in received, for assertions."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class _State:
    bookings: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: dict[str, deque[Fault]] = field(default_factory=dict)
    latency: float = 0.0


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    ) -> None:
        self.api_key = api_key
        self.duration = timedelta(minutes=duration_minutes)
        self.reject_double_booking = reject_double_booking
        self._state = _State()
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="calcom-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

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

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` to every answer from now on."""
        with self._lock:
            self._state.latency = seconds

    # -- inspection ------------------------------------------------------------

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
                }
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
        attendees = booking["attendees"]
        payload = {
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
        return json.dumps(payload).encode()

    # -- request handling (called from the server's threads) -------------------

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            queue = self._state.faults.get(route)
            return queue.popleft() if queue else None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._state.requests.append(request)

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        start = _parse_time(str(body["start"]))
        event_type_id = int(body["eventTypeId"])
        if self.reject_double_booking:
            for other in self._state.bookings.values():
                if (
                    other["eventTypeId"] == event_type_id
                    and other["start"] == _iso(start)
                    and other["status"] != "cancelled"
                ):
                    raise _ApiError(
                        400,
                        "BadRequestException",
                        "User either already has booking at this time or is not available",
                    )
        attendee = dict(body["attendee"])
        now = _iso(datetime.now(UTC))
        booking = {
            "id": next(self._ids),
            "uid": uuid.uuid4().hex[:22],
            "title": f"Appointment with {attendee.get('name', '')}",
            "status": "accepted",
            "start": _iso(start),
            "end": _iso(start + self.duration),
            "duration": int(self.duration.total_seconds() // 60),
            "eventTypeId": event_type_id,
            "eventType": {"id": event_type_id, "slug": f"event-{event_type_id}"},
            "attendees": [
                {
                    "name": attendee.get("name", ""),
                    "email": attendee.get("email"),
                    "timeZone": attendee.get("timeZone", "UTC"),
                    "phoneNumber": attendee.get("phoneNumber"),
                    "language": attendee.get("language", "en"),
                    "absent": False,
                }
            ],
            "metadata": {str(k): str(v) for k, v in dict(body.get("metadata") or {}).items()},
            "createdAt": now,
            "updatedAt": now,
        }
        self._state.bookings[booking["uid"]] = booking
        return dict(booking)

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
                    return self._create(body)
                except (TypeError, ValueError) as exc:
                    raise _ApiError(400, "BadRequestException", str(exc)) from exc
            if route == "list":
                items, total = self._list(query)
                return items, total
            uid = path.split("/")[3]
            booking = self._state.bookings.get(uid)
            if booking is None:
                raise _ApiError(404, "NotFoundException", f"Booking with uid={uid} was not found")
            if route == "cancel":
                if booking["status"] == "cancelled":
                    raise _ApiError(400, "BadRequestException", "This booking is already cancelled")
                reason = body.get("cancellationReason") if isinstance(body, dict) else None
                booking["status"] = "cancelled"
                booking["cancellationReason"] = reason
                booking["updatedAt"] = _iso(datetime.now(UTC))
            return dict(booking)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _route_of(method: str, path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] != ["v2", "bookings"]:
        return None
    if len(parts) == 2:
        return {"POST": "create", "GET": "list"}.get(method)
    if len(parts) == 3 and method == "GET":
        return "get"
    if len(parts) == 4 and parts[3] == "cancel" and method == "POST":
        return "cancel"
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
            if self.headers.get("Authorization") != f"Bearer {standin.api_key}":
                self._error(401, "UnauthorizedException", "Invalid Access Token.")
                return
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
                self._send(
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
            self._send(201 if route == "create" else 200, {"status": "success", "data": data})

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
