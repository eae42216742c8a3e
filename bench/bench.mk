# Included by the Makefile: the benchmark targets and what they install.

.PHONY: bench bench-memory bench-instructions bench-propagation bench-usage bench-tools bench-wasm decision-path

# The benchmark of issue 6 (bench/README.md): bench/bench.py drives one Envoy per configuration with
# wrk, Debian's package, installed when missing (tests/integration/bench_smoke.rs runs it in --quick
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

# Revocation propagation with the feed (bench/propagation.py): two Envoys, two keyservice replicas
# on a throwaway PostgreSQL, thousands of keys under wrk; DELETE → first 401 at each Envoy, and
# revocation callouts per key with and without the feed. A section of BENCHMARKS.md; about ten
# minutes (BENCH_ARGS=--quick: two).
bench-propagation: tools bench-tools postgres wasm
	$(CARGO) build --release -p keyservice
	ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
		KEYSERVICE_BIN="$(CURDIR)/target/release/keyservice" \
		$(PYTHON) bench/propagation.py $(BENCH_ARGS)

# Usage reporting traffic (bench/usage_traffic.py): one Envoy, 10,000 long-lived keys each used in
# every 10 s report interval, the bytes its reporter sends keyservice. A section of BENCHMARKS.md;
# about two minutes.
bench-usage: tools bench-tools wasm
	$(CARGO) build --release -p keyservice
	ENVOY_BIN="$(abspath $(ENVOY_BIN))" KEYGATE_WASM="$(KEYGATE_WASM)" \
		KEYSERVICE_BIN="$(CURDIR)/target/release/keyservice" \
		$(PYTHON) bench/usage_traffic.py $(BENCH_ARGS)
