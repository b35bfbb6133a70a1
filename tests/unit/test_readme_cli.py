"""The README's CLI stays true: every ``bookingguard …`` command and option it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bookingguard.cli.app import app

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^[ \t]*```(?P<info>[^\n]*)\n(?P<body>.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
SPAN = re.compile(r"`([^`\n]+)`")
# The command word: at the start, after a space, or as a path to the installed script.
INVOCATION = re.compile(r"(?:^|\s|bin/)bookingguard((?:\s+[^\s#]+)+)")


def documented_invocations(text: str) -> list[list[str]]:
    """The words after ``bookingguard`` in every code span and shell code block."""
    snippets: list[str] = []
    for block in FENCE.finditer(text):
        if block["info"].strip() in SHELL_BLOCKS:
            snippets.extend(line.split("#", 1)[0] for line in block["body"].splitlines())
    snippets.extend(SPAN.findall(FENCE.sub("", text)))
    invocations = []
    for snippet in snippets:
        for match in INVOCATION.finditer(snippet.replace("\\|", "|")):
            invocations.append(match.group(1).split())
    return invocations


def _word(token: str) -> str:
    """A token without the README's optional brackets and ellipses: ``[--all]`` → ``--all``."""
    return token.strip("[]…").rstrip(".,;:")


def unknown_names(command: object, tokens: list[str], path: str = "bookingguard") -> list[str]:
    """Names in ``tokens`` that the click command tree under ``command`` does not have.

    ``a|b`` means either; words that are not options after a leaf command are its
    arguments or option values (``NAME``, ``read|operate``).
    """
    options = {
        name
        for param in getattr(command, "params", [])
        for name in (*param.opts, *param.secondary_opts)
    } | {"--help"}
    subcommands: dict[str, object] = getattr(command, "commands", {})
    missing = []
    for index, token in enumerate(tokens):
        word = _word(token)
        if not word:
            continue
        if word.startswith("-"):
            missing.extend(
                f"{path} {name}" for name in word.split("=")[0].split("|") if name not in options
            )
            continue
        if not subcommands:
            continue
        for name in word.split("|"):
            if name not in subcommands:
                missing.append(f"{path} {name}")
            else:
                missing.extend(
                    unknown_names(subcommands[name], tokens[index + 1 :], f"{path} {name}")
                )
        break
    return missing


def command_paths(invocation: list[str], command: object) -> list[list[str]]:
    """The command paths an invocation names (``breaker list|show`` names two)."""
    for index, token in enumerate(invocation):
        word = _word(token)
        subcommands: dict[str, object] = getattr(command, "commands", {})
        if not word or word.startswith("-") or not subcommands:
            continue
        return [
            [name, *rest]
            for name in word.split("|")
            if name in subcommands
            for rest in command_paths(invocation[index + 1 :], subcommands[name])
        ]
    return [[]]


def test_readme_names_commands() -> None:
    """The extraction finds the README's CLI table and shell examples (the test is not empty)."""
    invocations = documented_invocations(README.read_text())
    assert ["check", "--all"] in invocations
    assert ["db", "triggers", "disable"] in invocations
    assert len(invocations) >= 15


def test_every_documented_command_and_option_exists() -> None:
    """Each command and option the README names after ``bookingguard`` is in the Typer app."""
    root = typer.main.get_command(app)
    missing = [
        name
        for invocation in documented_invocations(README.read_text())
        for name in unknown_names(root, invocation)
    ]
    assert missing == []


def test_the_checker_catches_a_missing_option() -> None:
    """The tree walk reports an option or command that the app lacks."""
    root = typer.main.get_command(app)
    assert unknown_names(root, ["report", "[--xml]"]) == ["bookingguard report --xml"]
    assert unknown_names(root, ["breaker", "list|purge"]) == ["bookingguard breaker purge"]


@pytest.mark.parametrize(
    "path",
    sorted(
        {
            " ".join(path)
            for invocation in documented_invocations(README.read_text())
            for path in command_paths(invocation, typer.main.get_command(app))
        }
    ),
)
def test_every_documented_command_runs(path: str) -> None:
    """``bookingguard PATH --help`` runs and exits 0 for every command path in the README."""
    result = CliRunner().invoke(app, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: bookingguard" in result.stdout
