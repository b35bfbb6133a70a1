# Quick start: `make run` (the service on the embedded default) and `make test` (everything).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck install clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Migrate, load demo data on the first run, check everything (findings exit non-zero: the
# demo has some on purpose, hence the leading '-'), then serve; serve prints the dashboard URL.
run: $(STAMP)
	$(BIN)/bookingguard db upgrade
	$(BIN)/bookingguard demo --if-empty
	-$(BIN)/bookingguard check --all --no-notify
	$(BIN)/bookingguard serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) bookingguard.db bookingguard.db-wal bookingguard.db-shm
