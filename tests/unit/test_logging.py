"""Logs: readable lines on a terminal, JSON otherwise, at the configured level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bookingguard.api.observability import configure_logging
from bookingguard.settings import LoggingSettings


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _emit() -> None:
    structlog.get_logger("bookingguard.test").info("booked", call_id="c-1")
    logging.getLogger("uvicorn.error").warning("from the standard library")


def test_json_when_not_a_terminal() -> None:
    """With format auto, a pipe or file gets one JSON object per line from both libraries."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(), stream=stream)
    _emit()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("booked", "info"),
        ("from the standard library", "warning"),
    ]
    assert lines[0]["call_id"] == "c-1"
    assert lines[0]["logger"] == "bookingguard.test"


def test_console_lines_on_a_terminal() -> None:
    """With format auto, a terminal gets structlog's coloured console lines, not JSON."""
    stream = Terminal()
    configure_logging(LoggingSettings(), stream=stream)
    _emit()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "booked" in lines[0]
    assert "call_id" in lines[0]
    assert "c-1" in lines[0]
    assert "\x1b[" in lines[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_console_format_chosen_off_a_terminal_has_no_colour() -> None:
    """format console writes readable lines to a file too, without escape codes."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="console"), stream=stream)
    _emit()
    text = stream.getvalue()
    assert "booked" in text
    assert "call_id=c-1" in text
    assert "\x1b[" not in text


def test_json_format_chosen_on_a_terminal() -> None:
    """format json is JSON even on a terminal."""
    stream = Terminal()
    configure_logging(LoggingSettings(format="json"), stream=stream)
    _emit()
    assert json.loads(stream.getvalue().splitlines()[0])["event"] == "booked"


def test_level_filters_both_libraries() -> None:
    """logging.level WARNING drops info lines of structlog and the standard library."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="WARNING", format="json"), stream=stream)
    _emit()
    logging.getLogger("bookingguard.other").info("dropped")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["from the standard library"]


def test_debug_level_lets_debug_through() -> None:
    """logging.level DEBUG keeps debug lines."""
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="DEBUG", format="json"), stream=stream)
    structlog.get_logger("bookingguard.test").debug("detail")
    assert json.loads(stream.getvalue())["level"] == "debug"
