# Two commands do all set-up: `make demo` (runtime only) and `make test` (everything).
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
CLI     = $(VENV)/bin/cxr-edge
KIT    ?= ../shared/data/manifest.csv
SPLIT  ?= splits/kit.csv

.PHONY: demo test lint format bundle schema golden clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime install: numpy, opencv, pydicom, LiteRT, click... (no TensorFlow).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

# Full install: runtime + training/conversion ([train]) + test tools ([dev]).
$(VENV)/.full: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[train,dev]"
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(CLI) demo --out build/demo_predictions.csv --force

test: $(VENV)/.full
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(VENV)/.full
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.full
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Rebuild the shipped default bundle from the data kit (about 10 minutes on 2 cores).
bundle: $(VENV)/.full
	$(CLI) train --config configs/custom_cnn.toml --data $(KIT) --split $(SPLIT) --out runs/custom_cnn --force
	$(CLI) convert --runs runs/custom_cnn --data $(KIT) --split $(SPLIT) --name cxr-edge-default \
		--out cxr_edge/data/default_bundle --force

clean:
	rm -rf build .pytest_cache .ruff_cache

# Regenerate the bundle manifest's JSON Schema from its dataclasses (a test checks they agree).
schema: $(VENV)/.runtime
	$(PY) -c "import json; from cxr_edge.bundle import SCHEMA_FILE, manifest_schema; SCHEMA_FILE.write_text(json.dumps(manifest_schema(), indent=2) + '\n')"

# Rewrite the golden vectors of the default bundle (after rebuilding it).
golden: $(VENV)/.runtime
	$(PY) -m cxr_edge.golden
