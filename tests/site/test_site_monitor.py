"""Drift without labels (cxr_edge.site.monitor): reading records, PSI, EM prevalence, `site monitor`,
and the drift line of `serve health`."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle, bundle_sha256
from cxr_edge.cli import main
from cxr_edge.ops.site import SiteCalibration, softmax
from cxr_edge.serve.audit import AuditLog
from cxr_edge.site.monitor import PSI_THRESHOLD, em_prevalence, expected_mix, monitor, psi, read_probs

LABELS = ("covid", "normal", "pneumonia")


def _probs(n: int, mix: tuple[float, float, float], seed: int = 0) -> np.ndarray:
    """Confident outputs whose argmax follows ``mix``."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=mix)
    return softmax(rng.normal(0, 0.5, size=(n, 3)) + 2.5 * np.eye(3)[y])


def _calibrated_manifest(reference_probs: np.ndarray):
    from cxr_edge.site.calibrate import reference

    m = Bundle.load().manifest
    site = SiteCalibration(
        "s",
        "2026-12-01",
        "0" * 64,
        "prior",
        {"normal": 50, "pneumonia": 50},
        100,
        reference=reference(reference_probs, LABELS),
    )
    return dataclasses.replace(m, format_version=4, site=site)


def test_psi_is_zero_for_equal_distributions_and_grows_with_the_shift():
    ref = np.array([0.2, 0.5, 0.3])
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert psi(np.array([0.2, 0.4, 0.4]), ref) < PSI_THRESHOLD < psi(np.array([0.05, 0.15, 0.8]), ref)


def test_em_recovers_the_site_prevalence():
    # Calibrated posteriors under equal priors; the site has 80% abnormal.
    rng = np.random.default_rng(1)
    n = 5000
    y = rng.choice([1, 2], size=n, p=[0.2, 0.8])
    z = np.zeros((n, 3))
    z[:, 0] = -8
    z[:, 2] = rng.normal(np.where(y == 2, 1.0, -1.0), 1.0) * 2.0  # log-likelihood ratio of N(+-1, 1)
    prevalence = em_prevalence(softmax(z), np.array([0.0, 0.5, 0.5]))
    assert prevalence[2] == pytest.approx(0.8, abs=0.03) and prevalence[0] < 0.01


def test_monitor_flags_a_changed_class_mix_and_not_an_unchanged_one():
    manifest = _calibrated_manifest(_probs(200, (0.1, 0.45, 0.45), seed=2))
    same = monitor(manifest, _probs(300, (0.1, 0.45, 0.45), seed=3))
    assert same["drift"] is False and same["reference"].startswith("site calibration")
    shifted = monitor(manifest, _probs(300, (0.1, 0.1, 0.8), seed=4))
    assert shifted["drift"] is True and "class_mix_psi" in shifted["verdict"]
    assert shifted["prevalence_em"]["pneumonia"] > 0.6
    assert monitor(manifest, _probs(20, (0.1, 0.1, 0.8)))["drift"] is None  # too few for a verdict


def test_an_uncalibrated_bundle_is_compared_with_its_training_mix():
    mix, hist, source = expected_mix(Bundle.load().manifest)
    assert hist is None and source.startswith("training split") and mix.sum() == pytest.approx(1.0)


def test_rows_and_audit_logs_are_read_and_other_bundles_skipped(tmp_path):
    probs = _probs(60, (0.2, 0.4, 0.4), seed=5)
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="") as f:
        w = csv.DictWriter(f, ["path", "status", "error", "label", *(f"prob_{k}" for k in LABELS)])
        w.writeheader()
        for i, p in enumerate(probs):
            w.writerow(
                {
                    "path": f"{i}.png",
                    "status": "ok",
                    **{f"prob_{k}": v for k, v in zip(LABELS, p, strict=True)},
                }
            )
        w.writerow({"path": "bad.png", "status": "error", "error": "InputError: x"})
    np.testing.assert_allclose(read_probs(rows, LABELS), probs)

    audit = AuditLog(tmp_path / "audit.jsonl")
    for i, p in enumerate(probs):
        sha = "a" * 64 if i % 2 else "b" * 64
        audit.append(
            {
                "instance": str(i),
                "bundle": {"name": "x", "sha256": sha},
                "decision": "classified",
                "probs": dict(zip(LABELS, p.tolist(), strict=True)),
            }
        )
    audit.append(
        {"instance": "r", "bundle": {"name": "x", "sha256": "a" * 64}, "decision": "rejected", "probs": None}
    )
    audit.close()
    assert len(read_probs(tmp_path / "audit.jsonl", LABELS)) == 60
    np.testing.assert_allclose(read_probs(tmp_path / "audit.jsonl", LABELS, "a" * 64), probs[1::2])


def test_site_monitor_command_and_serve_health_show_the_drift(tmp_path):
    from cxr_edge.cli.serve import _drift
    from cxr_edge.serve.config import ServeConfig, StorageConfig

    bundle = Bundle.load()
    audit = AuditLog(tmp_path / "audit.jsonl")
    for i, p in enumerate(_probs(120, (0.9, 0.05, 0.05), seed=6)):  # nearly all covid: not the training mix
        audit.append(
            {
                "instance": str(i),
                "bundle": {"name": "d", "sha256": bundle_sha256(bundle)},
                "decision": "classified",
                "probs": dict(zip(LABELS, p.tolist(), strict=True)),
            }
        )
    audit.close()
    result = CliRunner().invoke(main, ["site", "monitor", str(tmp_path / "audit.jsonl")])
    assert result.exit_code == 0, result.output
    assert (
        result.output.startswith("120 predictions against training split")
        and "drift: class_mix_psi" in result.output
    )
    config = ServeConfig(storage=StorageConfig(audit=str(tmp_path / "audit.jsonl")))
    assert _drift(config, 500).startswith("DRIFT SUSPECTED: drift: class_mix_psi")
    assert (
        _drift(ServeConfig(storage=StorageConfig(audit=str(tmp_path / "none.jsonl"))), 500)
        == "drift: no audit log yet"
    )
