"""The agent's functions as Retell custom tools, generated from their argument models.

``python -m bookingguard.api.routes.retell_registration https://bookingguard.example.com``
prints the README section's tool definitions (Retell's ``custom`` tool shape: name,
URL, description and the JSON Schema of the parameters), so what an operator pastes
into Retell is what the service parses.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel

from bookingguard.api.routes.retell_args import (
    BookAppointmentArgs,
    CancelAppointmentArgs,
    CheckAvailabilityArgs,
    RescheduleAppointmentArgs,
)

__all__ = ["FUNCTIONS", "function_tools", "parameters_schema", "tools_markdown"]

#: Each function: its argument model and what it tells the model about when to call it.
FUNCTIONS: dict[str, tuple[type[BaseModel], str]] = {
    "check_availability": (
        CheckAvailabilityArgs,
        "Find the first free appointment times, from a day the caller names or from now.",
    ),
    "book_appointment": (
        BookAppointmentArgs,
        "Book the appointment at a time the caller chose, with their name and e-mail or phone.",
    ),
    "reschedule_appointment": (
        RescheduleAppointmentArgs,
        "Move the appointment booked on this call to a new time the caller chose.",
    ),
    "cancel_appointment": (
        CancelAppointmentArgs,
        "Cancel the appointment booked on this call.",
    ),
}


def _plain(node: Any) -> Any:
    """Without titles, and an optional field as its type alone (it is left out of
    ``required``; the model leaves it out rather than sending null)."""
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if not isinstance(node, dict):
        return node
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        (kept,) = [option for option in options if option != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        node = kept | rest
    return {key: _plain(value) for key, value in node.items() if key != "title"}


def parameters_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model``'s fields, as Retell's ``parameters`` takes it."""
    schema = _plain(model.model_json_schema())
    parameters: dict[str, Any] = {"type": "object", "properties": schema["properties"]}
    if schema.get("required"):
        parameters["required"] = schema["required"]
    return parameters


def function_tools(base_url: str) -> list[dict[str, Any]]:
    """Retell custom tools for the four functions of the service at ``base_url``."""
    return [
        {
            "type": "custom",
            "name": name,
            "description": description,
            "url": f"{base_url.rstrip('/')}/retell/functions/{name}",
            "method": "POST",
            "args_at_root": False,
            "speak_during_execution": True,
            "speak_after_execution": True,
            "parameters": parameters_schema(model),
        }
        for name, (model, description) in FUNCTIONS.items()
    ]


def tools_markdown(base_url: str) -> str:
    """The README's tool definitions: one JSON block per function."""
    blocks = [
        f"`{tool['name']}`:\n\n```json\n{json.dumps(tool, indent=2)}\n```\n"
        for tool in function_tools(base_url)
    ]
    return "\n".join(blocks)


if __name__ == "__main__":
    sys.stdout.write(tools_markdown(sys.argv[1] if len(sys.argv) > 1 else "https://HOST"))
