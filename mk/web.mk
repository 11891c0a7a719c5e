# Browser demo (web_demo/): a static, offline-capable app on LiteRT.js, tested in headless Chromium.
#
#   make web-deps        Chromium (apt, unless /usr/bin/chromium exists) and web_demo/node_modules
#                        (`npm ci`, only when node_modules is missing or package(-lock).json changed)
#   make web-test        the browser tests, failing (not skipping) when something is missing
#   make web-serve       serve the app, the default bundle and the samples on http://127.0.0.1:8000/
#                        (WEB_PORT=N for another port; installs node_modules first when missing)
#   make web-bench       browser latency per stage, 1 thread and threaded WASM -> $(WEB_BENCH_OUT)
#   make web-bench-dicom full-size DICOMs per transfer syntax, browser (1 and 2 threads) beside the
#                        Python CLI on the same corpus -> $(WEB_DICOM_OUT), .md, benchmarks/RESULTS.md
#                        (makes the corpus in $(WEB_DICOM_CORPUS) first when it is missing)
#   make web-screenshot  rewrite web_demo/screenshot.png
#
# Include this file from the Makefile (`include mk/web.mk`) and let `test` depend on web-deps.

WEB_DIR       ?= web_demo
WEB_CHROMIUM  ?= /usr/bin/chromium
WEB_PY        ?= $(firstword $(PY) $(wildcard .venv/bin/python) python3)
WEB_BENCH_OUT ?= $(WEB_DIR)/results/browser_default.json
WEB_PORT      ?= 8000
WEB_STAMP      = $(WEB_DIR)/node_modules/.cxr-edge-installed
WEB_DICOM_CORPUS ?= build/web_dicom_corpus
WEB_DICOM_OUT    ?= benchmarks/results/web_dicom.json

.PHONY: web-deps web-test web-serve web-bench web-bench-dicom web-screenshot

# APT runs apt-get as root, or through sudo. Without either (or without a network), web-deps says
# so and `make test` goes on: the browser tests then skip with that reason instead of failing.
APT ?= $(if $(filter 0,$(shell id -u)),,sudo -n) env DEBIAN_FRONTEND=noninteractive apt-get

web-deps:
	@if [ -x $(WEB_CHROMIUM) ]; then echo "web-deps: $(WEB_CHROMIUM) is installed"; \
	else $(APT) update -qq && $(APT) install -y -qq chromium \
		|| echo "web-deps: could not install chromium; the browser tests will be skipped"; fi
	@$(MAKE) --no-print-directory $(WEB_STAMP) \
		|| echo "web-deps: npm ci failed; the browser tests will be skipped"

# npm ci wipes node_modules and installs exactly the lock; the stamp is newer than both files after it.
$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(APT) update -qq && $(APT) install -y -qq nodejs npm; }
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	touch $@

web-test: web-deps
	CXR_EDGE_REQUIRE_BROWSER=1 $(WEB_PY) -m pytest tests/ports/test_web_demo.py tests/ports/test_web_dicom.py

web-serve: $(WEB_STAMP)
	node $(WEB_DIR)/serve.mjs --port $(WEB_PORT)

web-bench: web-deps
	node $(WEB_DIR)/bench.mjs --threads 1,2 --runs 5 --out $(WEB_BENCH_OUT)

# 2560 x 2130 12-bit files, 2 source images in every syntax (variant m2_window_12; ~15 s to write).
# WEB_DICOM_CORPUS=build/dicom_corpus reuses the decode benchmark's corpus (its first 2 files per syntax).
$(WEB_DICOM_CORPUS)/corpus.csv:
	$(WEB_PY) -m cxr_edge.benchmarks.dicom_corpus --out $(WEB_DICOM_CORPUS) --images 2 --variant m2_window_12 \
		--no-pydicom-files

web-bench-dicom: web-deps $(WEB_DICOM_CORPUS)/corpus.csv
	node $(WEB_DIR)/bench_dicom.mjs --corpus $(WEB_DICOM_CORPUS) --threads 1,2 --runs 5 --files 2 \
		--python $(WEB_PY) --out $(WEB_DICOM_OUT) --markdown $(WEB_DICOM_OUT:.json=.md) \
		--results-md benchmarks/RESULTS.md

web-screenshot: web-deps
	CXR_EDGE_REQUIRE_BROWSER=1 CXR_EDGE_UPDATE_SCREENSHOT=1 $(WEB_PY) -m pytest tests/ports/test_web_demo.py \
		-k screenshot
