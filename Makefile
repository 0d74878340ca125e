# The Makefile is the contract: CI and the README call only these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= clusters
DB ?= sqlite:///$(HOME)/.cache/orchestrator/orchestrator.db
LISTEN ?= 127.0.0.1:8080
# where the example clusters' kubeconfigs, tokens and CAs lie (written by cluster-up)
SECRETS_DIR ?= $(HOME)/.cache/orchestrator/clusters

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
	$(BIN)/ruff check orchestrator tests bench
	$(BIN)/ruff format --check orchestrator tests bench
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

.PHONY: bench
bench: install ## Benchmark (issue 10): the daemon vs a naive poller, small; flags in ARGS="--onboardings 2000 --clusters 20"
	$(BIN)/python -m bench $(ARGS)

API_TOKEN_FILE ?= $(HOME)/.cache/orchestrator/api-token

.PHONY: run
run: install ## Set up and start the local clusters, then the daemon on SQLite with the example config
	bash tests/controlplane/ci-setup.sh
	$(MAKE) --no-print-directory cluster-up
	@test -s $(API_TOKEN_FILE) || (umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))' > $(API_TOKEN_FILE))
	@echo "--------------------------------------------------------------------------------"
	@echo "Daemon API  http://$(LISTEN)   (mutating calls: token in $(API_TOKEN_FILE))"
	@echo "State       $(BIN)/orchestrator list | get NAME | history NAME | clusters"
	@echo "Workflows   $(BIN)/python -m tests.controlplane status; the Argo Servers are"
	@echo "            https://127.0.0.1:2746 (local-a) and :2747 (local-b), e.g."
	@echo "            curl -s --cacert ~/.cache/orchestrator/clusters/local-a/argo-ca.crt \\"
	@echo "              -H \"Authorization: Bearer \$$(cat ~/.cache/orchestrator/clusters/local-a/argo-token)\" \\"
	@echo "              https://127.0.0.1:2746/api/v1/workflows/argo"
	@echo "Stop        Ctrl-C, then make cluster-down"
	@echo "--------------------------------------------------------------------------------"
	$(BIN)/orchestrator run --config $(CONFIG) --db $(DB) --listen $(LISTEN) --api-token-file $(API_TOKEN_FILE) \
		--secrets-dir $(SECRETS_DIR)

# run-fake keeps everything (database, config, tokens, CA) in a folder of its own
FAKE_DB ?= sqlite:///$(or $(ORCHESTRATOR_CACHE),$(HOME)/.cache/orchestrator)/demo/orchestrator.db

.PHONY: run-fake
run-fake: install ## Like run, with the Argo test server instead of the local clusters (no build; its own database and state)
	$(BIN)/python -m tests.fakes.demo --config $(CONFIG) --db $(FAKE_DB) --listen $(LISTEN)

.PHONY: clean
clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

-include tests/controlplane/controlplane.mk
