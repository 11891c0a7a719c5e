# The shipped bundles (cxr_edge.bundle.presets). `default` is what leave-one-source-out chose
# (docs/generalisation.md, issue 27): the full image with histogram equalisation, the mean of three
# APoZ-pruned custom CNNs (one recipe, three seeds), the lung segmenter shipped to check where the
# evidence lies. `paper` is the paper's system: segment -> lung crop -> the same kind of ensemble.
# Included from the Makefile.
#
#   make default-segmenter  U-Net on every train-split lung mask, its bundle, the kit's crop table (~5 min)
#   make default-loso       LOSO of the three members and of their mean: temperature, referral band (~75 min)
#   make site-curves        site-adaptation curves from the kermany and nih folds (docs/site.md, ~30 min)
#   make bundle             the three members on the committed split, pruned, converted, audited (~30 min)
#   make bundle PRESET=paper   the same for the `paper` preset (lung-crop members)
#
# `bundle` uses the temperature and referral threshold that `default-loso` measured
# ($(DEFAULT_CALIBRATION)); it needs bundles/seg_kit2 (and, for the paper's lung-crop members,
# build/crops_kit2) from `default-segmenter`.

PRESET              ?= default
ifeq ($(PRESET),paper)
DEFAULT_MEMBERS     ?= lungcrop_balanced lungcrop_balanced_seed1 lungcrop_balanced_seed2
# Five of the paper's 2% APoZ steps; LOSO found no loss at any level up to it (cxr-edge loso prune).
DEFAULT_PRUNE       ?= 0.1
DEFAULT_PRUNE_MAX   ?= 0.1
DEFAULT_PRUNE_STEP  ?= 0.02
else
DEFAULT_MEMBERS     ?= equalize_e14 equalize_e14_seed1 equalize_e14_seed2
# APoZ steps of 4% (two of the paper's 2% steps per fine-tuning epoch: the folds' pruning to 40% in
# 2% steps would take ~2 h on 2 cores) up to 40% of the prunable channels; the exported level is the
# one `make default-prune-loso` chose on the recipe's LOSO folds (docs/generalisation.md).
DEFAULT_PRUNE       ?= 0.1
DEFAULT_PRUNE_MAX   ?= 0.4
DEFAULT_PRUNE_STEP  ?= 0.04
endif
PRESET_TAG           = $(if $(filter paper,$(PRESET)),paper,default)
DEFAULT_BUNDLE       = cxr_edge/data/$(PRESET_TAG)_bundle
DEFAULT_CARD         = configs/card_$(PRESET_TAG).toml
DEFAULT_NAME         = cxr-edge-$(PRESET_TAG)
DEFAULT_RECIPE       = $(firstword $(DEFAULT_MEMBERS))
DEFAULT_SEG          = bundles/seg_kit2
DEFAULT_CROPS        = build/crops_kit2/crops.csv
# Temperature and referral threshold as `default-loso` fitted them on held-out sources (committed).
DEFAULT_CALIBRATION  = docs/generalisation/$(PRESET_TAG)_calibration.json
DEFAULT_TEMPERATURE ?= $(shell $(PY) -c "import json; print(json.load(open('$(DEFAULT_CALIBRATION)'))['temperature'])")
DEFAULT_REFERRAL     ?= $(shell $(PY) -c "import json; print(json.load(open('$(DEFAULT_CALIBRATION)'))['referral']['threshold'])")
DATA_SPLIT           = --manifest $(KIT) --split $(SPLIT)
# The decode gate (reduced-resolution DICOM decoding) on every validation image (267; ~8 min).
DEFAULT_DECODE_GATE ?= 300
# The shortcut audit in the card is measured on the bundle itself: convert, audit, convert again.
DEFAULT_CONVERT      = $(foreach m,$(DEFAULT_MEMBERS),runs/prune/$(m)/best) $(DATA_SPLIT) \
	--segmenter $(DEFAULT_SEG) --quant fp32,int8 --member int8 --member-fallback fp32 --ensemble mean \
	--temperature $(DEFAULT_TEMPERATURE) --referral-min-prob $(DEFAULT_REFERRAL) --name $(DEFAULT_NAME)

.PHONY: default-segmenter default-loso default-prune-loso bundle default-members default-convert

default-segmenter: $(VENV)/.full
	$(CLI) train --config configs/unet16_kit2.toml $(DATA_SPLIT) --out runs/unet16_kit2 --force
	$(CLI) convert-segmenter runs/unet16_kit2 $(DATA_SPLIT) --out $(DEFAULT_SEG) --margin 0.10 --force
	$(CLI) segment --manifest $(KIT) --bundle $(DEFAULT_SEG) --out $(dir $(DEFAULT_CROPS)) --force

default-loso: $(VENV)/.full
	for m in $(DEFAULT_MEMBERS); do \
		$(CLI) loso train --config configs/triage/$$m.toml $(DATA_SPLIT) --out runs/loso/$$m || exit 1; done
	$(CLI) loso ensemble $(foreach m,$(DEFAULT_MEMBERS),runs/loso/$(m)) --method mean --temperature-rule source-median --out runs/loso/default_calibrated
	mkdir -p docs/generalisation
	cp runs/loso/default_calibrated/loso.json docs/generalisation/$(PRESET_TAG)_loso.json
	cp runs/loso/default_calibrated/ensemble.json $(DEFAULT_CALIBRATION)

# The pruning level by LOSO: the first member's six folds pruned in DEFAULT_PRUNE_STEP steps up to
# DEFAULT_PRUNE_MAX, each level scored on the held-out sources (after default-loso; ~60 min).
default-prune-loso: $(VENV)/.full
	$(CLI) loso prune runs/loso/$(DEFAULT_RECIPE) $(DATA_SPLIT) --step $(DEFAULT_PRUNE_STEP) --max $(DEFAULT_PRUNE_MAX) \
		--out runs/loso_prune/$(DEFAULT_RECIPE)
	cp runs/loso_prune/$(DEFAULT_RECIPE)/loso_prune.csv docs/generalisation/$(PRESET_TAG)_prune_loso.csv

bundle: default-members default-convert

# Train and prune: the three members on the committed split (~5 min each), then APoZ steps of
# DEFAULT_PRUNE_STEP to DEFAULT_PRUNE_MAX, exported at DEFAULT_PRUNE.
default-members: $(VENV)/.full
	for m in $(DEFAULT_MEMBERS); do \
		$(CLI) train --config configs/triage/$$m.toml $(DATA_SPLIT) --out runs/final/$$m --force || exit 1; \
		$(CLI) prune runs/final/$$m $(DATA_SPLIT) --step $(DEFAULT_PRUNE_STEP) --max $(DEFAULT_PRUNE_MAX) --no-latency \
			--select fraction --fraction $(DEFAULT_PRUNE) --out runs/prune/$$m || exit 1; done

# Convert (fp32 + int8, gates), audit the bundle on the split, convert again with the audit in the card
# and the decode gate (docs/decode.md).
default-convert: $(VENV)/.full
	mkdir -p build
	grep -v '^audit' $(DEFAULT_CARD) | sed 's|"\.\./|"$(CURDIR)/|' > build/card_without_audit.toml
	$(CLI) convert $(DEFAULT_CONVERT) --card build/card_without_audit.toml --decode-gate-images 0 \
		--out build/$(PRESET_TAG)_unaudited --force
	$(CLI) evaluate --bundle build/$(PRESET_TAG)_unaudited --manifest $(KIT) --split $(SPLIT) --audit-source \
		--out build/$(PRESET_TAG)_eval --force
	cp build/$(PRESET_TAG)_eval/metrics.json docs/generalisation/$(PRESET_TAG)_audit.json
	$(CLI) convert $(DEFAULT_CONVERT) --card $(DEFAULT_CARD) --decode-gate-images $(DEFAULT_DECODE_GATE) \
		--out $(DEFAULT_BUNDLE) --force
	$(if $(filter default,$(PRESET_TAG)),$(MAKE) golden)

# Site adaptation (docs/site.md): the `paper` preset's LOSO folds (the default until issue 27; the
# committed curves and worked example are theirs) of the two sources with two labels
# (kermany, nih) play new hospitals; their members' outputs and pooled features on the held-out source,
# then curves per k labelled images per class and method (numpy only), and a fold bundle (the three
# members of the kermany fold, never trained on kermany) for the worked example (~35 min in all).
SITE_SOURCES = kermany nih
SITE_MEMBERS = lungcrop_balanced lungcrop_balanced_seed1 lungcrop_balanced_seed2
SITE_CALIBRATION = docs/generalisation/paper_calibration.json
SITE_TEMPERATURE = $(shell $(PY) -c "import json; print(json.load(open('$(SITE_CALIBRATION)'))['temperature'])")
SITE_REFERRAL = $(shell $(PY) -c "import json; print(json.load(open('$(SITE_CALIBRATION)'))['referral']['threshold'])")
SITE_FOLD_BUNDLE = build/fold_kermany
.PHONY: site-curves site-fold-bundle
site-curves: $(VENV)/.full
	for m in $(SITE_MEMBERS); do \
		$(CLI) loso train --config configs/triage/$$m.toml $(DATA_SPLIT) $(foreach s,$(SITE_SOURCES),--source $(s)) \
			--out runs/loso/$$m || exit 1; done
	$(PY) -m cxr_edge.benchmarks.site_features $(foreach m,$(SITE_MEMBERS),--loso runs/loso/$(m)) \
		$(foreach s,$(SITE_SOURCES),--source $(s)) --manifest $(KIT) --out build/site_features
	$(PY) -m cxr_edge.benchmarks.site_curves --features build/site_features $(foreach s,$(SITE_SOURCES),--source $(s)) \
		--out docs/site/curves.json --markdown docs/site/curves.md --plot docs/img/site_curves.png

site-fold-bundle: $(VENV)/.full
	mkdir -p build
	grep -v '^audit' configs/card_paper.toml | sed 's|"\.\./|"$(CURDIR)/|' > build/card_without_audit.toml
	# Members are named after their run folders: the three folds, linked under their recipes' names.
	mkdir -p build/fold_kermany_runs
	for m in $(SITE_MEMBERS); do ln -sfn $(CURDIR)/runs/loso/$$m/kermany build/fold_kermany_runs/$$m; done
	$(CLI) convert $(foreach m,$(SITE_MEMBERS),build/fold_kermany_runs/$(m)) $(DATA_SPLIT) --segmenter $(DEFAULT_SEG) \
		--quant fp32,int8 --member int8 --member-fallback fp32 --ensemble mean --temperature $(SITE_TEMPERATURE) \
		--referral-min-prob $(SITE_REFERRAL) --card build/card_without_audit.toml --decode-gate-images 0 \
		--name fold-kermany --out $(SITE_FOLD_BUNDLE) --force

# The worked example of docs/site.md: kermany as a new hospital for the fold bundle that never saw it.
# Validate the fold bundle on every kermany image; calibrate it on 50 labelled images per class; validate
# the calibrated bundle on the other patients' images (~3 min after site-fold-bundle).
SITE_EXAMPLE = build/site_kermany
.PHONY: site-example
site-example: $(VENV)/.full
	$(PY) -m cxr_edge.benchmarks.site_example --manifest $(KIT) --source kermany --per-class 50 --out $(SITE_EXAMPLE)
	$(CLI) site validate $(SITE_EXAMPLE)/all.csv --bundle $(SITE_FOLD_BUNDLE) --out docs/site/fold_kermany --force
	$(CLI) site calibrate $(SITE_EXAMPLE)/labelled.csv --bundle $(SITE_FOLD_BUNDLE) --site kermany-example \
		--out build/fold_kermany_site --force | tee docs/site/calibrate_kermany.md
	$(CLI) site validate $(SITE_EXAMPLE)/future.csv --bundle build/fold_kermany_site \
		--out docs/site/fold_kermany_site --force

# The LOSO table of docs/generalisation.md (issue 27): every committed run re-scored from its held-out
# predictions, within-source AUCs and the selection score included (~3 min, no training).
HELDOUT = docs/generalisation/heldout
.PHONY: loso-table
loso-table: $(VENV)/.runtime
	$(CLI) loso report \
		$(HELDOUT)/baseline_e14 --name "baseline (first-release recipe, 128 px, full image)" \
		$(HELDOUT)/lungcrop_balanced --name "lungcrop_balanced, seed 0" \
		$(HELDOUT)/lungcrop_balanced_seed1 --name "lungcrop_balanced, seed 1" \
		$(HELDOUT)/lungcrop_balanced_seed2 --name "lungcrop_balanced, seed 2" \
		$(HELDOUT)/lungcrop_balanced_adversary --name "lungcrop_balanced + source adversary (gradient reversal, 0.3)" \
		$(HELDOUT)/default_calibrated --name "paper preset (the default until issue 27): mean of the three lungcrop_balanced seeds, T 4.27" \
		$(HELDOUT)/equalize_e14 --name "equalize: global histogram equalisation before CLAHE" \
		$(HELDOUT)/equalize_e14_seed1 --name "equalize, seed 1" \
		$(HELDOUT)/stage2_e14 --name "stage 1 -> stage 2: the paper's modality-specific transfer, baseline recipe" \
		$(HELDOUT)/lungcrop_e14 --name "lungcrop: baseline on the lung crop" \
		$(HELDOUT)/lungcrop_balanced_equalize --name "lungcrop_balanced + equalize, seed 0" \
		$(HELDOUT)/lungcrop_balanced_equalize_seed1 --name "lungcrop_balanced + equalize, seed 1" \
		$(HELDOUT)/equalize_e14_seed2 --name "equalize, seed 2" \
		$(HELDOUT)/equalize_mean3 --name "**default** (issue 27): equalize, mean of seeds 0-2, T 3.11 (source-median)" \
		$(HELDOUT)/equalize_noise --name "equalize + noise injection (issue 27), seed 0" \
		$(HELDOUT)/equalize_noise_seed1 --name "equalize + noise injection, seed 1" \
		$(HELDOUT)/equalize_noise_seed2 --name "equalize + noise injection, seed 2" \
		$(HELDOUT)/equalize_noise_mean3 --name "equalize + noise: mean of seeds 0-2 (source-median T)" \
		$(HELDOUT)/equalize_decode --name "equalize + decode invariance (issue 27), seed 0" \
		$(HELDOUT)/equalize_decode_seed1 --name "equalize + decode invariance, seed 1" \
		$(HELDOUT)/equalize_e14_rerun --name "equalize, seed 0 again (the folds of make default-prune-loso)" \
		$(HELDOUT)/baseline_e14_seed1 --name "baseline, seed 1" \
		$(HELDOUT)/baseline_e14_seed2 --name "baseline, seed 2" \
		$(HELDOUT)/baseline_mean3 --name "baseline: mean of seeds 0-2 (source-median T)" \
		$(HELDOUT)/equalize_e14_256 --name "equalize at 256 px (the paper's input size; issue 27), seed 0" \
		$(HELDOUT)/mobilenet_imagenet --name "MobileNetV2 from ImageNet (nsfwjs), baseline preprocessing, 10 epochs (issue 27)" \
		$(HELDOUT)/mixed_mnv2 --name "mixed architectures: equalize seeds 0, 1 + MobileNetV2 (source-median T)" \
		$(HELDOUT)/mixed_256_mnv2 --name "mixed architectures and sizes: equalize 128 px + 256 px + MobileNetV2" \
		--baseline "baseline (first-release recipe, 128 px, full image)" --out docs/generalisation/loso_table.md
