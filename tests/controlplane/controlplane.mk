# Local control plane: two clusters (local-a, local-b) of real kube-apiserver,
# etcd and Argo Workflows processes on 127.0.0.1, pods simulated by kwok.
# Included by the main Makefile; see tests/controlplane/README.md.

CONTROLPLANE_REPO := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/../..)
CONTROLPLANE_PYTHON ?= $(or $(PYTHON),python3)
CONTROLPLANE = cd "$(CONTROLPLANE_REPO)" && $(CONTROLPLANE_PYTHON) -m tests.controlplane

.PHONY: cluster-build cluster-up cluster-down cluster-status

cluster-build: ## Build kube-apiserver, kwok, Argo and helm once into ~/.cache/orchestrator (seconds when cached)
	$(CONTROLPLANE) build

cluster-up: cluster-build ## Start the local clusters local-a and local-b (reuses running ones)
	$(CONTROLPLANE) up

cluster-down: ## Stop the local clusters and every process they started
	$(CONTROLPLANE) down

cluster-status: ## Show the local clusters' components, health and memory
	$(CONTROLPLANE) status
