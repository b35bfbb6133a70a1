"""The README's Retell tool definitions are the ones generated from the argument models."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bookingguard.api.routes.retell_args import BookAppointmentArgs
from bookingguard.api.routes.retell_registration import (
    function_tools,
    parameters_schema,
    tools_markdown,
)

README = Path(__file__).resolve().parents[2] / "README.md"
_SECTION = re.compile(
    r"<!-- retell-functions:start -->\n(.*?)<!-- retell-functions:end -->", re.DOTALL
)


def test_readme_shows_the_generated_tool_definitions() -> None:
    """The README's block equals what the generator prints for the example host."""
    match = _SECTION.search(README.read_text(encoding="utf-8"))
    assert match is not None
    assert match.group(1) == tools_markdown("https://bookingguard.example.com")


def test_each_function_is_a_custom_tool_posting_to_its_url() -> None:
    """Four custom tools, each at /retell/functions/<name>, with an object schema."""
    tools = function_tools("https://host/")
    assert [tool["name"] for tool in tools] == [
        "check_availability",
        "book_appointment",
        "reschedule_appointment",
        "cancel_appointment",
    ]
    assert {tool["url"] for tool in tools} == {
        f"https://host/retell/functions/{tool['name']}" for tool in tools
    }
    assert all(tool["parameters"]["type"] == "object" for tool in tools)


def test_the_schema_requires_what_the_model_requires_and_lists_optionals_plainly() -> None:
    """Required fields are the model's; an optional one is its type alone, without null."""
    schema = parameters_schema(BookAppointmentArgs)
    assert schema["required"] == ["time_zone", "start", "name"]
    assert schema["properties"]["email"]["type"] == "string"
    assert "anyOf" not in json.dumps(schema)
