"""The README stays true: its configuration table lists every setting with default and env name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bookingguard.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None or value == "":
        return "unset"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def settings_rows(
    model: type[BaseModel] = Settings, prefix: str = ""
) -> list[tuple[str, str, str]]:
    """(dotted key, default, environment variable) for every leaf setting, in declared order."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        key = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(settings_rows(annotation, f"{key}."))
            continue
        env = ENV_PREFIX + key.upper().replace(".", "__")
        rows.append((f"`{key}`", _default(field), f"`{env}`"))
    return rows


def test_readme_configuration_table_lists_every_setting() -> None:
    """Each setting appears in the README as one row: key, default, environment name."""
    text = README.read_text()
    missing = [row for row in settings_rows() if "| " + " | ".join(row) + " |" not in text]
    assert missing == []
