# mloop — one entry point for every routine task.
#   make demo     the whole loop end to end on a real small model
#   make test     the whole suite (starts and stops its own Kafka and Postgres)
#   make up|down|status|clean   the local stack for real use
#   make bench    benchmarks → bench-results/latest.json + a table
#   make chaos SEED=n   the whole loop under a seeded fault schedule, invariants checked

SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
SCENARIO ?= happy
SIZE ?= default
PYTEST_ARGS ?=
SEED ?= 1

.PHONY: help install venv jars browser up down status clean test test-unit test-integration test-e2e test-chaos demo chaos bench lint typecheck contracts topics-table

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | sort

$(UV):
	python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

.venv/.synced: pyproject.toml uv.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml apps/*/pyproject.toml demo/pyproject.toml) | $(UV)
	$(UV) sync --all-packages --frozen
	@touch $@

venv: .venv/.synced ## create the workspace virtual environment (.venv) with uv

install: venv jars ## everything a fresh machine needs: venv, Kafka jars, Postgres binaries

jars: venv ## fetch the Kafka jars from Maven Central into .cache/kafka (once)
	$(PY) -c "from mloop.devstack import ensure_kafka_jars; ensure_kafka_jars()"

browser: ## Chromium from the distribution's packages, for the console's browser tests (once)
	@command -v chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y --no-install-recommends chromium; }

up: install ## start Kafka, Postgres, the five services and the console in the background
	$(PY) -m mloop.devstack up

down: venv ## stop everything, keep the data
	$(PY) -m mloop.devstack down

status: venv ## what runs, then KEY=VALUE lines: eval "$$(make -s status)"
	@$(PY) -m mloop.devstack status

clean: venv ## stop everything and delete the local data
	$(PY) -m mloop.devstack clean

test: install browser ## the whole suite: unit, integration (real Kafka + Postgres) and e2e (one chaos seed included)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install browser
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

test-chaos: install ## the bounded chaos case: one seed of make chaos on a private platform
	$(PY) -m pytest -m chaos tests/e2e $(PYTEST_ARGS)

demo: up ## the main job: the whole loop on a real small model (SCENARIO=happy|rollback, SETTLE=seconds)
	$(PY) -m mloop.demo --scenario $(SCENARIO) --size $(SIZE) $(if $(SETTLE),--settle $(SETTLE))

chaos: install ## the loop under a seeded fault schedule on a private platform, invariants checked (SEED=n)
	$(PY) -m mloop.chaos --seed $(SEED)

bench: install ## every benchmark; JSON in bench-results/, a table on stdout
	$(PY) bench/run.py

lint: venv ## ruff
	.venv/bin/ruff check libs services apps demo tools tests bench

typecheck: venv ## mypy --strict
	.venv/bin/mypy libs/*/src services/*/src apps/*/src demo/src tools/*/src

contracts: venv ## JSON Schemas and one AsyncAPI document per service → docs/contracts
	$(PY) -m mloop.contracts.schema docs/contracts

topics-table: venv ## the README's topics table, from the topic registry
	@$(PY) -c "from mloop.contracts.schema import topics_markdown; print(topics_markdown(), end='')"
