"""What the OpenAPI document says beyond the routes' signatures: raw bodies and links.

The webhooks and the agent's functions read their body raw (the signature covers
the exact bytes), so FastAPI sees no body parameter; ``document_raw_bodies``
states the JSON they take, from the models that check it. ``document_links``
adds OpenAPI links: which answer names what the next call acts on (a listed
review item is shown, claimed, resolved; a listed alert acknowledged, resolved; a
listed circuit shown, reset, forced open; a Retell call's functions follow its
``call_started``). Clients and schemathesis' state machine follow them to reach
real resources instead of guessing ids.

Each installer wraps ``app.openapi``; the document is built once, on first use,
when every route is in place. A link or body naming an operation the app does not
have fails then, loudly, rather than drifting out of date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bookingguard.api.bounds import NO_NUL
from bookingguard.api.routes.calcom import CalcomDelivery
from bookingguard.api.routes.retell import CALL_EVENTS, RetellWebhook
from bookingguard.api.routes.retell_args import (
    BookAppointmentArgs,
    CancelAppointmentArgs,
    CheckAvailabilityArgs,
    RescheduleAppointmentArgs,
)
from bookingguard.calcom.webhooks import HANDLED_TRIGGERS

__all__ = ["LINKS", "Link", "document_links", "document_raw_bodies"]

_SCHEMAS = "#/components/schemas/{model}"
_FUNCTIONS: dict[str, type[BaseModel]] = {
    "check_availability": CheckAvailabilityArgs,
    "book_appointment": BookAppointmentArgs,
    "reschedule_appointment": RescheduleAppointmentArgs,
    "cancel_appointment": CancelAppointmentArgs,
}


@dataclass(frozen=True)
class Link:
    """One OpenAPI link: after ``source`` answers ``status``, ``target`` may follow.

    Operations are ``"METHOD /path"``; ``parameters`` and ``request_body`` hold
    runtime expressions (``$response.body#/items/0/id``) as OpenAPI writes them.
    """

    name: str
    source: str
    status: int
    target: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    request_body: Any = None


def _call_of_request() -> dict[str, Any]:
    return {"call": {"call_id": "$request.body#/call/call_id"}}


_REVIEW_ITEM = "/api/v1/review-queue/{item_id}"
_ALERT = "/api/v1/alerts/{alert_id}"
_CIRCUIT = "/api/v1/circuit-breakers/{key}"
_FUNCTION = "POST /retell/functions/"

#: Every link the served app declares.
LINKS: tuple[Link, ...] = (
    *(
        Link(
            f"{action}Item",
            "GET /api/v1/review-queue",
            200,
            target,
            {"item_id": "$response.body#/items/0/id"},
        )
        for action, target in (
            ("Show", f"GET {_REVIEW_ITEM}"),
            ("Claim", f"POST {_REVIEW_ITEM}/claim"),
            ("Resolve", f"POST {_REVIEW_ITEM}/resolve"),
            ("Dismiss", f"POST {_REVIEW_ITEM}/dismiss"),
        )
    ),
    *(
        Link(
            f"{action}Claimed",
            f"POST {_REVIEW_ITEM}/claim",
            200,
            target,
            {"item_id": "$response.body#/id"},
        )
        for action, target in (
            ("Resolve", f"POST {_REVIEW_ITEM}/resolve"),
            ("Dismiss", f"POST {_REVIEW_ITEM}/dismiss"),
            ("Show", f"GET {_REVIEW_ITEM}"),
        )
    ),
    Link("ListAlertsFound", "POST /api/v1/consistency/runs", 200, "GET /api/v1/alerts"),
    *(
        Link(
            f"{action}Alert",
            "GET /api/v1/alerts",
            200,
            target,
            {"alert_id": "$response.body#/items/0/id"},
        )
        for action, target in (
            ("Acknowledge", f"POST {_ALERT}/ack"),
            ("Resolve", f"POST {_ALERT}/resolve"),
        )
    ),
    Link(
        "ResolveAcknowledged",
        f"POST {_ALERT}/ack",
        200,
        f"POST {_ALERT}/resolve",
        {"alert_id": "$response.body#/id"},
    ),
    Link("ListSilences", "POST /api/v1/silences", 201, "GET /api/v1/silences"),
    *(
        Link(
            f"{action}Circuit",
            "GET /api/v1/circuit-breakers",
            200,
            target,
            {"key": "$response.body#/0/circuit_key"},
        )
        for action, target in (
            ("Show", f"GET {_CIRCUIT}"),
            ("Reset", f"POST {_CIRCUIT}/reset"),
            ("Open", f"POST {_CIRCUIT}/open"),
        )
    ),
    *(
        Link(
            f"Show{action}",
            f"POST {_CIRCUIT}/{verb}",
            200,
            f"GET {_CIRCUIT}",
            {"key": "$response.body#/circuit_key"},
        )
        for action, verb in (("Reset", "reset"), ("Opened", "open"))
    ),
    Link(
        "ResetOpened",
        f"POST {_CIRCUIT}/open",
        200,
        f"POST {_CIRCUIT}/reset",
        {"key": "$response.body#/circuit_key"},
    ),
    *(
        Link(
            f"{function.title().replace('_', '')}ForCall",
            "POST /webhooks/retell",
            204,
            f"{_FUNCTION}{function}",
            request_body=_call_of_request(),
        )
        for function in _FUNCTIONS
    ),
    Link(
        "BookOfferedSlot",
        f"{_FUNCTION}check_availability",
        200,
        f"{_FUNCTION}book_appointment",
        request_body={
            "call": {"call_id": "$request.body#/call/call_id"},
            "args": {
                "start": "$response.body#/slots/0",
                "time_zone": "$request.body#/args/time_zone",
            },
        },
    ),
    *(
        Link(
            f"{function.title().replace('_', '')}Booked",
            f"{_FUNCTION}book_appointment",
            200,
            f"{_FUNCTION}{function}",
            request_body=_call_of_request(),
        )
        for function in ("book_appointment", "reschedule_appointment", "cancel_appointment")
    ),
    *(
        Link(
            f"{function.title().replace('_', '')}Rescheduled",
            f"{_FUNCTION}reschedule_appointment",
            200,
            f"{_FUNCTION}{function}",
            request_body=_call_of_request(),
        )
        for function in ("reschedule_appointment", "cancel_appointment")
    ),
)


def _wrap(app: FastAPI, change: Callable[[dict[str, Any]], None]) -> None:
    """Have ``app.openapi`` apply ``change`` to the document it builds, once."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            change(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operation(document: dict[str, Any], operation: str) -> dict[str, Any]:
    method, _, path = operation.partition(" ")
    try:
        found: dict[str, Any] = document["paths"][path][method.lower()]
    except KeyError:
        raise LookupError(f"the OpenAPI document has no operation {operation}") from None
    return found


def _function_body(args: str) -> dict[str, Any]:
    """Retell's full body (``name``, ``call``, ``args``), or the arguments at root."""
    reference = {"$ref": _SCHEMAS.format(model=args)}
    call = {
        "type": "object",
        "required": ["call_id"],
        "properties": {
            "call_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_NUL},
            "agent_id": {"type": "string"},
        },
    }
    full = {
        "type": "object",
        "required": ["call", "args"],
        "properties": {"name": {"type": "string"}, "call": call, "args": reference},
    }
    return {"anyOf": [full, reference]}


def _or_ignored(model: type[BaseModel], key: str, handled: tuple[str, ...]) -> dict[str, Any]:
    """``model`` for a handled event; any other event name is acknowledged (204) unread."""
    ignored = {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "string", "not": {"enum": list(handled)}}},
    }
    return {"anyOf": [{"$ref": _SCHEMAS.format(model=model.__name__)}, ignored]}


def document_raw_bodies(app: FastAPI) -> None:
    """State the JSON bodies of the webhooks and the agent's functions in ``app``'s schema."""
    models: list[type[BaseModel]] = [RetellWebhook, CalcomDelivery, *_FUNCTIONS.values()]

    def change(document: dict[str, Any]) -> None:
        _, definitions = models_json_schema(
            [(model, "validation") for model in models], ref_template=_SCHEMAS
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in definitions.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        bodies = {
            "POST /webhooks/retell": _or_ignored(RetellWebhook, "event", CALL_EVENTS),
            "POST /webhooks/calcom": _or_ignored(CalcomDelivery, "triggerEvent", HANDLED_TRIGGERS),
            **{
                f"{_FUNCTION}{function}": _function_body(model.__name__)
                for function, model in _FUNCTIONS.items()
            },
        }
        for operation, schema in bodies.items():
            _operation(document, operation)["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }

    _wrap(app, change)


def document_links(app: FastAPI, links: tuple[Link, ...] = LINKS) -> None:
    """Declare ``links`` on the responses of ``app``'s schema."""

    def change(document: dict[str, Any]) -> None:
        for link in links:
            source = _operation(document, link.source)
            target = _operation(document, link.target)
            response = source["responses"][str(link.status)]
            definition: dict[str, Any] = {"operationId": target["operationId"]}
            if link.parameters:
                definition["parameters"] = dict(link.parameters)
            if link.request_body is not None:
                definition["requestBody"] = link.request_body
            response.setdefault("links", {})[link.name] = definition

    _wrap(app, change)
