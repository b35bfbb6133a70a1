"""Packaging: pyproject declares what src imports; the locks split run time from development."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "bookingguard"
#: Declared runtime dependencies that the code uses without importing them by name.
USED_WITHOUT_IMPORT = {
    "httptools": "uvicorn's HTTP parser, picked up by uvicorn itself",
    "uvloop": "uvicorn's event loop, picked up by uvicorn itself",
    "jinja2": "starlette's Jinja2Templates renders the dashboard with it",
    "python-multipart": "FastAPI parses the dashboard's form posts with it",
    "greenlet": "SQLAlchemy's asyncio layer runs on it",
}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement or a lock line."""
    bare = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _runtime() -> set[str]:
    return {_name(line) for line in _project()["dependencies"]}  # type: ignore[attr-defined]


def _development() -> set[str]:
    return {_name(line) for line in _project()["optional-dependencies"]["dev"]}  # type: ignore[index]


def _pins(lock: str) -> set[str]:
    lines = (ROOT / lock).read_text().splitlines()
    return {_name(line) for line in lines if line and not line.startswith(("#", "-r "))}


def _imported_distributions() -> set[str]:
    """The distributions that provide the third-party modules src/ imports."""
    providers = packages_distributions()
    modules: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"bookingguard"}
    return {_name(dist) for module in third_party for dist in providers.get(module, [module])}


def test_every_imported_distribution_is_a_declared_runtime_dependency() -> None:
    """A module src/ imports comes from a package pyproject declares for run time."""
    assert _imported_distributions() - _runtime() == set()


def test_every_runtime_dependency_is_used() -> None:
    """pyproject declares nothing for run time that the code neither imports nor relies on."""
    unused = _runtime() - _imported_distributions() - set(USED_WITHOUT_IMPORT)
    assert unused == set()


def test_runtime_lock_pins_the_runtime_and_nothing_of_development() -> None:
    """requirements.lock pins every runtime dependency and no development-only package."""
    pins = _pins("requirements.lock")
    assert _runtime() - pins == set()
    assert _development() & pins == set()


def test_development_lock_builds_on_the_runtime_lock() -> None:
    """requirements-dev.lock includes the runtime lock and pins every development dependency."""
    text = (ROOT / "requirements-dev.lock").read_text()
    assert "-r requirements.lock" in text.splitlines()
    assert _development() - _pins("requirements-dev.lock") == set()
    assert _pins("requirements.lock") & _pins("requirements-dev.lock") == set()
