"""The model card a bundle carries: what the model is for, what it was trained on, how far to trust it.

Users in hospitals the model has never seen need more than validation accuracy. A
:class:`ModelCard` (stored as ``manifest["card"]`` from bundle format 3 on, written by ``cxr-edge
convert``) holds:

* the intended use and the disclaimer "Not a medical device" (a fixed text: a card without it does
  not parse);
* the task: labels and the label map from manifest labels (``bacterial -> pneumonia``...);
* the training data: images per source and *manifest* label of the training split the runs used;
* leave-one-source-out (LOSO) results of the *recipe* (:func:`cxr_edge.evaluation.loso.score`,
  unchanged), with the recipe name and command. They describe models trained with each source held
  out, not these weights, which saw every source; a card without them says "no leave-one-source-out
  evaluation recorded";
* in-distribution results of the bundle's ensemble on the validation and test splits (accuracy with
  a 95% Clopper-Pearson interval, macro AUC, per class sensitivity, per source) and, when the bundle
  has an abstention band, what it does on validation;
* the shortcut audit (within-label source AUCs) when one was provided, known failure modes, and the
  lung-evidence statistics per source (:mod:`cxr_edge.ops.cam`) when the bundle has a segmenter.

The human parts come from a small TOML/JSON file (:class:`CardInput`, ``convert --card FILE``); the
rest is filled in from the build. :func:`card_markdown` renders a card (``cxr-edge info --card``).
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cxr_edge.config import from_dict, to_dict
from cxr_edge.errors import SpecError

DISCLAIMER = "Not a medical device. A research artefact: do not use it to make clinical decisions."
NO_LOSO = "no leave-one-source-out evaluation recorded"
LOSO_NOTE = (
    "Leave-one-source-out numbers describe the recipe (models trained with that source held out), "
    "not these exact weights, which were trained with every source."
)
#: Keys of :func:`cxr_edge.evaluation.loso.score` (its structure is fixed; the card stores it as it is).
LOSO_KEYS = ("labels", "by_source", "pooled", "cells", "selection_score")


@dataclass(frozen=True)
class CardTask:
    """The classification task.

    Attributes:
        labels: Bundle labels in output order.
        label_map: Manifest label -> bundle label (empty: identity).
    """

    labels: tuple[str, ...]
    label_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LosoRecord:
    """Leave-one-source-out results of the recipe that made the bundle's models.

    Attributes:
        recipe: Recipe name (e.g. ``triage/baseline``).
        command: The ``cxr-edge loso`` command that produced the results.
        report: :func:`cxr_edge.evaluation.loso.score` output (per held-out source, pooled, cells, selection
            score), or None when no LOSO evaluation was recorded.
        note: How to read the numbers (or :data:`NO_LOSO` when there are none).
    """

    recipe: str = ""
    command: str = ""
    report: dict[str, Any] | None = None
    note: str = NO_LOSO

    def __post_init__(self) -> None:
        if self.report is not None:
            check_loso_report(self.report)


@dataclass(frozen=True)
class LungStats:
    """Lung fractions of a group of images (:func:`cxr_edge.ops.cam.lung_fraction`).

    Attributes:
        n: Images with a lung fraction (the crop passed its quality gate).
        mean: Mean lung fraction (None when ``n`` is 0).
        median: Median lung fraction.
        flagged: Share of the ``n`` images below the bundle's ``min_fraction``.
    """

    n: int
    mean: float | None = None
    median: float | None = None
    flagged: float | None = None


@dataclass(frozen=True)
class LungEvidenceStats:
    """Where the models looked, summarised over one split.

    Attributes:
        split: The split summarised (``validation`` in a card).
        min_fraction: The flag threshold in force (None: the bundle has none).
        overall: Every image of the split.
        by_source: Per source.
    """

    split: str
    min_fraction: float | None
    overall: LungStats
    by_source: dict[str, LungStats] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCard:
    """The model card stored in a bundle manifest (see the module docstring).

    Attributes:
        intended_use: What the bundle is for and for whom.
        task: Labels and label map.
        disclaimer: Always :data:`DISCLAIMER`; any other value is refused.
        training_data: ``{source: {manifest label: images}}`` of the training split.
        loso: Leave-one-source-out results of the recipe (or the explicit statement that there are none).
        in_distribution: Ensemble results on the validation and test splits (:func:`in_distribution`).
        shortcut_audit: Source predictability from the outputs
            (:func:`cxr_edge.evaluation.shortcut.audit`), if given.
        failure_modes: Known ways the model fails, one sentence each.
        lung_evidence: Lung fractions on the validation split per source (bundles with a segmenter).
    """

    intended_use: str
    task: CardTask
    disclaimer: Literal[DISCLAIMER] = DISCLAIMER
    training_data: dict[str, dict[str, int]] = field(default_factory=dict)
    loso: LosoRecord = field(default_factory=LosoRecord)
    in_distribution: dict[str, Any] = field(default_factory=dict)
    shortcut_audit: dict[str, Any] | None = None
    failure_modes: tuple[str, ...] = ()
    lung_evidence: LungEvidenceStats | None = None

    def __post_init__(self) -> None:
        if self.disclaimer != DISCLAIMER:
            raise SpecError(
                "a model card must carry the disclaimer", expected=DISCLAIMER, received=self.disclaimer
            )
        if not self.intended_use.strip():
            raise SpecError("a model card needs its intended use", expected="a sentence", received="''")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        """Parses and checks the JSON form."""
        return from_dict(cls, data, what="model card")


@dataclass(frozen=True)
class CardInput:
    """The human parts of a card: the file given to ``cxr-edge convert --card`` (TOML or JSON).

    Relative paths are taken from the file's folder.

    Attributes:
        intended_use: What the bundle is for.
        failure_modes: Known failure modes.
        recipe: Name of the training recipe (LOSO describes it).
        loso: Path to a ``loso.json`` (``cxr-edge loso``); empty: no LOSO evaluation.
        loso_command: The LOSO command; default: ``command`` of ``loso_config.json`` beside ``loso.json``.
        audit: Path to a shortcut audit: ``metrics.json`` of ``cxr-edge evaluate --audit-source`` or
            the bare audit object.
    """

    intended_use: str
    failure_modes: tuple[str, ...] = ()
    recipe: str = ""
    loso: str = ""
    loso_command: str = ""
    audit: str = ""


def check_loso_report(report: Mapping[str, Any]) -> None:
    """Checks that ``report`` has the structure of :func:`cxr_edge.evaluation.loso.score`.

    Raises:
        SpecError: A key is missing or a held-out source lacks its accuracy and per-class rates.
    """
    missing = [k for k in LOSO_KEYS if k not in report]
    if missing:
        raise SpecError(
            "not a LOSO report", expected=f"keys {list(LOSO_KEYS)}", received=f"missing {missing}"
        )
    for name, block in [*report["by_source"].items(), ("pooled", report["pooled"])]:
        if not isinstance(block, dict) or not {"n", "accuracy", "per_class"} <= set(block):
            raise SpecError(
                f"LOSO report entry {name!r} is incomplete",
                expected="n, accuracy and per_class",
                received=str(sorted(block) if isinstance(block, dict) else type(block).__name__),
            )


def load_card_input(path: str | Path) -> tuple[CardInput, Path]:
    """Reads a card input file; returns it and the folder its relative paths start from."""
    p = Path(path)
    if not p.is_file():
        raise SpecError("card file not found", expected="a TOML or JSON file", received=str(p))
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError("card file is not valid TOML/JSON", received=f"{p}: {exc}") from exc
    return from_dict(CardInput, data, what=f"card file {p.name}"), p.parent


def read_loso(path: str | Path, recipe: str = "", command: str = "") -> LosoRecord:
    """A :class:`LosoRecord` from a ``loso.json`` (the command from ``loso_config.json`` when not given)."""
    p = Path(path)
    report = _read_json(p, "LOSO report")
    config = p.parent / "loso_config.json"
    if not command and config.is_file():
        command = str(json.loads(config.read_text(encoding="utf-8")).get("command", ""))
    return LosoRecord(recipe=recipe or p.parent.name, command=command, report=report, note=LOSO_NOTE)


def read_audit(path: str | Path) -> dict[str, Any]:
    """The shortcut audit of ``metrics.json`` (``cxr-edge evaluate --audit-source``) or a bare audit."""
    p = Path(path)
    data = _read_json(p, "shortcut audit")
    audit = data.get("audit", data)
    if not isinstance(audit, dict) or "within_label" not in audit:
        raise SpecError("not a shortcut audit", expected="an object with within_label", received=str(p))
    keep = ("features", "overall_source_auc", "within_label", "reading")
    return {k: audit[k] for k in keep if k in audit} | {"from": p.name}


def _read_json(p: Path, what: str) -> dict:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"{what} not found", expected="an existing JSON file", received=str(p)) from exc
    except json.JSONDecodeError as exc:
        raise SpecError(f"{what} is not valid JSON", received=f"{p}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{what} is not a JSON object", received=str(p))
    return data


def rate(k: int, n: int) -> dict:
    """``{"k", "n", "value", "ci"}`` with a 95% Clopper-Pearson interval (the LOSO report's rate form)."""
    from cxr_edge.evaluation.stats import clopper_pearson

    if n == 0:
        return {"k": 0, "n": 0, "value": None, "ci": None}
    lo, hi = clopper_pearson(int(k), int(n))
    return {"k": int(k), "n": int(n), "value": k / n, "ci": [lo, hi]}


def split_results(y: np.ndarray, probs: np.ndarray, sources: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy (with interval), macro AUC and per-class sensitivity, overall and per source."""
    from cxr_edge.evaluation.metrics import classification_metrics

    def block(mask: np.ndarray) -> dict:
        yy, pp = y[mask], probs[mask]
        pred = pp.argmax(axis=1)
        m = classification_metrics(yy, pp, labels)
        return {
            "n": int(mask.sum()),
            "accuracy": rate(int((pred == yy).sum()), int(mask.sum())),
            "auc_macro": m["auc_macro"],
            "sensitivity": {
                lab: rate(int((pred[yy == i] == i).sum()), int((yy == i).sum()))
                for i, lab in enumerate(labels)
            },
        }

    sources = np.asarray(sources)
    out = block(np.ones(len(y), dtype=bool))
    out["by_source"] = {s: block(sources == s) for s in sorted(set(sources.tolist()))}
    return out


def abstain_results(y: np.ndarray, probs: np.ndarray, labels: Sequence[str], band: Any) -> dict:
    """What an abstention band does on labelled data: share referred, accuracy of what is reported."""
    from cxr_edge.ops.quality import abstain

    referred = np.array([abstain(dict(zip(labels, p, strict=True)), band) is not None for p in probs], bool)
    kept = ~referred
    correct = probs.argmax(axis=1) == y
    return {
        "min_top_prob": band.min_top_prob,
        "min_margin": band.min_margin,
        "referred": rate(int(referred.sum()), len(y)),
        "accuracy_reported": rate(int(correct[kept].sum()), int(kept.sum())),
    }


def training_data(records: Iterable[Any]) -> dict[str, dict[str, int]]:
    """``{source: {manifest label: images}}`` (records' ``manifest_label``, before the label map)."""
    counts: dict[str, Counter] = {}
    for r in records:
        counts.setdefault(r.source, Counter())[r.manifest_label] += 1
    return {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}


def lung_stats(fractions: Sequence[float | None], min_fraction: float | None) -> LungStats:
    """Summary of lung fractions (None entries, where the crop fell back, are left out)."""
    values = np.array([f for f in fractions if f is not None], dtype=np.float64)
    if not len(values):
        return LungStats(n=0)
    flagged = None if min_fraction is None else float((values < min_fraction).mean())
    return LungStats(len(values), float(values.mean()), float(np.median(values)), flagged)


def lung_evidence_stats(
    fractions: Sequence[float | None], sources: Sequence[str], min_fraction: float | None, split: str
) -> LungEvidenceStats:
    """:class:`LungEvidenceStats` of one split, overall and per source."""
    by: dict[str, list] = {}
    for f, s in zip(fractions, sources, strict=True):
        by.setdefault(s, []).append(f)
    return LungEvidenceStats(
        split=split,
        min_fraction=min_fraction,
        overall=lung_stats(fractions, min_fraction),
        by_source={s: lung_stats(v, min_fraction) for s, v in sorted(by.items())},
    )


# ------------------------------------------------------------------------------------------ rendering


def _r(value: Any, ci: Any = None, digits: int = 2) -> str:
    if isinstance(value, dict):
        value, ci = value.get("value"), value.get("ci")
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text + (f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else "")


def worst_source(report: Mapping[str, Any]) -> tuple[str, dict] | None:
    """The held-out source with the lowest LOSO accuracy, with its accuracy rate."""
    rated = [
        (s, b["accuracy"]) for s, b in report["by_source"].items() if b["accuracy"].get("value") is not None
    ]
    return min(rated, key=lambda item: item[1]["value"]) if rated else None


def card_summary(card: ModelCard | None) -> str:
    """One line for ``cxr-edge info``: LOSO pooled accuracy and the worst held-out source."""
    if card is None:
        return "none (bundles before format 3 carry no model card)"
    report = card.loso.report
    if report is None:
        return f"{NO_LOSO}; see `cxr-edge info --card`"
    worst = worst_source(report)
    text = f"LOSO ({card.loso.recipe or 'recipe'}): pooled accuracy {_r(report['pooled']['accuracy'])}"
    if worst:
        text += f", worst held-out source {worst[0]} {_r(worst[1])}"
    return text + "; see `cxr-edge info --card`"


def card_markdown(card: ModelCard, bundle_name: str = "") -> str:
    """The card as Markdown (``cxr-edge info --card``)."""
    labels = card.task.labels
    lines = [f"# Model card{f': {bundle_name}' if bundle_name else ''}", "", f"> **{card.disclaimer}**", ""]
    lines += ["## Intended use", "", card.intended_use, "", "## Task", "", f"Labels: {', '.join(labels)}."]
    if card.task.label_map:
        mapped = ", ".join(f"{k} → {v}" for k, v in sorted(card.task.label_map.items()))
        lines.append(f"Label map (manifest label → label): {mapped}.")
    lines += ["", "## Training data (training split, manifest labels)", ""]
    raw = sorted({lab for c in card.training_data.values() for lab in c})
    if card.training_data:
        lines += ["| source | " + " | ".join(raw) + " | total |", "|---|" + "---:|" * (len(raw) + 1)]
        for src, c in card.training_data.items():
            lines.append(
                f"| {src} | " + " | ".join(str(c.get(lab, 0)) for lab in raw) + f" | {sum(c.values())} |"
            )
    else:
        lines.append("Not recorded.")
    lines += ["", "## Leave-one-source-out evaluation", ""]
    lines += _loso_lines(card.loso, labels)
    lines += ["", "## In-distribution results (the bundle's ensemble)", ""]
    lines += _in_distribution_lines(card.in_distribution)
    lines += ["", "## Shortcut audit", ""]
    if card.shortcut_audit:
        lines += [
            "Source AUC from the members' outputs within one label (0.5: no hospital signal beyond the "
            "label; near 1: the outputs encode the hospital).",
            "",
            "| label | sources (images) | within-label source AUC |",
            "|---|---|---:|",
        ]
        for lab, entry in card.shortcut_audit.get("within_label", {}).items():
            srcs = ", ".join(f"{s} ({n})" for s, n in entry.get("sources", {}).items())
            lines.append(f"| {lab} | {srcs} | {_r(entry.get('source_auc'), digits=3)} |")
    else:
        lines.append("No shortcut audit recorded.")
    lines += ["", "## Known failure modes", ""]
    lines += [f"- {f}" for f in card.failure_modes] or ["None recorded (which does not mean there are none)."]
    if card.lung_evidence is not None:
        ev = card.lung_evidence
        lines += [
            "",
            f"## Where the model looked ({ev.split} split)",
            "",
            "Lung fraction: share of the heat map inside the predicted lung mask. Images below "
            f'{_r(ev.min_fraction, digits=3)} are flagged "evidence outside the lungs".',
            "",
            "| source | images | mean | median | flagged |",
            "|---|---:|---:|---:|---:|",
        ]
        for src, s in [*ev.by_source.items(), ("**all**", ev.overall)]:
            lines.append(
                f"| {src} | {s.n} | {_r(s.mean, digits=3)} | {_r(s.median, digits=3)} | {_r(s.flagged)} |"
            )
    return "\n".join(lines) + "\n"


def _loso_lines(loso: LosoRecord, labels: Sequence[str]) -> list[str]:
    if loso.report is None:
        return [
            f"**{NO_LOSO.capitalize()}.** Nothing here says how the model does in a hospital it has not seen."
        ]
    report = loso.report
    lines = [
        f"Recipe: {loso.recipe or '(unnamed)'}" + (f"; command: `{loso.command}`" if loso.command else ""),
        "",
    ]
    lines += [f"*{loso.note}*", ""]
    lines += [
        "| held-out source | n | accuracy | " + " | ".join(f"{lab} sens / spec" for lab in labels) + " |",
        "|---|---:|---|" + "---|" * len(labels),
    ]
    for src, b in [*report["by_source"].items(), ("**pooled**", report["pooled"])]:
        per = []
        for lab in labels:
            pc = b["per_class"].get(lab, {})
            per.append(f"{_r(pc.get('sensitivity'))} / {_r(pc.get('specificity'))}")
        lines.append(f"| {src} | {b['n']} | {_r(b['accuracy'])} | " + " | ".join(per) + " |")
    lines += [
        "",
        f"Selection score (mean recall over (source, class) cells): {report['selection_score']:.3f}",
    ]
    return lines


def _in_distribution_lines(ind: Mapping[str, Any]) -> list[str]:
    parts = [p for p in ("val", "test") if p in ind]
    if not parts:
        return ["Not recorded."]
    ens = ind.get("ensemble", {})
    lines = []
    if ens:
        lines += [
            f"Ensemble: {ens.get('method')} of {', '.join(ens.get('members', []))}, temperature "
            f"{ens.get('temperature', 1.0):.3g} ({ens.get('temperature_source', 'validation split')}).",
            "",
        ]
    lines += ["| split | source | n | accuracy (95% CI) | macro AUC |", "|---|---|---:|---|---:|"]
    for part in parts:
        block = ind[part]
        lines.append(
            f"| {part} | all | {block['n']} | {_r(block['accuracy'])} | {_r(block['auc_macro'], digits=3)} |"
        )
        for src, b in block.get("by_source", {}).items():
            lines.append(
                f"| {part} | {src} | {b['n']} | {_r(b['accuracy'])} | {_r(b['auc_macro'], digits=3)} |"
            )
    band = ind.get("abstain")
    if band:
        lines += [
            "",
            f"Abstention band (top probability < {band['min_top_prob']:.2f} or margin < "
            f"{band['min_margin']:.2f}: refer to a radiologist), on validation: refers "
            f"{_r(band['referred'])} of images; accuracy of the rest {_r(band['accuracy_reported'])}.",
        ]
    lines += ["", "These images come from the same sources as the training data: expect less elsewhere."]
    return lines
