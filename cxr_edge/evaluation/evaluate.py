"""``cxr-edge evaluate``: a bundle on a labelled manifest, with intervals, paired tests and calibration.

Every image goes through the bundle's own pipeline (:class:`cxr_edge.runtime.pipeline.Predictor`: read ->
segment -> lung crop when the bundle has a segmenter -> preprocess -> every model), so a lung-crop
bundle is evaluated on the pixels it classifies in use. Manifest labels are mapped through the
bundle's ``label_map`` first (``bacterial -> pneumonia``...). The members' probabilities are then
combined with every method the bundle can do. For each model and method:

* accuracy with a Clopper-Pearson interval; sensitivity/specificity per class with Clopper-Pearson;
* AUC per class (one-vs-rest) with DeLong intervals; macro AUC and MCC with a *patient-level*,
  label-stratified bootstrap (images of one patient are resampled together);
* the paper's "Clopper-Pearson on the AUC", labelled as such (``auc_macro_ci_paper``) -- it is not a
  valid AUC interval and is reported only for comparison with Rajaraman et al. (2020);
* calibration: expected calibration error, Brier score and the reliability curve.

Paired tests: McNemar (accuracy) and paired DeLong (per-class AUC) of the ensemble against its best
member (chosen on the *validation* metrics stored in the bundle, not on the data evaluated here).
Results are also broken down by source, because in the kit the source gives the label away. With a
segmenter, ``lung_evidence`` summarises the lung fraction of the ensemble's heat maps (mean, median,
share flagged "evidence outside the lungs") overall and per source; with an referral band,
``abstain`` says how many images it refers and how accurate the rest is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from cxr_edge.bundle.folder import Bundle
from cxr_edge.config import to_dict
from cxr_edge.dataset.manifest import Record
from cxr_edge.errors import CxrEdgeError, InputError
from cxr_edge.evaluation.card_stats import lung_evidence_stats, referral_results
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.evaluation.stats import (
    auc_ci_clopper_pearson,
    bootstrap_ci,
    brier_score,
    clopper_pearson,
    delong,
    delong_paired,
    expected_calibration_error,
    mcnemar,
    reliability_curve,
)
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.ensemble import combine
from cxr_edge.runtime.engine import Engine, normalise
from cxr_edge.runtime.pipeline import Predictor


@dataclass
class Predictions:
    """Per-image outputs of every model of a bundle on a manifest.

    Attributes:
        records: The records that were classified, in order, with bundle labels (the manifest's label
            in ``raw_label`` where the label map renamed it).
        y: True class indices (bundle label order).
        per_model: ``{model name: (n, k) probabilities}`` for every model in the bundle.
        skipped: ``[(path, reason)]`` for rows that could not be used (unknown label, unreadable file).
        lung_fraction: Lung fraction of the ensemble's heat map per image (None where undefined).
        flags: The ensemble prediction's flags per image.
        referral: The ensemble prediction's referral per image (None: not referred).
        crop: The crop per image (``lung``, ``fallback`` or ``none``).
    """

    records: list[Record]
    y: np.ndarray
    per_model: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    lung_fraction: list[float | None] = field(default_factory=list)
    flags: list[tuple[str, ...]] = field(default_factory=list)
    referral: list[str | None] = field(default_factory=list)
    crop: list[str] = field(default_factory=list)


def bundle_label(bundle: Bundle, record: Record) -> str:
    """The bundle label of a manifest row: its manifest label through the bundle's label map."""
    raw = record.manifest_label
    return bundle.manifest.label_map.get(raw, raw)


def predict_records(
    bundle: Bundle, records: Sequence[Record], *, threads: int = 1, progress: bool = True
) -> Predictions:
    """Runs the bundle's pipeline and every model on ``records``; bad rows are skipped and reported.

    The ensemble members run inside :class:`cxr_edge.runtime.pipeline.Predictor` (segmenter, crop, combiner,
    heat map, lung fraction, referral); the bundle's other models run on the same prepared input.
    """
    labels = bundle.labels
    predictor = Predictor(bundle, threads=threads)
    others = {
        e.name: Engine(bundle.path_of(e), e, threads=threads)
        for e in bundle.manifest.models
        if e.name not in predictor.member_names
    }
    out = Predictions([], np.array([], dtype=int), {})
    y = []
    outputs: dict[str, list[np.ndarray]] = {e.name: [] for e in bundle.manifest.models}
    for record in tqdm(records, desc="evaluate", unit="img", disable=not progress):
        label = bundle_label(bundle, record)
        if label not in labels:
            mapped = f" (manifest label {record.manifest_label!r})" if label != record.manifest_label else ""
            out.skipped.append(
                (record.path, f"label {label!r}{mapped} is not one of the bundle's {list(labels)}")
            )
            continue
        try:
            image, info = read_image(record.file)
            prepared = predictor.prepare(image)
            pred = predictor.classify(prepared, info)
        except CxrEdgeError as exc:
            out.skipped.append((record.path, f"{type(exc).__name__}: {exc}"))
            continue
        for name in predictor.member_names:
            outputs[name].append(np.array([pred.per_model[name][lab] for lab in labels], dtype=np.float32))
        for name, engine in others.items():
            outputs[name].append(normalise(engine.run_all(prepared.x)["probs"], engine.output_specs["probs"]))
        if label != record.label:
            record = replace(record, label=label, raw_label=record.manifest_label)
        out.records.append(record)
        out.lung_fraction.append(pred.lung_fraction)
        out.flags.append(pred.flags)
        out.referral.append(pred.referral)
        out.crop.append(pred.crop)
        y.append(labels.index(label))
    if not out.records:
        raise InputError(
            "nothing to evaluate",
            expected="readable images with the bundle's labels",
            received=f"{len(out.skipped)} rows skipped",
        )
    out.y = np.array(y)
    out.per_model = {n: np.stack(v) for n, v in outputs.items()}
    return out


def method_probs(bundle: Bundle, preds: Predictions) -> dict[str, np.ndarray]:
    """Combined probabilities of every method the bundle can do (``weighted``/``stacking`` need fitted
    parameters in the manifest). No temperature: that belongs to the bundle's configured method."""
    ens = bundle.manifest.ensemble
    stacked = np.stack([preds.per_model[m] for m in ens.members])
    out = {"vote": combine(stacked, "vote"), "mean": combine(stacked, "mean")}
    if ens.weights is not None:
        out["weighted"] = combine(stacked, "weighted", ens.weights)
    if ens.stacking is not None:
        out["stacking"] = combine(stacked, "stacking", stacker=ens.stacking)
    return out


def ensemble_probs(bundle: Bundle, preds: Predictions) -> np.ndarray:
    """The bundle's configured ensemble, temperature and site calibration included (what ``cxr-edge
    predict`` outputs)."""
    manifest = bundle.manifest
    return manifest.output(np.stack([preds.per_model[m] for m in manifest.ensemble.members]))


def metric_block(
    y: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    groups: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Point metrics with intervals and calibration for one set of probabilities."""
    m = classification_metrics(y, probs, labels)
    correct = probs.argmax(axis=1) == y
    per_class = {}
    for c, label in enumerate(labels):
        pc = m["per_class"][label]
        positive = y == c
        entry = {k: pc[k] for k in ("n", "auc", "sensitivity", "specificity", "precision", "f1")}
        tp = int((correct & positive).sum())
        tn = int(((probs.argmax(axis=1) != c) & ~positive).sum())
        entry["sensitivity_ci"] = list(clopper_pearson(tp, int(positive.sum()))) if positive.any() else None
        entry["specificity_ci"] = (
            list(clopper_pearson(tn, int((~positive).sum()))) if (~positive).any() else None
        )
        enough = positive.sum() >= 2 and (~positive).sum() >= 2
        entry["auc_ci"] = delong(probs[:, c], positive)["ci"] if enough else None
        per_class[label] = entry

    def macro_auc(idx):
        return classification_metrics(y[idx], probs[idx], labels)["auc_macro"]

    def mcc(idx):
        return classification_metrics(y[idx], probs[idx], labels)["mcc"]

    auc_boot = bootstrap_ci(macro_auc, len(y), groups=groups, strata=y, n_boot=n_boot, seed=seed)
    mcc_boot = bootstrap_ci(mcc, len(y), groups=groups, strata=y, n_boot=n_boot, seed=seed)
    return {
        "n": len(y),
        "accuracy": m["accuracy"],
        "accuracy_ci": list(clopper_pearson(int(correct.sum()), len(y))),
        "auc_macro": m["auc_macro"],
        "auc_macro_ci": auc_boot["ci"] if m["auc_macro"] is not None else None,
        "auc_macro_ci_paper": (
            list(auc_ci_clopper_pearson(m["auc_macro"], len(y))) if m["auc_macro"] is not None else None
        ),
        "sensitivity_macro": m["sensitivity_macro"],
        "precision_macro": m["precision_macro"],
        "f1_macro": m["f1_macro"],
        "mcc": m["mcc"],
        "mcc_ci": mcc_boot["ci"] if m["mcc"] is not None else None,
        "per_class": per_class,
        "confusion": m["confusion"],
        "ece": expected_calibration_error(probs, y),
        "brier": brier_score(probs, y),
        "reliability": reliability_curve(probs, y),
    }


def by_source(y: np.ndarray, probs: np.ndarray, records: Sequence[Record], labels: Sequence[str]) -> dict:
    """``{source: {"n", "accuracy", "auc_macro"}}`` (AUC is null where a source holds one class)."""
    sources = np.array([r.source for r in records])
    out = {}
    for s in sorted(set(sources)):
        mask = sources == s
        m = classification_metrics(y[mask], probs[mask], labels)
        out[s] = {"n": int(mask.sum()), "accuracy": m["accuracy"], "auc_macro": m["auc_macro"]}
    return out


def lung_evidence(bundle: Bundle, preds: Predictions) -> dict | None:
    """Lung fractions of the ensemble's heat maps overall and per source (None without a segmenter).

    ``{"min_fraction", "chosen_on", "split", "overall": {"n", "mean", "median", "flagged"}, "by_source":
    {source: {...}}, "fallback_crops": int}``; ``flagged`` is the share of images with a lung fraction
    below ``min_fraction`` (null when the bundle has no threshold).
    """
    if bundle.manifest.segmenter is None:
        return None
    evidence = bundle.manifest.lung_evidence
    stats = lung_evidence_stats(
        preds.lung_fraction,
        [r.source for r in preds.records],
        evidence.min_fraction if evidence else None,
        "evaluated rows",
    )
    return (
        {
            "min_fraction": evidence.min_fraction if evidence else None,
            "chosen_on": evidence.chosen_on if evidence else None,
        }
        | {k: v for k, v in to_dict(stats).items() if k != "min_fraction"}
        | {"fallback_crops": sum(c == "fallback" for c in preds.crop)}
    )


def paired(y: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray, labels: Sequence[str]) -> dict:
    """McNemar on correctness and paired DeLong per class, A versus B on the same images."""
    out = {"mcnemar": mcnemar(probs_a.argmax(1) == y, probs_b.argmax(1) == y), "delong": {}}
    for c, label in enumerate(labels):
        positive = y == c
        if positive.sum() >= 2 and (~positive).sum() >= 2:
            out["delong"][label] = delong_paired(probs_a[:, c], probs_b[:, c], positive)
    return out


def best_member(bundle: Bundle, preds: Predictions) -> str:
    """The member with the best *validation* macro AUC recorded in the bundle (first member if none)."""
    members = bundle.manifest.ensemble.members

    def val_auc(name):
        auc = bundle.manifest.model(name).metrics.get("val", {}).get("auc_macro")
        return -1.0 if auc is None else auc

    return max(members, key=val_auc)


def counterpart(name: str, others: Sequence[str]) -> str | None:
    """The model of another bundle that ``name`` is compared with: the same name, or the unpruned one.

    Pruned members are named ``RUN-pruned-QUANT`` (``cxr_edge.convert.members.member_stems``), their sources
    ``RUN-QUANT``.
    """
    for candidate in (name, name.replace("-pruned-", "-")):
        if candidate in others:
            return candidate
    return None


def compare(
    bundle: Bundle, preds: Predictions, other: Bundle, *, threads: int = 1, progress: bool = True
) -> dict:
    """Paired tests of ``bundle`` against ``other`` on the same images (e.g. pruned vs unpruned).

    The ensemble is compared with the other bundle's ensemble, and every model with its counterpart
    (:func:`counterpart`) where there is one. Images the other bundle cannot use are left out of
    every comparison and counted.
    """
    if tuple(other.labels) != tuple(bundle.labels):
        raise InputError(
            "bundles with different labels cannot be compared",
            expected=str(list(bundle.labels)),
            received=str(list(other.labels)),
        )
    theirs = predict_records(other, preds.records, threads=threads, progress=progress)
    index = {r.path: i for i, r in enumerate(preds.records)}
    keep = np.array([index[r.path] for r in theirs.records], dtype=int)
    y, labels = preds.y[keep], bundle.labels
    out: dict = {
        "baseline_bundle": other.manifest.name,
        "n": len(keep),
        "left_out": len(preds.records) - len(keep),
        "ensemble": paired(y, ensemble_probs(bundle, preds)[keep], ensemble_probs(other, theirs), labels),
        "models": {},
    }
    for name, probs in preds.per_model.items():
        match = counterpart(name, list(theirs.per_model))
        if match is not None:
            out["models"][name] = {"baseline_model": match} | paired(
                y, probs[keep], theirs.per_model[match], labels
            )
    return out


def evaluate(
    bundle: Bundle, records: Sequence[Record], *, n_boot: int = 2000, threads: int = 1, progress: bool = True
) -> tuple[dict, Predictions]:
    """Evaluates a bundle on labelled records; returns the ``metrics.json`` content and predictions."""
    preds = predict_records(bundle, records, threads=threads, progress=progress)
    labels, y = bundle.labels, preds.y
    groups = np.array([r.patient_id for r in preds.records])
    ens = bundle.manifest.ensemble
    ens_probs = ensemble_probs(bundle, preds)
    block = {"method": ens.method, "temperature": ens.temperature, "members": list(ens.members)}
    result = {
        "labels": list(labels),
        "n": len(y),
        "skipped": [{"path": p, "reason": r} for p, r in preds.skipped],
        "ensemble": block | metric_block(y, ens_probs, labels, groups, n_boot=n_boot),
        "models": {n: metric_block(y, p, labels, groups, n_boot=n_boot) for n, p in preds.per_model.items()},
        "methods": {
            n: metric_block(y, p, labels, groups, n_boot=n_boot)
            for n, p in method_probs(bundle, preds).items()
        },
        "by_source": by_source(y, ens_probs, preds.records, labels),
    }
    result["lung_evidence"] = lung_evidence(bundle, preds)
    if ens.abstain is not None:
        result["abstain"] = referral_results(y, ens_probs, labels, ens.abstain)
    if len(ens.members) > 1:
        best = best_member(bundle, preds)
        result["paired"] = {
            "ensemble_vs_best_member": {"best_member": best}
            | paired(y, ens_probs, preds.per_model[best], labels)
        }
    return result, preds
