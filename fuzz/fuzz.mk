# Included by the Makefile: the fuzz targets (fuzz/fuzz_targets/) and what they install.

.PHONY: fuzz-tools fuzz-build fuzz fuzz-smoke

# The fuzz targets (fuzz/fuzz_targets/, one per parser of untrusted input; docs/development.md "Fuzzing"):
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
