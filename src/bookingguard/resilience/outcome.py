"""The three outcomes of a guarded call and the default way to tell them apart."""

from __future__ import annotations

import enum
from collections.abc import Callable

import httpx

__all__ = ["Classifier", "Outcome", "classify_exception"]


class Outcome(enum.StrEnum):
    """What a call says about the dependency's health.

    ``IGNORED`` is the caller's problem (a Cal.com 4xx such as "slot taken"): it
    neither counts as a failure nor resets the failure count, unlike pybreaker,
    which treats every non-failure as a success.
    """

    FAILURE = "failure"
    SUCCESS = "success"
    IGNORED = "ignored"


#: Decides the outcome of a call that raised.
Classifier = Callable[[BaseException], Outcome]


def _status_code(exc: BaseException) -> int | None:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def classify_exception(exc: BaseException) -> Outcome:
    """The default classifier.

    An exception with a ``breaker_outcome`` attribute decides itself. An HTTP
    status (``status_code`` attribute, or an ``httpx.HTTPStatusError``) of 429 or
    5xx is a failure and any other 4xx is ignored. Timeouts, connection errors and
    everything else are failures.
    """
    declared = getattr(exc, "breaker_outcome", None)
    if isinstance(declared, Outcome):
        return declared
    status = _status_code(exc)
    if status is not None and 400 <= status < 500 and status != 429:
        return Outcome.IGNORED
    return Outcome.FAILURE
