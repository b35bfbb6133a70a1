"""Cal.com's published v2 spec as a validator of requests and responses.

The excerpts in this directory are OpenAPI 3.0; ``_as_json_schema`` turns them into
JSON Schema (draft 4) the way the README of this directory describes, and
``jsonschema_rs`` validates against them, resolving ``#/components/schemas/…``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

__all__ = ["CalcomContract", "ContractViolation", "Operation", "calcom_contract"]

_HERE = Path(__file__).parent
_ONLY_VALUE = re.compile(r"only allowed value for type is `([^`]+)`", re.IGNORECASE)
_METHODS = ("get", "post", "put", "patch", "delete")


class ContractViolation(AssertionError):
    """A request or response that the published spec does not allow."""


@dataclass(frozen=True)
class Operation:
    """One documented operation: its path template, the version it is published for."""

    method: str
    template: str
    version: str
    parameters: tuple[dict[str, Any], ...]
    request_schema: dict[str, Any] | None
    responses: dict[str, dict[str, Any]]

    def matches(self, method: str, path: str) -> bool:
        if method.lower() != self.method:
            return False
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.template))
        return re.fullmatch(pattern, path) is not None


def _closed(node: Any) -> Any:
    """Every object schema with listed properties admits no others (for what we send)."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _closed(value) for key, value in node.items()}
    if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
        result["additionalProperties"] = False
    return result


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: ``nullable``, and what the spec says in prose.

    - ``nullable: true`` admits ``null``.
    - A ``type`` property described as "only allowed value for type is `x`" is ``x``
      exactly; a default booking field's ``slug`` is its documented default. Without
      these the spec's ``oneOf`` lists (19 booking fields, 6 locations) match several
      branches for every value and no document would validate.
    - A property typed ``object`` whose default or example is a boolean (``isDefault``:
      "always true/false") is a boolean.
    """
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {
        key: _as_json_schema(value)
        for key, value in node.items()
        if key not in ("nullable", "example", "deprecated")
    }
    literal = node.get("default", node.get("example"))
    if node.get("type") == "object" and isinstance(literal, bool):
        result = {"type": "boolean"}
    properties = result.get("properties")
    if isinstance(properties, dict):
        kind = properties.get("type")
        if isinstance(kind, dict):
            found = _ONLY_VALUE.search(str(kind.get("description", "")))
            if found:
                properties["type"] = {**kind, "enum": [found.group(1)]}
        slug = properties.get("slug")
        default_field = isinstance(properties.get("isDefault"), dict) and properties[
            "isDefault"
        ].get("enum") != [False]
        if isinstance(slug, dict) and "default" in slug and default_field:
            properties["slug"] = {**slug, "enum": [slug["default"]]}
    if node.get("nullable") is True:
        return {"anyOf": [result, {"type": "null"}]}
    return result


class CalcomContract:
    """Validates what the client sends and what the stand-in answers against the spec."""

    def __init__(self, paths: Mapping[str, Any], schemas: Mapping[str, Any]) -> None:
        converted = _as_json_schema(dict(schemas))
        self._components = {"schemas": converted}
        self._closed_components = {"schemas": _closed(converted)}
        self.operations: list[Operation] = []
        for template, item in paths.items():
            for method in _METHODS:
                op = item.get(method)
                if op is None:
                    continue
                params = tuple(op.get("parameters", []))
                version = next(
                    p["schema"]["default"]
                    for p in params
                    if p["in"] == "header" and p["name"] == "cal-api-version"
                )
                body = op.get("requestBody", {}).get("content", {}).get("application/json")
                self.operations.append(
                    Operation(
                        method=method,
                        template=template,
                        version=version,
                        parameters=params,
                        request_schema=body["schema"] if body else None,
                        responses=op.get("responses", {}),
                    )
                )

    def operation(self, method: str, path: str) -> Operation:
        for op in self.operations:
            if op.matches(method, path):
                return op
        raise ContractViolation(f"{method} {path} is not a documented operation")

    def check_request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: Any,
    ) -> Operation:
        """The operation the request is for; ``ContractViolation`` if the spec refuses it."""
        op = self.operation(method, path)
        lowered = {k.lower(): v for k, v in headers.items()}
        sent = lowered.get("cal-api-version")
        if sent != op.version:
            raise ContractViolation(
                f"{method} {path}: cal-api-version {sent!r}, the spec documents {op.version!r}"
            )
        known = {p["name"] for p in op.parameters if p["in"] == "query"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise ContractViolation(f"{method} {path}: undocumented query parameter(s) {unknown}")
        for param in op.parameters:
            name, where = param["name"], param["in"]
            source = lowered if where == "header" else query if where == "query" else None
            if source is None:
                continue
            key = name.lower() if where == "header" else name
            if key not in source:
                if param.get("required"):
                    raise ContractViolation(f"{method} {path}: {where} {name!r} is required")
                continue
            if where == "query":
                self._validate(param.get("schema", {}), _query_value(param, source[key]), name)
        if op.request_schema is None:
            if body not in (None, {}):
                raise ContractViolation(f"{method} {path}: the spec documents no body")
        elif body is None:
            raise ContractViolation(f"{method} {path}: a JSON body is required")
        else:
            self._validate(
                _option_one(op.request_schema), body, f"{method} {path} body", closed=True
            )
        return op

    def check_response(self, op: Operation, status: int, body: Any) -> None:
        """A documented success answer must match its schema (errors are not published)."""
        if status >= 400:
            return
        response = op.responses.get(str(status))
        if response is None:
            raise ContractViolation(
                f"{op.method.upper()} {op.template}: status {status} undocumented"
            )
        schema = response["content"]["application/json"]["schema"]
        if op.template == "/v2/slots":
            # The spec's slots schema describes the date → slots map, the envelope's data.
            if not isinstance(body, dict) or body.get("status") != "success":
                raise ContractViolation("GET /v2/slots: no success envelope")
            body = body.get("data")
        self._validate(schema, body, f"{op.method.upper()} {op.template} {status} answer")

    def validate_schema(self, name: str, instance: Any) -> None:
        """``instance`` against ``#/components/schemas/<name>``."""
        self._validate({"$ref": f"#/components/schemas/{name}"}, instance, name)

    def _validate(
        self, schema: Mapping[str, Any], instance: Any, what: str, *, closed: bool = False
    ) -> None:
        components = self._closed_components if closed else self._components
        document = {**_as_json_schema(dict(schema)), "components": components}
        validator = jsonschema_rs.Draft4Validator(document)
        errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(instance)]
        if errors:
            raise ContractViolation(f"{what}: " + "; ".join(errors[:5]))


def _option_one(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """A body documented as ``oneOf`` options is held to Option 1, the regular booking's.

    The spec's own ``oneOf`` cannot be met: the recurring create (Option 3) requires
    the same fields as Option 1 and so accepts every Option 1 body too.
    """
    options = schema.get("oneOf")
    return options[0] if isinstance(options, list) and options else schema


def _query_value(param: Mapping[str, Any], raw: str) -> Any:
    schema = param.get("schema", {})
    if schema.get("type") == "array":
        return [item for item in raw.split(",") if item]
    if schema.get("type") == "number":
        try:
            return float(raw)
        except ValueError:
            return raw
    return raw


@cache
def calcom_contract() -> CalcomContract:
    """The contract from the copied excerpts, read once per process."""

    def load(name: str) -> Any:
        return json.loads((_HERE / name).read_text())

    supplement = load("schemas_supplement.json")["schemas"]
    schemas = {**load("schemas.json"), **supplement}
    event_type = schemas["EventTypeOutput_2024_06_14"]["properties"]["locations"]["items"]
    event_type["oneOf"] = [
        *event_type["oneOf"],
        *({"$ref": f"#/components/schemas/{name}"} for name in supplement),
    ]
    return CalcomContract(load("paths.json"), schemas)
