# The fuzz campaign (issue 29; docs/security.md, "Fuzzing"): coverage-guided fuzzing with atheris of the
# image reader (PNG, JPEG, DICOM of every syntax), the bundle manifest parser (BundleManifest.from_dict and
# Bundle.load) and the node's C-STORE handling (datasets over a loopback association), FUZZ_INPUTS inputs
# per target, each under a per-input time limit and an RSS limit. Summaries: benchmarks/results/fuzz_*.json;
# crashing inputs: $(FUZZ_WORK)/<target>/crashes (regression tests take them from there). Not part of
# `make test`, which runs a smoke run of a few hundred inputs (tests/benchmarks/test_fuzz_smoke.py).
# About 30 min on 2 cores (reader ~1 min, manifest ~8 min, node ~20 min); `make -k fuzz` goes on past a
# target that found a crash.
FUZZ_INPUTS  ?= 10000
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB  ?= 3072
FUZZ_WORK    ?= build/fuzz
FUZZ_TARGETS ?= reader manifest node
FUZZ_RULES    = $(addprefix fuzz-,$(FUZZ_TARGETS))

.PHONY: fuzz $(FUZZ_RULES)
fuzz: $(FUZZ_RULES)

# The node's per-input limit is past its own decode deadline ([limits] decode_timeout_s, 20 s).
$(FUZZ_RULES): fuzz-%: $(VENV)/.full
	$(PY) -m cxr_edge.benchmarks.fuzz --target $* --inputs $(FUZZ_INPUTS) --rss-mb $(FUZZ_RSS_MB) \
		--timeout-s $(if $(filter node,$*),60,$(FUZZ_TIMEOUT)) --work $(FUZZ_WORK) \
		--out benchmarks/results/fuzz_$*.json
