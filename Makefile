# Quick start: `make run` (the service on the embedded default) and `make test` (everything).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck install install-dev locks clean

# The runtime lock only: what `make run` and a production install need.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# The development lock on top: test runner, type checker, linter, browser driver, SDKs.
$(DEV_STAMP): $(STAMP) requirements-dev.lock
	$(BIN)/pip install --quiet -r requirements-dev.lock
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

# Migrate, load demo data on the first run, check everything (findings exit non-zero: the
# demo has some on purpose, hence the leading '-'), then serve; serve prints the dashboard URL.
run: $(STAMP)
	$(BIN)/bookingguard db upgrade
	$(BIN)/bookingguard demo --if-empty
	-$(BIN)/bookingguard check --all --no-notify
	$(BIN)/bookingguard serve

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# Re-pin both locks from pyproject.toml in throw-away environments (needs the registry).
locks:
	bash scripts/lock.sh $(PYTHON)

clean:
	rm -rf $(VENV) bookingguard.db bookingguard.db-wal bookingguard.db-shm
