"""Bundles are verified on load: tampered, incomplete or inconsistent bundles are refused clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cxr_edge.bundle.folder import Bundle, default_bundle_path, write_manifest
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.errors import BundleError
from cxr_edge.runtime.pipeline import Predictor


@pytest.fixture
def bundle_copy(tmp_path, first_release_bundle):
    """A writable copy of the first release's format-2 bundle (one custom CNN, fp32/fp16/int8)."""
    dst = tmp_path / "bundle"
    shutil.copytree(first_release_bundle, dst)
    return dst


def edit_manifest(root, change):
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_default_bundle_is_complete_and_consistent():
    """The shipped default is LOSO's choice: the whole film, an int8 ensemble of three pruned CNNs, and a
    segmenter that only checks the evidence (the paper's lung crop is the ``paper`` preset)."""
    bundle = Bundle.load()
    m = bundle.manifest
    assert bundle.root == default_bundle_path()
    assert m.format_version == 3 and m.labels == ("covid", "normal", "pneumonia")
    assert set(m.label_map) == {"bacterial", "viral", "pneumonia_unknown"}
    assert {e.quant for e in m.models} == {"fp32", "int8"}
    assert len(m.ensemble.members) >= 3 and m.ensemble.method == "mean"
    # int8 where the gate passes; a member whose int8 variant failed runs fp32, recorded in provenance.
    fell_back = {f["run"] for f in m.provenance["member_fallbacks"]}
    for name in m.ensemble.members:
        stem, quant = name.rsplit("-", 1)
        assert m.model(name).gate["passed"] and quant == ("fp32" if stem in fell_back else "int8")
    assert sum(m.model(n).quant == "int8" for n in m.ensemble.members) >= 2
    # Iteratively pruned to the level LOSO chose (8%): fewer parameters than the unpruned model.
    assert all(m.model(n).pruned_fraction >= 0.08 for n in m.ensemble.members)
    assert all(m.model(n).params < m.model(n).params_unpruned for n in m.ensemble.members)
    assert all(e.cam_weights is not None for e in m.models)
    assert m.segmenter is not None and m.lung_evidence is not None
    assert m.segmenter.role == "evidence" and not m.segmenter.crops
    assert m.selftest is not None
    assert m.ensemble.abstain is not None and m.ensemble.temperature > 0
    assert m.card is not None and m.card.loso.report is not None  # LOSO results in the card
    assert m.card.shortcut_audit is not None
    prov = m.provenance
    assert len(prov["data_manifest_sha256"]) == 64 and len(prov["split_sha256"]) == 64
    assert prov["max_per_part"] is None  # trained on the whole kit split, not a quick subset
    assert bundle.size_bytes() < 25 * 1024 * 1024


def test_default_bundle_split_is_the_committed_one():
    from pathlib import Path

    from cxr_edge.hashing import file_sha256

    committed = Path(__file__).resolve().parents[2] / "splits" / "kit.csv"
    assert Bundle.load().manifest.provenance["split_sha256"] == file_sha256(committed)


def test_manifest_round_trips(tmp_path):
    m = Bundle.load().manifest
    write_manifest(tmp_path, m)
    assert BundleManifest.from_dict(json.loads((tmp_path / "manifest.json").read_text())) == m


def test_tampered_model_is_refused(bundle_copy):
    model = next(bundle_copy.glob("*.tflite"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"checksum mismatch for {model.name}"):
        Bundle.load(bundle_copy)


def test_incomplete_bundle_is_refused(bundle_copy):
    next(bundle_copy.glob("*.tflite")).unlink()
    with pytest.raises(BundleError, match="incomplete"):
        Bundle.load(bundle_copy)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        Bundle.load(tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(format_version=99), "unsupported bundle format"),
        (lambda d: d.update(colour="blue"), "does not follow its schema.*'colour' was unexpected"),
        (lambda d: d["ensemble"].update(members=["nope"]), "unknown models"),
        (lambda d: d["ensemble"].update(method="median"), "ensemble method"),
        (lambda d: d.update(labels=["covid", "covid", "normal"]), "label"),
        (lambda d: d["preprocess"].update(input_size=[128, 128]), "does not match the preprocessing"),
        (lambda d: d["models"][0].update(file="../escape.tflite"), "outside the bundle|incomplete"),
        (lambda d: d["models"][0].pop("sha256"), "schema at models/0: 'sha256' is a required property"),
        (lambda d: d["models"][0].update(params="many"), "schema at models/0/params"),
        (lambda d: d["models"][0].update(outputs={}), "no probability output"),
        (lambda d: d["models"][0]["outputs"]["probs"].update(dtype="float64"), "dtype"),
    ],
)
def test_inconsistent_manifests_are_refused(bundle_copy, change, match):
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError, match=match):
        Bundle.load(bundle_copy)


def test_invalid_json_is_refused(bundle_copy):
    (bundle_copy / "manifest.json").write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(bundle_copy)


def test_manifest_that_lies_about_quantisation_is_refused(bundle_copy):
    def lie(d):
        for model in d["models"]:
            if model["quant"] == "int8":
                model["input"]["scale"] *= 2

    edit_manifest(bundle_copy, lie)
    with pytest.raises(BundleError, match="input does not match the model file"):
        Predictor(Bundle.load(bundle_copy), members=["custom_cnn-int8"])


def test_fp32_and_int8_members_agree_on_a_sample():
    from cxr_edge.dataset.samples import load_samples

    bundle = Bundle.load()
    names = {e.quant: e.name for e in bundle.manifest.models}
    sample = load_samples()[0].file
    p32 = Predictor(bundle, members=[names["fp32"]]).predict_file(sample).probs
    p8 = Predictor(bundle, members=[names["int8"]]).predict_file(sample).probs
    np.testing.assert_allclose(list(p8.values()), list(p32.values()), atol=0.1)


def test_committed_schema_is_the_generated_one():
    from cxr_edge.bundle.manifest import SCHEMA_FILE, manifest_schema

    assert json.loads(SCHEMA_FILE.read_text()) == manifest_schema(), "regenerate it with `make schema`"


def test_version_1_manifests_still_load(bundle_copy):
    edit_manifest(bundle_copy, lambda d: d.update(format_version=1))
    assert Bundle.load(bundle_copy).manifest.format_version == 1


# ------------------------------------------------------------------------------------------ format 3


def test_format_3_round_trips_with_every_new_field(tmp_path):
    from tiny_bundle import LABELS, synthetic_loso_report

    from cxr_edge.bundle.card import LOSO_NOTE, CardTask, LosoRecord, ModelCard
    from cxr_edge.bundle.manifest import FORMAT_VERSION, READABLE_VERSIONS, SCHEMA_FILE
    from cxr_edge.ops.quality import ReferralBand

    assert FORMAT_VERSION == 3 and READABLE_VERSIONS == (1, 2, 3, 4)  # 4: site-calibrated bundles only
    label_map = {"bacterial": "pneumonia_unknown", "viral": "pneumonia_unknown"}
    card = ModelCard(
        intended_use="Round trip.",
        task=CardTask(LABELS, label_map),
        training_data={"nih": {"normal": 3, "pneumonia_unknown": 2}},
        loso=LosoRecord("tiny", "cxr-edge loso ...", synthetic_loso_report(), LOSO_NOTE),
        in_distribution={"val": {"n": 2, "accuracy": {"k": 1, "n": 2, "value": 0.5, "ci": [0.01, 0.99]}}},
        failure_modes=("fails on lateral films",),
    )
    from tiny_bundle import default_as_format3

    root = default_as_format3(
        tmp_path / "b3", label_map=label_map, abstain=ReferralBand(0.55, 0.1), temperature=1.5, card=card
    )
    data = json.loads((root / "manifest.json").read_text())
    assert data["format_version"] == 3 and data["label_map"] == label_map
    assert data["ensemble"]["abstain"] == {"min_top_prob": 0.55, "min_margin": 0.1}
    assert data["card"]["disclaimer"].startswith("Not a medical device")
    import jsonschema

    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    m = Bundle.load(root).manifest
    assert m.card == card and m.label_map == label_map and m.ensemble.abstain == ReferralBand(0.55, 0.1)
    assert m.lung_evidence is None  # no segmenter
    write_manifest(tmp_path, m)
    assert BundleManifest.from_dict(json.loads((tmp_path / "manifest.json").read_text())) == m


def test_version_2_manifests_still_load_and_may_not_use_format_3_fields(bundle_copy):
    assert Bundle.load(bundle_copy).manifest.format_version == 2  # the shipped bundle, as it is
    edit_manifest(bundle_copy, lambda d: d.update(label_map={"bacterial": "pneumonia_unknown"}))
    with pytest.raises(BundleError, match=r"format 2 manifest uses format-3 fields; .*received label_map"):
        Bundle.load(bundle_copy)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda d: d.update(label_map={"bacterial": "pneumonia"}),
            "label map names labels the bundle does not",
        ),
        (
            lambda d: d.update(lung_evidence={"min_fraction": 0.3, "chosen_on": "x"}),
            "lung_evidence needs a segmenter",
        ),
        (lambda d: d.update(lung_evidence={"min_fraction": 1.3, "chosen_on": "x"}), "min_fraction"),
        (lambda d: d["ensemble"].update(abstain={"min_top_prob": 2.0}), "referral band"),
        (lambda d: d["card"].update(disclaimer="Approved for clinical use"), "card/disclaimer"),
        (lambda d: d["card"]["task"].update(labels=["a", "b", "c"]), "model card describes other labels"),
        (lambda d: d["card"].update(intended_use=" "), "intended use"),
        (lambda d: d["card"]["loso"].update(report={"labels": []}), "not a LOSO report"),
    ],
)
def test_inconsistent_format_3_manifests_are_refused(tmp_path, change, match):
    from tiny_bundle import default_as_format3

    root = default_as_format3(tmp_path / "b3")
    edit_manifest(root, change)
    with pytest.raises(BundleError, match=match):
        Bundle.load(root)


def test_a_card_always_carries_the_disclaimer():
    from cxr_edge.bundle.card import DISCLAIMER, CardTask, ModelCard
    from cxr_edge.errors import SpecError

    card = ModelCard.from_dict({"intended_use": "x", "task": {"labels": ["a", "b"]}})  # no disclaimer key
    assert card.disclaimer == DISCLAIMER and card.to_dict()["disclaimer"].startswith("Not a medical device")
    assert card.loso.report is None and card.loso.note == "no leave-one-source-out evaluation recorded"
    with pytest.raises(SpecError, match="disclaimer"):
        ModelCard(intended_use="x", task=CardTask(("a", "b")), disclaimer="Safe to use")
    with pytest.raises(SpecError):
        ModelCard.from_dict({"intended_use": "x", "task": {"labels": ["a"]}, "disclaimer": ""})


def test_abstention_band_is_applied_after_the_temperature(tmp_path):
    """A top probability above the band before the temperature and below it after: referred."""
    from conftest import FIRST_RELEASE_BUNDLE
    from tiny_bundle import default_as_format3

    from cxr_edge.dataset.samples import load_samples
    from cxr_edge.ops.ensemble import apply_temperature
    from cxr_edge.ops.quality import ReferralBand

    sample = load_samples()[0].file
    first = Bundle.load(FIRST_RELEASE_BUNDLE)
    plain = Predictor(first).predict_file(sample)
    member = plain.per_model[first.manifest.ensemble.members[0]]
    raw_top = max(member.values())
    hot = 8.0  # a high temperature flattens the probabilities
    tempered = apply_temperature(np.array(list(member.values())), hot)
    band = ReferralBand(min_top_prob=round((raw_top + float(tempered.max())) / 2, 4))
    assert float(tempered.max()) < band.min_top_prob < raw_top
    root = default_as_format3(tmp_path / "b3", abstain=band, temperature=hot)
    pred = Predictor(Bundle.load(root)).predict_file(sample)
    np.testing.assert_allclose(list(pred.probs.values()), tempered, atol=1e-9)
    assert pred.referral == f"top probability {tempered.max():.2f} below {band.min_top_prob:.2f}"
    cold = default_as_format3(tmp_path / "cold", abstain=band, temperature=1.0)
    assert Predictor(Bundle.load(cold)).predict_file(sample).referral is None  # untempered: above the band
    assert plain.referral is None and plain.lung_fraction is None and plain.flags == ()
