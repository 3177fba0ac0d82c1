# One command surface for people and CI.
PY ?= .venv/bin/python
SOURCES = sendq worker scheduler providers tests benchmarks

.PHONY: install dev lint format mypy test test-fast bench all

.venv/bin/python:
	python3 -m venv .venv

# pip >= 25.1 reads [dependency-groups]; the machine's pip 23 does not, hence the upgrade.
install: .venv/bin/python
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e . --group dev
	scripts/ensure-redis-server.sh

# Try sendq: embedded Redis (unless SENDQ_REDIS_URL is set), a worker and the mock provider.
dev: install
	.venv/bin/sendq dev

format:
	$(PY) -m ruff format $(SOURCES)
	$(PY) -m ruff check --fix $(SOURCES)

lint:
	$(PY) -m ruff check $(SOURCES)
	$(PY) -m ruff format --check $(SOURCES)

mypy:
	$(PY) -m mypy

# The whole suite: unit (fakeredis) and real-redis-server end-to-end tests.
test: install
	$(PY) -m pytest

# Unit tests only (no processes).
test-fast: install
	$(PY) -m pytest -m "not e2e"

# Throughput and lateness figures into docs/benchmarks.md (not a test).
bench: install
	$(PY) -m benchmarks.run --out docs/benchmarks.md

all: lint mypy test
