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
  has an referral band, what it does on validation;
* the shortcut audit (within-label source AUCs) when one was provided, known failure modes, and the
  lung-evidence statistics per source (:mod:`cxr_edge.ops.cam`) when the bundle has a segmenter.

The human parts come from a small TOML/JSON file (:class:`CardInput`, ``convert --card FILE``); the
rest is filled in from the build (:mod:`cxr_edge.evaluation.card_stats`);
:mod:`cxr_edge.bundle.card_markdown` renders a card (``cxr-edge bundle card``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
