# Panoptes developer entry points. Every target here works; `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
CONTROLPLANE_BIN := $(CURDIR)/target/controlplane/bin
export PANOPTES_CONTROLPLANE_BIN := $(CONTROLPLANE_BIN)

TOOLS := $(CURDIR)/target/tools
OHA_VERSION := 1.16.0

.PHONY: help build release test lint fmt crds crds-check controlplane manifests bench tools

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the panoptes binary (debug)
	$(CARGO) build --locked --bin panoptes

release: ## Build the release binary exactly as the Dockerfile does
	$(CARGO) build --locked --release --bin panoptes

test: lint controlplane ## Lint, build the test control plane, run every test
	$(CARGO) test --workspace --locked --all-targets

lint: ## Formatting check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --locked --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate crds/ and the chart's copy from the Rust types
	$(CARGO) run --locked --quiet --bin panoptes -- crd --out-dir crds
	$(CARGO) run --locked --quiet --bin panoptes -- crd --out-dir charts/panoptes/crds

controlplane: ## Build kube-apiserver, etcd, kubectl, helm and the launcher (no-op when current)
	tests/controlplane/build.sh $(CONTROLPLANE_BIN)

manifests: controlplane ## Render manifests/install.yaml from the chart
	{ printf '# Rendered from charts/panoptes by `make manifests`; do not edit.\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: panoptes-system\n'; \
	  $(CONTROLPLANE_BIN)/helm template panoptes charts/panoptes --namespace panoptes-system --include-crds; } > manifests/install.yaml

tools: ## Build the facade load generator (oha, from crates.io) into target/tools (no-op when current)
	@if ! $(TOOLS)/bin/oha --version 2>/dev/null | grep -q '$(OHA_VERSION)'; then \
	  $(CARGO) install --locked --root $(TOOLS) oha --version $(OHA_VERSION); fi

bench: controlplane tools ## Scale benchmarks of BENCHMARKS.md (release build; ~15 min on 2 cores)
	$(CARGO) bench --locked --bench scale
