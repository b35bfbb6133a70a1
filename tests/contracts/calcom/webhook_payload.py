"""Cal.com webhook deliveries held to the documented payload (``webhook_payload.json``).

Cal.com's OpenAPI document lists the triggers (``webhook_triggers.json``) but no
schema of a delivery; ``webhook_payload.json`` is ours, written from Cal.com's webhook
documentation, with its source and limits noted in the file.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

from tests.contracts.calcom.contract import ContractViolation

__all__ = ["check_webhook"]

_HERE = Path(__file__).parent


@cache
def _validator() -> Any:
    schema = json.loads((_HERE / "webhook_payload.json").read_text())
    schema.pop("_source")
    triggers = json.loads((_HERE / "webhook_triggers.json").read_text())["triggers_enum"]
    schema["properties"]["triggerEvent"]["enum"] = triggers
    return jsonschema_rs.Draft7Validator(schema)


def check_webhook(body: bytes) -> None:
    """Raise ``ContractViolation`` unless ``body`` is a delivery as Cal.com documents it."""
    document = json.loads(body)
    errors = [
        f"{'/'.join(str(part) for part in error.instance_path) or '(root)'}: {error.message}"
        for error in _validator().iter_errors(document)
    ]
    if errors:
        raise ContractViolation("webhook delivery: " + "; ".join(errors))
