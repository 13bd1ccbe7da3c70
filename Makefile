# Panoptes developer entry points. Every target here works; `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
CONTROLPLANE_BIN := $(CURDIR)/target/controlplane/bin
export PANOPTES_CONTROLPLANE_BIN := $(CONTROLPLANE_BIN)

.PHONY: help build release test lint fmt crds crds-check controlplane manifests chaos fuzz fuzz-smoke fuzz-tools schemathesis

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the panoptes binary (debug)
	$(CARGO) build --locked --bin panoptes

release: ## Build the release binary exactly as the Dockerfile does
	$(CARGO) build --locked --release --bin panoptes

test: lint controlplane ## Lint, build the control plane, run every test (short chaos incl.), short fuzz runs, schemathesis
	$(CARGO) test --workspace --locked --all-targets
	$(MAKE) fuzz-smoke
	$(MAKE) schemathesis

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

SCHEMATHESIS_VENV := $(CURDIR)/target/schemathesis-venv
schemathesis: controlplane ## Fuzz the facade with schemathesis (PyPI, venv under target/) over every operation
	test -x $(SCHEMATHESIS_VENV)/bin/schemathesis || { python3 -m venv $(SCHEMATHESIS_VENV) && $(SCHEMATHESIS_VENV)/bin/pip install --quiet 'schemathesis==4.32.5'; }
	SCHEMATHESIS=$(SCHEMATHESIS_VENV)/bin/schemathesis $(CARGO) test --locked --test api_schemathesis -- --ignored --nocapture

manifests: controlplane ## Render manifests/install.yaml from the chart
	{ printf '# Rendered from charts/panoptes by `make manifests`; do not edit.\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: panoptes-system\n'; \
	  $(CONTROLPLANE_BIN)/helm template panoptes charts/panoptes --namespace panoptes-system --include-crds; } > manifests/install.yaml

CHAOS_SEED ?= 20261126
CHAOS_SECONDS ?= 120
CHAOS_NODES ?= 24
CHAOS_STREAMS ?= 1200
chaos: controlplane ## Long seeded fault schedule (release build); report in target/chaos/report.json
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_NODES=$(CHAOS_NODES) \
	CHAOS_STREAMS=$(CHAOS_STREAMS) $(CARGO) test --locked --release --test chaos -- --nocapture

TOOLS := $(CURDIR)/target/tools
CARGO_FUZZ := $(TOOLS)/bin/cargo-fuzz
FUZZ_TARGETS := query cursor node_responses
FUZZ_SECONDS ?= 300
# Fuzzing without a sanitizer runs on the stable toolchain (Rust code is memory-safe; the
# targets look for panics and broken invariants).
FUZZ = CARGO_TARGET_DIR=$(CURDIR)/target/fuzz $(CARGO_FUZZ) run --fuzz-dir tests/fuzz -O -s none

fuzz-tools: ## Install cargo-fuzz into target/tools (no-op when present)
	@test -x $(CARGO_FUZZ) || $(CARGO) install cargo-fuzz --locked --version 0.13.2 --root $(TOOLS)

fuzz: fuzz-tools ## Fuzz every target for FUZZ_SECONDS each (default 300)
	@for t in $(FUZZ_TARGETS); do $(FUZZ) $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

fuzz-smoke: fuzz-tools ## Fuzz every target for 10 s (part of make test)
	@set -o pipefail; for t in $(FUZZ_TARGETS); do $(FUZZ) $$t -- -max_total_time=10 2>&1 | tail -2 || exit 1; done
