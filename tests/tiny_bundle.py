"""A small format-3 bundle with a lung segmenter, built in tests (needs Keras/TensorFlow to build).

It holds an int8 "segmenter" (64 px: a fixed two-ellipse prior nudged by the image) and three 32-px
classifiers (fp32, int8, 3-channel fp16) in a weighted ensemble with a temperature, plus every
format-3 field: a label map, an referral band and a lung-evidence threshold (both set to the median
over the shipped samples, so that some samples are referred or flagged and others not) and a model
card with a synthetic leave-one-source-out report. The browser, Android and Python tests of the
segmenter path use it until the new default bundle (which has a segmenter) ships.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cxr_edge.dataset.samples import samples_dir
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.lungcrop import CropSpec
from cxr_edge.ops.preprocess import PreprocessSpec, preprocess

LABELS = ("covid", "normal", "pneumonia_unknown")
LABEL_MAP = {"bacterial": "pneumonia_unknown", "viral": "pneumonia_unknown"}
FAILURE_MODES = ("Random weights: every prediction is meaningless.",)


def synthetic_loso_report() -> dict:
    """A :func:`cxr_edge.evaluation.loso.score` report on made-up held-out predictions (two sources)."""
    from cxr_edge.evaluation.loso import HeldOut, score

    rng = np.random.default_rng(5)
    n = 40
    sources = np.array(["hannover"] * 16 + ["nih"] * 24)
    y = np.array([0] * 16 + [1] * 12 + [2] * 12)
    probs = rng.dirichlet(np.ones(3), size=n) + np.eye(3)[y] * 0.6
    probs /= probs.sum(axis=1, keepdims=True)
    held = HeldOut(LABELS, tuple(f"img{i}.png" for i in range(n)), sources, y, np.array(LABELS)[y], probs)
    return score(held)


def build(out: Path) -> Path:
    """Builds the bundle into ``out`` (created) and returns it."""
    import keras

    from cxr_edge.bundle.card import LOSO_NOTE, CardTask, LosoRecord, ModelCard
    from cxr_edge.bundle.entries import ModelEntry, SegmenterEntry
    from cxr_edge.bundle.folder import Bundle, write_manifest
    from cxr_edge.bundle.manifest import FORMAT_VERSION, BundleManifest, EnsembleConfig, LungEvidence
    from cxr_edge.convert.members import cam_weights
    from cxr_edge.convert.tflite import to_tflite, to_tflite_variants
    from cxr_edge.hashing import file_sha256
    from cxr_edge.ops.quality import ReferralBand
    from cxr_edge.runtime.engine import Engine
    from cxr_edge.runtime.pipeline import Predictor

    class PriorMap(keras.layers.Layer):
        def __init__(self, prior, **kwargs):
            super().__init__(**kwargs)
            self.prior = prior

        def build(self, input_shape):
            init = keras.initializers.Constant(self.prior)
            self.map = self.add_weight(
                shape=self.prior.shape, initializer=init, trainable=False, name="prior"
            )

        def call(self, x):
            return x + self.map

    size = 64
    yy, xx = np.mgrid[0:size, 0:size] / size
    ellipse = np.minimum(((xx - 0.32) / 0.16) ** 2, ((xx - 0.68) / 0.16) ** 2) + ((yy - 0.5) / 0.32) ** 2
    prior = (4.0 * (1.0 - ellipse)).clip(-6, 6)[..., None].astype(np.float32)
    inp = keras.Input((size, size, 1))
    smooth = keras.layers.Conv2D(1, 5, padding="same", kernel_initializer=keras.initializers.Constant(-0.06))(
        inp
    )
    segmenter = keras.Model(inp, keras.layers.Activation("sigmoid", name="mask")(PriorMap(prior)(smooth)))

    out.mkdir(parents=True, exist_ok=True)
    images = [read_image(p)[0] for p in sorted(samples_dir().glob("*.png"))[:8]]
    seg_spec, spec = PreprocessSpec(input_size=(size, size)), PreprocessSpec(input_size=(32, 32))
    seg_file = out / "tinyseg-int8.tflite"
    seg_file.write_bytes(to_tflite(segmenter, "int8", [preprocess(im, seg_spec) for im in images]))
    seg = Engine(seg_file)
    seg_entry = SegmenterEntry(
        name=seg_file.stem,
        file=seg_file.name,
        sha256=file_sha256(seg_file),
        quant="int8",
        input=seg.input_spec,
        outputs={"mask": seg.output_spec},
        params=int(segmenter.count_params()),
        macs=0,
        preprocess=seg_spec,
        crop=CropSpec(),
    )
    calibration = [preprocess(im, spec) for im in images]
    models = []
    for name, channels, quant, seed in (
        ("tiny-fp32", 1, "fp32", 0),
        ("tiny-int8", 1, "int8", 1),
        ("tiny3-fp16", 3, "fp16", 2),
    ):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((32, 32, channels))
        x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="features")(x)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Dropout(0.1)(x))
        model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="probs")(x))
        calib = [np.repeat(c, channels, axis=-1) for c in calibration] if quant == "int8" else None
        file = out / f"{name}.tflite"
        file.write_bytes(to_tflite_variants(model, [quant], calib, outputs=("probs", "features"))[quant])
        engine = Engine(file)
        models.append(
            ModelEntry(
                name=name,
                file=file.name,
                sha256=file_sha256(file),
                architecture="tiny_cnn",
                quant=quant,
                input=engine.input_spec,
                outputs=engine.output_specs,
                params=int(model.count_params()),
                cam_weights=cam_weights(model),
            )
        )
    members = tuple(m.name for m in models)
    ensemble = EnsembleConfig(method="weighted", members=members, weights=(0.5, 0.3, 0.2), temperature=1.3)
    manifest = BundleManifest(
        format_version=FORMAT_VERSION,
        name="tiny-segmenter-test",
        labels=LABELS,
        preprocess=spec,
        models=tuple(models),
        ensemble=ensemble,
        provenance={"purpose": "segmenter-path tests (web, Android, Python)"},
        segmenter=seg_entry,
        label_map=dict(LABEL_MAP),
    )
    write_manifest(out, manifest)
    # Thresholds at the median over the samples, so that both sides of each occur.
    predictor = Predictor(Bundle.load(out))
    preds = [predictor.predict_image(im) for im in images]
    tops = sorted(max(p.probs.values()) for p in preds)
    fractions = sorted(p.lung_fraction for p in preds if p.lung_fraction is not None)
    assert len(fractions) >= 2, "the tiny segmenter should find lungs on most samples"
    band = ReferralBand(min_top_prob=float(np.median(tops)), min_margin=0.0)
    evidence = LungEvidence(
        min_fraction=float(np.median(fractions)), chosen_on="median over the shipped samples"
    )
    card = ModelCard(
        intended_use="Tests of the segmenter path in every runtime.",
        task=CardTask(labels=LABELS, label_map=dict(LABEL_MAP)),
        training_data={"hannover": {"covid": 16}, "nih": {"normal": 12, "pneumonia_unknown": 12}},
        loso=LosoRecord(
            recipe="tiny",
            command="cxr-edge loso train --config tiny.toml",
            report=synthetic_loso_report(),
            note=LOSO_NOTE,
        ),
        failure_modes=FAILURE_MODES,
    )
    write_manifest(
        out,
        dataclasses.replace(
            manifest,
            ensemble=dataclasses.replace(ensemble, abstain=band),
            lung_evidence=evidence,
            card=card,
        ),
    )
    return out


def default_as_format3(dst: Path, **changes) -> Path:
    """A copy of the first release's (format-2) default bundle rewritten as format 3 with ``changes``.

    ``changes`` are :class:`cxr_edge.bundle.manifest.BundleManifest` fields; ``abstain`` and
    ``temperature`` go into the ensemble. Without a ``card`` the copy gets a minimal one (no LOSO).
    """
    import shutil

    from conftest import FIRST_RELEASE_BUNDLE

    from cxr_edge.bundle.card import CardTask, ModelCard
    from cxr_edge.bundle.folder import Bundle, write_manifest

    shutil.copytree(FIRST_RELEASE_BUNDLE, dst)
    manifest = Bundle.load(dst).manifest
    ensemble = manifest.ensemble
    for key in ("abstain", "temperature"):
        if key in changes:
            ensemble = dataclasses.replace(ensemble, **{key: changes.pop(key)})
    changes.setdefault(
        "card",
        ModelCard(
            intended_use="Tests.",
            task=CardTask(labels=manifest.labels, label_map=changes.get("label_map", {})),
        ),
    )
    write_manifest(dst, dataclasses.replace(manifest, format_version=3, ensemble=ensemble, **changes))
    return dst
