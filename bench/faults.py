"""Fault campaign: prove that nothing is lost or doubled while everything fails.

Starts its own PostgreSQL (initdb in a temporary directory), Redis, Cal.com
stand-in and two replicas of ``bookingguard serve --workers 2``, drives agent
conversations (availability, booking with Retell's retries, reschedule, cancel) and
Retell and Cal.com webhooks at both replicas, and injects faults on a schedule
drawn from the seed: Cal.com 5xx, 429 with reset headers, hangs past the timeout,
responses lost after the booking, slow responses; ``kill -9`` of a replica, Redis
killed, ``pg_terminate_backend`` of every connection, a PostgreSQL restart. Then it
checks six invariants (``bench/faults_campaign/checker.py``) against the answers,
the stand-in's ledger, the database and ``/metrics``, prints the table and exits 1
on any violation (or when a fault kind was injected fewer than --min-faults times).

    PYTHONPATH=src .venv/bin/python bench/faults.py --seed 1 --operations 5000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.faults_campaign import CampaignConfig, render, run_campaign


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--operations", type=int, default=5000)
    parser.add_argument(
        "--infra-faults", type=int, default=None, help="of each kind (default 55 per 5000 ops)"
    )
    parser.add_argument("--calcom-rate", type=float, default=0.25, help="share of Cal.com requests")
    parser.add_argument("--concurrency", type=int, default=6, help="conversations at once")
    parser.add_argument("--min-faults", type=int, default=None, help="default 50 at 5000 ops")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the logs and the data (a run with a violation keeps them anyway)",
    )
    args = parser.parse_args()
    infra = args.infra_faults or CampaignConfig.infra_for(args.operations)
    minimum = args.min_faults
    if minimum is None:
        minimum = min(50, infra)
    config = CampaignConfig(
        seed=args.seed,
        operations=args.operations,
        infra_per_kind=infra,
        calcom_rate=args.calcom_rate,
        concurrency=args.concurrency,
        min_faults=minimum,
        keep_directory=args.keep,
    )
    result = run_campaign(config)
    print(render(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
