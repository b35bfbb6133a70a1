"""The campaign's printed result: operations, faults per kind, violations per invariant."""

from __future__ import annotations

from bench.faults_campaign.campaign import CampaignResult
from bench.faults_campaign.checker import INVARIANTS
from bench.faults_campaign.schedule import CALCOM_FAULT_KINDS, INFRA_FAULT_KINDS

__all__ = ["render"]

_CALCOM_NAMES = {
    "status": "Cal.com 5xx",
    "rate_limit": "Cal.com 429 with reset",
    "hang": "Cal.com hang past the timeout",
    "lost_response": "Cal.com response lost after the change",
    "latency": "Cal.com slow response",
    "replica_kill": "kill -9 of a replica (+ restart)",
    "redis_kill": "Redis killed (+ restart)",
    "pg_terminate": "pg_terminate_backend of every client",
    "pg_restart": "PostgreSQL restart (fast stop + start)",
}


def _spread(found: list[str], count: int) -> list[str]:
    """``count`` examples, taking in turn from each kind (a violation's ``[kind]`` tag)."""
    kinds: dict[str, list[str]] = {}
    for item in found:
        kinds.setdefault(item.split("]", 1)[0], []).append(item)
    chosen: list[str] = []
    while len(chosen) < min(count, len(found)):
        for items in kinds.values():
            if items and len(chosen) < count:
                chosen.append(items.pop(0))
    return chosen


def render(result: CampaignResult, *, examples: int = 5) -> str:
    """The result as text, a few examples of each invariant's violations."""
    config = result.config
    lines = [
        f"fault campaign: seed {config.seed}, {result.operations} operations "
        f"({result.answered} answered), {result.conversations} conversations, "
        f"{result.elapsed_seconds:.1f} s",
        "",
        f"{'fault':<42}{'injected':>9}",
    ]
    for kind in (*CALCOM_FAULT_KINDS, *INFRA_FAULT_KINDS):
        short = "  < minimum" if kind in result.shortfall else ""
        lines.append(f"  {_CALCOM_NAMES[kind]:<40}{result.faults[kind]:>9}{short}")
    lines += ["", f"{'invariant':<62}{'examined':>9}{'violations':>11}"]
    for name, description in INVARIANTS.items():
        found = result.verdict.violations[name]
        examined = result.verdict.examined[name]
        lines.append(f"  {name} {description:<57}{examined:>9}{len(found):>11}")
        lines += [f"      e.g. {example}" for example in _spread(found, examples)]
    lines += [
        "",
        f"Cal.com spec violations: {len(result.spec_violations)}",
        *(f"      e.g. {v.splitlines()[0]}" for v in result.spec_violations[:examples]),
        "5xx answers: "
        + (", ".join(f"{name}: {n}" for name, n in sorted(result.server_errors.items())) or "none"),
        "after the faults: "
        + ", ".join(f"{name} exit {code}" for name, code in result.commands.items()),
        f"verdict: {'PASS' if result.ok else 'FAIL'} ({result.verdict.total} violations)",
    ]
    if result.directory is not None:
        lines.append(f"logs and data kept in {result.directory}")
    return "\n".join(lines)
