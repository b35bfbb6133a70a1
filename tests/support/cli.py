"""Running the real ``bookingguard`` command in a subprocess, with a clean configuration."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m bookingguard ARGS`` with only ``env``'s BOOKINGGUARD_ variables set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOOKINGGUARD_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bookingguard", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
