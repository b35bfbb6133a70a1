"""``load_settings``: the settings read, every bad or unknown key named in one error."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bookingguard.errors import ConfigurationError
from bookingguard.settings.model import CONFIG_ENV, ENV_PREFIX, NOT_SETTINGS, Settings

__all__ = ["load_settings"]


def _env_name(location: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in location)


def _field_type(path: list[str]) -> object | None:
    """The annotation of the setting at ``path``, or None when there is no such setting."""
    current: object = Settings
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) is dict:
            return current  # free-form keys (``circuit_breaker.overrides``) end the walk
        else:
            return None
    return current


def _is_structured(annotation: object) -> bool:
    """Whether the environment gives this setting as JSON (a section, a list or a mapping)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    if get_origin(annotation) in (list, dict):
        return True
    return any(_is_structured(argument) for argument in get_args(annotation))


def _environment_problems() -> list[tuple[str, str]]:
    """(dotted key, message) for every prefixed variable that names no setting or is bad JSON.

    pydantic-settings ignores an unknown top-level variable and reports bad JSON in a
    nested one against its section only (``field "api"``); both are caught here first.
    """
    problems = []
    for name, value in sorted(os.environ.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS:
            continue
        path = upper.removeprefix(ENV_PREFIX).lower().split("__")
        key = ".".join(path)
        annotation = _field_type(path)
        if annotation is None:
            problems.append((key, f"{key} ({name}): unknown setting"))
            continue
        if _is_structured(annotation):
            try:
                json.loads(value)
            except ValueError:
                problems.append((key, f"{key} ({name}): not valid JSON (e.g. '[\"…\"]')"))
    return problems


def _invalid(problems: list[tuple[str, str]]) -> ConfigurationError:
    return ConfigurationError(
        "invalid configuration: " + "; ".join(message for _, message in problems),
        key=problems[0][0],
    )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings, turning validation errors into one ``ConfigurationError``.

    The message names each offending key in dotted and environment form and never
    echoes the rejected value (it may be a secret). A key that names no setting, in
    the environment or the TOML file, at the top level or in a section, is an error.
    """
    chosen = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if chosen is not None and not chosen.is_file():
        raise ConfigurationError(f"config file not found: {chosen}", key="config")
    environment = _environment_problems()
    if environment:
        raise _invalid(environment)
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        settings_cls = type("FileSettings", (Settings,), {"toml_file": config_file})
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            location = tuple(part for part in error["loc"] if isinstance(part, str | int))
            key = ".".join(str(part) for part in location)
            message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append((key, f"{key} ({_env_name(location)}): {message}"))
        raise _invalid(problems) from None
    except ValueError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}", key="config") from None
