#!/usr/bin/env bash
# Pins requirements.lock (what the service needs at run time) and requirements-dev.lock (what
# the tests, linters and type checker add on top) from pyproject.toml, each resolved in a
# throw-away environment. A version either lock already pins stays; a new package gets the
# newest that fits.
set -euo pipefail
python="${1:-python3.11}"
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat requirements.lock requirements-dev.lock 2>/dev/null | grep -vE '^(-r |#|$)' >"$work/pins.txt" || true
"$python" -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install --quiet --upgrade pip
"$pip" install --quiet -c "$work/pins.txt" .
"$pip" freeze --exclude bookingguard | LC_ALL=C sort >"$work/runtime.txt"
"$pip" install --quiet -c "$work/pins.txt" ".[dev]"
"$pip" freeze --exclude bookingguard | LC_ALL=C sort >"$work/all.txt"
{
    echo "# Runtime dependencies, pinned (make locks). make run and production installs use this alone."
    cat "$work/runtime.txt"
} >requirements.lock
{
    echo "# Development dependencies on top of the runtime lock, pinned (make locks). make test uses both."
    echo "-r requirements.lock"
    LC_ALL=C comm -13 "$work/runtime.txt" "$work/all.txt"
} >requirements-dev.lock
