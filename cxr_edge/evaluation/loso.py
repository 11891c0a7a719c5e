"""Leave-one-source-out (LOSO) scoring: per held-out source, pooled, and the selection score.

A LOSO experiment trains one model per *fold*, each with one source (hospital or collection) left
out of training, and predicts every image of the source it left out. This module turns those
held-out predictions into numbers; training lives in :mod:`cxr_edge.train.loso`. It needs only numpy and
statsmodels, so ``cxr-edge loso report`` and the model card work on a cart.

Numbers reported:

* per held-out source: images, accuracy and, for each class, sensitivity (the class's images found)
  and specificity (other images not called that class), each with a 95% Clopper-Pearson interval,
  plus recall per *manifest* label (e.g. bacterial vs viral within the triage task's pneumonia);
* pooled over all folds: the same on every held-out image (each predicted by the model that never
  saw its source);
* the **recall score**: the mean recall over (source, class) cells. Sources differ in size by
  50x (26 Montreal images, 1200 Kermany), so pooled accuracy is dominated by two sources; every cell
  weighs the same in it;
* **within-source signal** (:mod:`cxr_edge.evaluation.loso_signal`): on held-out sources with two or
  more labels, one-vs-rest and abnormal-vs-normal AUCs with DeLong intervals, and their mean;
* the **selection score**, which model selection in this toolkit maximises: the mean of the recall
  score and the within-source AUC (:data:`~cxr_edge.evaluation.loso_signal.SCORE_DEFINITION`), so that
  a recipe cannot win by moving its operating point alone.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.evaluation import loso_signal
from cxr_edge.evaluation.card_stats import rate
from cxr_edge.formatting import interval

PREDICTIONS = "holdout_predictions.csv"
_FIXED_COLUMNS = ("path", "source", "label", "raw_label")


@dataclass(frozen=True)
class HeldOut:
    """Held-out predictions of one or more folds.

    Attributes:
        labels: Class labels in probability column order.
        paths: Manifest path of each image.
        sources: Source of each image (the fold that predicted it held this source out).
        y: True class index of each image.
        raw_labels: Manifest label of each image (before the task's label map).
        probs: ``(n, k)`` probabilities.
    """

    labels: tuple[str, ...]
    paths: tuple[str, ...]
    sources: np.ndarray
    y: np.ndarray
    raw_labels: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def with_probs(self, probs: np.ndarray) -> HeldOut:
        """The same images with other probabilities (an ensemble's, a temperature's)."""
        if probs.shape != self.probs.shape:
            raise SpecError(
                "probabilities do not fit", expected=str(self.probs.shape), received=str(probs.shape)
            )
        return HeldOut(self.labels, self.paths, self.sources, self.y, self.raw_labels, probs)

    def subset(self, mask: np.ndarray) -> HeldOut:
        """The images where ``mask`` is true."""
        keep = np.asarray(mask, dtype=bool)
        return HeldOut(
            self.labels,
            tuple(p for p, k in zip(self.paths, keep, strict=True) if k),
            self.sources[keep],
            self.y[keep],
            self.raw_labels[keep],
            self.probs[keep],
        )


def write_predictions(
    path: str | Path,
    labels: Sequence[str],
    rows: Sequence[tuple[str, str, str, str]],
    probs: np.ndarray,
) -> Path:
    """Writes held-out predictions: ``path, source, label, raw_label, prob_<label>...`` (no patient ids)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([*_FIXED_COLUMNS, *(f"prob_{lab}" for lab in labels)])
        for row, p in zip(rows, probs, strict=True):
            writer.writerow([*row, *(f"{float(v):.6f}" for v in p)])
    return path


def read_predictions(paths: Sequence[str | Path]) -> HeldOut:
    """Reads and concatenates held-out prediction files (one per fold; same labels).

    Raises:
        SpecError: A file is missing, malformed, or its labels differ from the first file's.
    """
    labels: tuple[str, ...] | None = None
    cols: dict[str, list] = {k: [] for k in _FIXED_COLUMNS}
    probs: list[list[float]] = []
    for file in paths:
        file = Path(file)
        if not file.is_file():
            raise SpecError("held-out predictions not found", expected=f"a {PREDICTIONS}", received=str(file))
        with open(file, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            these = tuple(f[len("prob_") :] for f in fields if f.startswith("prob_"))
            if not set(_FIXED_COLUMNS) <= set(fields) or len(these) < 2:
                raise SpecError(
                    "not a held-out predictions file", expected=str(_FIXED_COLUMNS), received=str(fields)
                )
            if labels is not None and these != labels:
                raise SpecError(
                    "folds disagree on labels", expected=str(labels), received=f"{these} in {file}"
                )
            labels = these
            for row in reader:
                for k in _FIXED_COLUMNS:
                    cols[k].append(row[k])
                probs.append([float(row[f"prob_{lab}"]) for lab in labels])
    if labels is None or not probs:
        raise SpecError(
            "no held-out predictions", expected="at least one fold with images", received=str(paths)
        )
    index = {lab: i for i, lab in enumerate(labels)}
    return HeldOut(
        labels,
        tuple(cols["path"]),
        np.array(cols["source"]),
        np.array([index[v] for v in cols["label"]]),
        np.array([r or lab for r, lab in zip(cols["raw_label"], cols["label"], strict=True)]),
        np.array(probs, dtype=np.float64),
    )


def block(held: HeldOut) -> dict:
    """Accuracy, per-class sensitivity/specificity and per-manifest-label recall, with intervals."""
    pred = held.probs.argmax(axis=1)
    correct = pred == held.y
    out = {
        "n": len(held),
        "accuracy": rate(int(correct.sum()), len(held)),
        "per_class": {},
        "per_raw_label": {},
    }
    for i, lab in enumerate(held.labels):
        pos, neg = held.y == i, held.y != i
        out["per_class"][lab] = {
            "sensitivity": rate(int((pred[pos] == i).sum()), int(pos.sum())),
            "specificity": rate(int((pred[neg] != i).sum()), int(neg.sum())),
        }
    for raw in sorted(set(held.raw_labels.tolist())):
        m = held.raw_labels == raw
        out["per_raw_label"][raw] = rate(int(correct[m].sum()), int(m.sum()))
    return out


def cells(held: HeldOut) -> dict[tuple[str, str], dict]:
    """Recall per (source, class) cell that has images."""
    pred = held.probs.argmax(axis=1)
    out = {}
    for src in sorted(set(held.sources.tolist())):
        for i, lab in enumerate(held.labels):
            m = (held.sources == src) & (held.y == i)
            if m.any():
                out[(src, lab)] = rate(int((pred[m] == i).sum()), int(m.sum()))
    return out


def recall_score(held: HeldOut) -> float:
    """Mean recall over (source, class) cells (the selection score before within-source AUCs counted)."""
    return loso_signal.recall_score(held.sources, held.y, held.probs)


def selection_score(held: HeldOut) -> float:
    """The number LOSO model selection maximises (:data:`loso_signal.SCORE_DEFINITION`)."""
    return loso_signal.selection(held.sources, held.y, held.probs, held.labels)


def score(held: HeldOut) -> dict:
    """The full LOSO report: per source, pooled, cells, the selection score, and the held-out sources
    with a single class (where accuracy and recall reward a model that gives one answer to everything)."""
    sources = sorted(set(held.sources.tolist()))
    recall = recall_score(held)
    auc = loso_signal.within_auc(held.sources, held.y, held.probs, held.labels)
    return {
        "labels": list(held.labels),
        "by_source": {src: block(held.subset(held.sources == src)) for src in sources},
        "pooled": block(held),
        "cells": {f"{s}/{lab}": v for (s, lab), v in cells(held).items()},
        "recall_score": recall,
        "within_source": loso_signal.within_source(held.sources, held.y, held.probs, held.labels),
        "within_auc": auc,
        "selection_score": loso_signal.combined(recall, auc),
        "score_definition": loso_signal.SCORE_DEFINITION,
        "single_class_sources": [s for s in sources if len(set(held.y[held.sources == s].tolist())) == 1],
    }


#: Footnote of tables that mark single-class held-out sources.
SINGLE_CLASS_NOTE = (
    "† single-class held-out source: its accuracy (and its cell of the score) rewards a model that "
    "answers that class to everything"
)


def _single(report: dict) -> set[str]:
    return set(report.get("single_class_sources", []))


def score_line(report: dict) -> str:
    """The selection score in words, with a warning when no held-out source has two classes."""
    if report.get("recall_score") is None:  # a report from before within-source AUCs counted
        text = f"selection score (mean (source, class) recall): {report['selection_score']:.3f}"
    else:
        auc = report.get("within_auc")
        text = (
            f"selection score {report['selection_score']:.3f} = (recall score {report['recall_score']:.3f}"
            + (f" + within-source AUC {auc:.3f}) / 2" if auc is not None else ")")
        )
    if report["by_source"] and _single(report) >= set(report["by_source"]):
        text += " (every held-out source has a single class: a constant answer can score 1.000)"
    return text


def fold_files(loso_dir: str | Path) -> list[Path]:
    """The held-out prediction files of a LOSO folder (one sub-folder per held-out source)."""
    return sorted(Path(loso_dir).glob(f"*/{PREDICTIONS}"))


def load_loso(loso_dir: str | Path) -> HeldOut:
    """All held-out predictions of a LOSO folder."""
    files = fold_files(loso_dir)
    if not files:
        raise SpecError(
            "no completed folds", expected=f"sub-folders with {PREDICTIONS}", received=str(loso_dir)
        )
    return read_predictions(files)


def fmtrate(rate: dict | None, digits: int = 2) -> str:
    """``0.84 (0.78-0.89)`` or ``-`` for an undefined rate."""
    return interval(rate or None, digits=digits)


def markdown_table(
    rows: dict[str, dict], sources: Sequence[str] | None = None, deltas: dict[str, dict] | None = None
) -> str:
    """One row per experiment: accuracy per held-out source, pooled accuracy, the within-source AUC of
    each held-out source with two or more labels (DeLong interval), the recall score and the selection
    score.

    Args:
        rows: ``{row name: score(...) dict}``.
        sources: Column order (default: every source seen, sorted).
        deltas: ``{row name: paired difference}`` (:func:`cxr_edge.evaluation.loso_select.paired_difference`)
            against a reference row: adds a column "score vs reference (95% CI)".
    """
    if sources is None:
        sources = sorted({s for r in rows.values() for s in r["by_source"]})
    extra = deltas is not None
    single = set().union(*(_single(r) for r in rows.values())) if rows else set()
    ranked = sorted({s for r in rows.values() for s in r.get("within_source", {})})
    head = (
        "| method | "
        + " | ".join(f"{s} †" if s in single else s for s in sources)
        + " | pooled accuracy | "
        + "".join(f"{s} AUC | " for s in ranked)
        + "recall score | score |"
        + (" Δ score (95% CI) |" if extra else "")
    )
    sep = "|---|" + "---|" * (len(sources) + 3 + len(ranked) + extra)
    lines = [head, sep]
    for name, r in rows.items():
        accs = [fmtrate(r["by_source"].get(s, {}).get("accuracy")) for s in sources]
        aucs = [_auc_cell(r.get("within_source", {}).get(s)) for s in ranked]
        recall = r.get("recall_score")
        line = (
            f"| {name} | "
            + " | ".join(accs)
            + f" | {fmtrate(r['pooled']['accuracy'])} | "
            + "".join(f"{a} | " for a in aucs)
            + f"{'-' if recall is None else f'{recall:.3f}'} | {r['selection_score']:.3f} |"
        )
        if extra:
            d = deltas.get(name)
            line += f" {d['difference']:+.3f} ({d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}) |" if d else " - |"
        lines.append(line)
    if single:
        lines += ["", SINGLE_CLASS_NOTE]
    return "\n".join(lines) + "\n"


def _auc_cell(block: dict | None) -> str:
    """A source's abnormal-vs-normal AUC (or its mean one-vs-rest AUC) with its DeLong interval."""
    if not block:
        return "-"
    auc = block.get("abnormal")
    if auc is None:
        return "-" if block.get("auc") is None else f"{block['auc']:.2f}"
    return interval(auc["auc"], auc["ci"])


def source_report(report: dict) -> str:
    """Markdown detail of one experiment: per source, per class sensitivity and specificity."""
    labels = report["labels"]
    lines = [
        "| held-out source | n | accuracy | " + " | ".join(f"{lab} sens / spec" for lab in labels) + " |",
        "|---|---:|---|" + "---|" * len(labels),
    ]
    for src, b in [*report["by_source"].items(), ("**pooled**", report["pooled"])]:
        per = [
            f"{fmtrate(b['per_class'][lab]['sensitivity'])} / {fmtrate(b['per_class'][lab]['specificity'])}"
            for lab in labels
        ]
        shown = f"{src} †" if src in _single(report) else src
        lines.append(f"| {shown} | {b['n']} | {fmtrate(b['accuracy'])} | " + " | ".join(per) + " |")
    if _single(report):
        lines += ["", SINGLE_CLASS_NOTE]
    if report.get("within_source"):
        lines += [
            "",
            "| held-out source | images per class | one-vs-rest AUC | abnormal vs normal AUC |",
            "|---|---|---|---|",
        ]
        for src, b in report["within_source"].items():
            n = ", ".join(f"{k} {v}" for k, v in b["n"].items())
            ovr = ", ".join(
                f"{k} {interval(v['auc'], v['ci']) if v else '-'}" for k, v in b["one_vs_rest"].items()
            )
            ab = b["abnormal"]
            lines.append(f"| {src} | {n} | {ovr} | {interval(ab['auc'], ab['ci']) if ab else '-'} |")
    return "\n".join(lines) + "\n"


def write_report(loso_dir: str | Path, held: HeldOut | None = None) -> dict:
    """Scores a LOSO folder and writes ``loso.json`` and ``loso.md`` into it."""
    loso_dir = Path(loso_dir)
    held = held if held is not None else load_loso(loso_dir)
    report = score(held)
    (loso_dir / "loso.json").write_text(json.dumps(report, indent=2) + "\n")
    (loso_dir / "loso.md").write_text(
        f"# LOSO: {loso_dir.name}\n\n{score_line(report)}\n\n" + source_report(report)
    )
    return report


def bundle_heldout(
    predictor,
    records,
    labels: Sequence[str],
    rename: dict[str, str] | None = None,
) -> HeldOut:
    """A shipped bundle's predictions on sources it was never trained on, as LOSO-style held-out rows.

    Args:
        predictor: A :class:`cxr_edge.runtime.pipeline.Predictor` (the bundle's full pipeline runs).
        records: Manifest records of the unseen sources, already mapped to the task's ``labels``.
        labels: The task's labels (column order of the result).
        rename: Bundle label -> task label (e.g. the first release's ``pneumonia_unknown`` ->
            ``pneumonia``); every task label must then be a (renamed) bundle label.

    Raises:
        SpecError: The bundle's (renamed) labels are not the task's.
    """
    rename = dict(rename or {})
    bundle_labels = [rename.get(lab, lab) for lab in predictor.labels]
    if sorted(bundle_labels) != sorted(labels):
        raise SpecError(
            "bundle and task labels differ", expected=str(list(labels)), received=str(bundle_labels)
        )
    order = [bundle_labels.index(lab) for lab in labels]
    index = {lab: i for i, lab in enumerate(labels)}
    probs, kept = [], []
    for r in records:
        p = predictor.predict_file(r.file).probs
        values = [p[lab] for lab in predictor.labels]
        probs.append([values[i] for i in order])
        kept.append(r)
    return HeldOut(
        tuple(labels),
        tuple(r.path for r in kept),
        np.array([r.source for r in kept]),
        np.array([index[r.label] for r in kept]),
        np.array([r.manifest_label for r in kept]),
        np.array(probs, dtype=np.float64),
    )


def write_heldout(folder: str | Path, held: HeldOut) -> None:
    """Writes held-out rows as a LOSO folder (one ``<source>/holdout_predictions.csv`` per source)."""
    folder = Path(folder)
    for src in sorted(set(held.sources.tolist())):
        part = held.subset(held.sources == src)
        (folder / src).mkdir(parents=True, exist_ok=True)
        rows = [
            (p, s, part.labels[y], raw if raw != part.labels[y] else "")
            for p, s, y, raw in zip(part.paths, part.sources, part.y, part.raw_labels, strict=True)
        ]
        write_predictions(folder / src / PREDICTIONS, part.labels, rows, part.probs)
