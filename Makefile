# The Makefile is the contract: CI and the README call only these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= clusters
DB ?= sqlite:///$(HOME)/.cache/orchestrator/orchestrator.db
LISTEN ?= 127.0.0.1:8080

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/orchestrator: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: install
install: $(BIN)/orchestrator ## Create .venv and install the daemon with its dev tools

.PHONY: lint
lint: install ## ruff (lint and format) and the import contracts
	$(BIN)/ruff check orchestrator tests
	$(BIN)/ruff format --check orchestrator tests
	$(BIN)/lint-imports

.PHONY: typecheck
typecheck: install ## mypy, strict, on the package
	$(BIN)/mypy

.PHONY: unit
unit: install ## Fast tests only (no PostgreSQL, no clusters)
	$(BIN)/pytest -q tests/unit

.PHONY: test
test: lint typecheck ## Lint, type-check and run every test layer
	$(BIN)/pytest -q

.PHONY: run
run: install ## Run the daemon on SQLite with the example config
	$(BIN)/python -m tests.fakes.demo --config $(CONFIG) --db $(DB) --listen $(LISTEN)

.PHONY: clean
clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

-include tests/controlplane/controlplane.mk
