# Two commands do all set-up: `make demo` (runtime only) and `make test` (everything).
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
CLI     = $(VENV)/bin/cxr-edge
KIT    ?= ../shared/data/manifest.csv
SPLIT  ?= splits/kit.csv

.PHONY: demo test test-all lint format schema golden clean paper paper-prune paper-bundles paper-eval paper-bench bench

.DEFAULT_GOAL := demo
include mk/web.mk
include mk/android.mk
include mk/dicom.mk
include mk/default.mk
include mk/fuzz.mk

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime install: numpy, opencv, pydicom, LiteRT, click... (no TensorFlow).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

# Full install: runtime + training/conversion ([train]) + test tools ([dev]).
$(VENV)/.full: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[train,dev,scale]"
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(CLI) demo --out build/demo_predictions.csv --force

# Browser tests need Chromium and web_demo/node_modules (mk/web.mk); the Android core's tests need
# javac and JUnit 5 (mk/android.mk). Both install them, or say why not and the tests skip.
# `make test` leaves out the tests marked slow (the zoo's three largest architectures built, trained a
# step, pruned and converted: ~18 of the suite's ~40 CPU-minutes); `make test-all` runs them too.
test: lint web-deps android-deps dicom-deps
	$(PY) -m pytest -n auto --dist loadfile -m "not slow"

test-all: $(VENV)/.full web-deps android-deps dicom-deps
	$(PY) -m pytest -n auto --dist loadfile

lint: $(VENV)/.full
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(VENV)/.full
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf build .pytest_cache .ruff_cache

# Full-size DICOMs: a generated corpus (every transfer syntax, 2560 x 2130, never committed) and the
# per-syntax benchmark of the shipped bundle (fast path vs naive pixel_array vs the previous path, cold
# start) written into benchmarks/RESULTS.md (~10 min on 2 cores).
# The cold start is also measured in a runtime-only install (what a cart has: no TensorFlow, whose
# dependencies make pydicom's import slower).
CORPUS ?= build/dicom_corpus
RUNTIME_VENV ?= build/runtime-venv
$(RUNTIME_VENV)/.runtime: pyproject.toml
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet -e .
	touch $@

bench: $(VENV)/.full $(RUNTIME_VENV)/.runtime
	$(PY) -m cxr_edge.benchmarks.dicom_corpus --out $(CORPUS) --manifest $(KIT) --images 2 \
		--variant m2_window_12 --variant m1_window_12
	$(PY) -m cxr_edge.benchmarks.decode --corpus $(CORPUS) --runs 3 --out benchmarks/results/decode.json \
		--results-md benchmarks/RESULTS.md --cold-python $(RUNTIME_VENV)/bin/python

# Regenerate the bundle manifest's JSON Schema from its dataclasses (a test checks they agree).
schema: $(VENV)/.runtime
	$(PY) -c "import json; from cxr_edge.bundle.manifest import SCHEMA_FILE, manifest_schema; SCHEMA_FILE.write_text(json.dumps(manifest_schema(), indent=2) + '\n')"

# Rewrite the golden vectors of the default bundle (after rebuilding it).
golden: $(VENV)/.runtime
	$(PY) -m cxr_edge.evaluation.golden

# The paper's pruning and ensemble tables (VI, V, VII) and benchmarks/RESULTS.md for the top-3 models
# of the zoo study (`python -m cxr_edge.train.study ...`, see docs/zoo_results.md). About an hour on 2 cores.
# Pruned models: the most pruned step within 0.01 validation macro AUC of the unpruned model (the
# conversion gate's own tolerance; ~90 validation images cannot resolve smaller differences).
TOP3    ?= mobilenet_v2-stage2 inception_v3-stage2 custom_cnn-scratch
UNPRUNED = $(foreach m,$(TOP3),runs/zoo/$(m))
PRUNED   = $(foreach m,$(TOP3),runs/prune/$(m)/best)
CONVERT  = $(CLI) convert --manifest $(KIT) --split $(SPLIT) --allow-degraded --force

paper: paper-prune paper-bundles paper-eval paper-bench

paper-prune: $(VENV)/.full
	for m in $(TOP3); do $(CLI) prune runs/zoo/$$m --manifest $(KIT) --split $(SPLIT) \
		--step 0.05 --max 0.5 --select no-loss --tolerance 0.01 --out runs/prune/$$m || exit 1; done

paper-bundles: $(VENV)/.full
	$(CONVERT) $(UNPRUNED) --quant fp32,int8 --member fp32 --name top3-unpruned --out bundles/top3_unpruned
	$(CONVERT) $(PRUNED) --quant fp32,int8 --member fp32 --name top3-pruned --out bundles/top3_pruned
	$(CONVERT) $(PRUNED) --quant int8 --member int8 --name top3-pruned-int8 --out bundles/top3_pruned_int8
	for m in $(TOP3); do $(CONVERT) runs/prune/$$m/best --quant int8 --member int8 \
		--name $$m-pruned-int8 --out bundles/$${m}_pruned_int8 || exit 1; done

paper-eval: $(VENV)/.full
	$(CLI) evaluate --bundle bundles/top3_unpruned --manifest $(KIT) --split $(SPLIT) \
		--out docs/ensembles/top3_unpruned --force
	for b in top3_pruned top3_pruned_int8; do $(CLI) evaluate --bundle bundles/$$b --manifest $(KIT) \
		--split $(SPLIT) --compare bundles/top3_unpruned --out docs/ensembles/$$b --force || exit 1; done

paper-bench: $(VENV)/.full
	mkdir -p benchmarks/results
	$(CLI) bench --variants --baseline runs/custom_cnn --out benchmarks/results/default.json
	$(CLI) bench --bundle bundles/top3_unpruned --variants --out benchmarks/results/top3_unpruned.json
	$(CLI) bench --bundle bundles/top3_pruned --variants --out benchmarks/results/top3_pruned.json
	$(CLI) bench --bundle bundles/top3_pruned_int8 --variants \
		$(foreach m,$(TOP3),--baseline runs/zoo/$(m)) --out benchmarks/results/top3_pruned_int8.json
	for m in $(TOP3); do $(CLI) bench --bundle bundles/$${m}_pruned_int8 --baseline runs/prune/$$m/best \
		--out benchmarks/results/$${m}_pruned_int8.json || exit 1; done
	$(MAKE) web-bench
	$(PY) -m cxr_edge.benchmarks.report benchmarks/results/default.json benchmarks/results/top3_pruned_int8.json \
		$(foreach m,$(TOP3),benchmarks/results/$(m)_pruned_int8.json) benchmarks/results/top3_pruned.json \
		benchmarks/results/top3_unpruned.json web_demo/results/browser_default.json --out benchmarks/RESULTS.md
	$(PY) -m cxr_edge.benchmarks.pruning_table $(foreach m,$(TOP3),--prune runs/prune/$(m)) \
		--eval unpruned=docs/ensembles/top3_unpruned --eval pruned=docs/ensembles/top3_pruned \
		--bench unpruned=benchmarks/results/top3_unpruned.json --bench pruned=benchmarks/results/top3_pruned.json \
		--out docs/pruning/table_vi.md --plot docs/pruning/prune_curves.png

# ImageNet-initialised MobileNet-V2 and Inception-V3 backbones for `train --weights` (docs/imagenet_weights.md),
# converted from the TF.js models of the npm package nsfwjs 4.4.0 (MIT); needs npm and node. The tarball is
# fetched only when absent; weights/ is not committed.
.PHONY: imagenet-weights
NSFWJS_TGZ = build/nsfwjs/nsfwjs-4.4.0.tgz
imagenet-weights: weights/mobilenet_v2_nsfwjs.weights.h5 weights/inception_v3_nsfwjs.weights.h5

$(NSFWJS_TGZ):
	mkdir -p $(@D)
	cd $(@D) && npm pack nsfwjs@4.4.0

weights/%_nsfwjs.weights.h5: $(NSFWJS_TGZ) | $(VENV)/.full
	$(CLI) import-weights --tfjs $(NSFWJS_TGZ) --model $* --out $@ --force
