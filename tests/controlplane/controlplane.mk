# Local control plane: two clusters (local-a, local-b) of real kube-apiserver,
# etcd and Argo Workflows processes on 127.0.0.1, pods simulated by kwok.
# Included by the main Makefile; see tests/controlplane/README.md.

CONTROLPLANE_REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../..)
# Building needs only the standard library; the other commands import PyYAML
# and httpx, so they run in the project's virtualenv when the main Makefile
# defines one (BIN and its install target).
CONTROLPLANE_BUILD_PYTHON ?= $(or $(PYTHON),python3)
ifdef BIN
CONTROLPLANE_PYTHON ?= $(abspath $(BIN))/python
CONTROLPLANE_DEPS := install
else
CONTROLPLANE_PYTHON ?= $(or $(PYTHON),python3)
CONTROLPLANE_DEPS :=
endif
CONTROLPLANE_CD = cd "$(CONTROLPLANE_REPO)" &&

.PHONY: cluster-build cluster-up cluster-down cluster-status

cluster-build: ## Build kube-apiserver, kwok, Argo and helm once into ~/.cache/orchestrator (seconds when cached)
	$(CONTROLPLANE_CD) $(CONTROLPLANE_BUILD_PYTHON) -m tests.controlplane build

cluster-up: cluster-build $(CONTROLPLANE_DEPS) ## Start the local clusters local-a and local-b (reuses running ones)
	$(CONTROLPLANE_CD) $(CONTROLPLANE_PYTHON) -m tests.controlplane up

cluster-down: $(CONTROLPLANE_DEPS) ## Stop the local clusters and every process they started
	$(CONTROLPLANE_CD) $(CONTROLPLANE_PYTHON) -m tests.controlplane down

cluster-status: $(CONTROLPLANE_DEPS) ## Show the local clusters' components, health and memory
	$(CONTROLPLANE_CD) $(CONTROLPLANE_PYTHON) -m tests.controlplane status
