"""A model card in words: the one-line summary of ``cxr-edge bundle info`` and the Markdown of
``cxr-edge bundle card``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cxr_edge.bundle.card import NO_LOSO, LosoRecord, ModelCard
from cxr_edge.formatting import interval
from cxr_edge.ops.site import SiteCalibration


def worst_source(report: Mapping[str, Any]) -> tuple[str, dict] | None:
    """The held-out source with the lowest LOSO accuracy, with its accuracy rate."""
    rated = [
        (s, b["accuracy"]) for s, b in report["by_source"].items() if b["accuracy"].get("value") is not None
    ]
    return min(rated, key=lambda item: item[1]["value"]) if rated else None


def card_summary(card: ModelCard | None) -> str:
    """One line for ``cxr-edge bundle info``: LOSO pooled accuracy and the worst held-out source."""
    if card is None:
        return "none (bundles before format 3 carry no model card)"
    report = card.loso.report
    if report is None:
        return f"{NO_LOSO}; see `cxr-edge bundle card`"
    worst = worst_source(report)
    text = f"LOSO ({card.loso.recipe or 'recipe'}): pooled accuracy {interval(report['pooled']['accuracy'])}"
    if worst:
        text += f", worst held-out source {worst[0]} {interval(worst[1])}"
    return text + "; see `cxr-edge bundle card`"


def site_line(site: SiteCalibration) -> str:
    """One sentence on a site calibration: where, when, on what, how, and what cross-validation said."""
    images = ", ".join(f"{k} {v}" for k, v in site.images.items())
    text = (
        f"Calibrated for {site.name} on {site.date} (method {site.method}) on {images} labelled images of "
        f"{site.patients} patients; parent bundle SHA-256 {site.parent_sha256[:16]}..."
        + (f", signed by {site.parent_signed_by}" if site.parent_signed_by else "")
    )
    chosen = site.metrics.get("methods", {}).get(site.method)
    if chosen:
        parent = site.metrics["parent"]
        text += (
            f" Cross-validated over the site's patients: accuracy {interval(chosen['accuracy'])} "
            f"(parent {interval(parent['accuracy'])})."
        )
    if site.operating_point is not None:
        text += (
            f" Operating point: abnormal sensitivity {site.operating_point.target_sensitivity:.2f} targeted."
        )
    return text + " Outside that site, use the parent bundle."


def card_markdown(card: ModelCard, bundle_name: str = "", site: SiteCalibration | None = None) -> str:
    """The card as Markdown (``cxr-edge bundle card``), with the site calibration first when there is one."""
    labels = card.task.labels
    lines = [f"# Model card{f': {bundle_name}' if bundle_name else ''}", "", f"> **{card.disclaimer}**", ""]
    if site is not None:
        lines += ["## Site calibration", "", site_line(site), ""]
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
            lines.append(f"| {lab} | {srcs} | {interval(entry.get('source_auc'), digits=3)} |")
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
            f'{interval(ev.min_fraction, digits=3)} are flagged "evidence outside the lungs".',
            "",
            "| source | images | mean | median | flagged |",
            "|---|---:|---:|---:|---:|",
        ]
        for src, s in [*ev.by_source.items(), ("**all**", ev.overall)]:
            lines.append(
                f"| {src} | {s.n} | {interval(s.mean, digits=3)} | {interval(s.median, digits=3)} | "
                f"{interval(s.flagged)} |"
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
            per.append(f"{interval(pc.get('sensitivity'))} / {interval(pc.get('specificity'))}")
        lines.append(f"| {src} | {b['n']} | {interval(b['accuracy'])} | " + " | ".join(per) + " |")
    if report.get("recall_score") is None:  # recorded before within-source AUCs counted
        return [
            *lines,
            "",
            f"Selection score (mean recall over (source, class) cells): {report['selection_score']:.3f}",
        ]
    lines += [
        "",
        "Within the held-out sources with two or more labels (abnormal vs normal, DeLong interval):",
        "",
    ]
    for src, b in report.get("within_source", {}).items():
        auc = b.get("abnormal")
        lines.append(f"- {src}: AUC {interval(auc['auc'], auc['ci']) if auc else '-'}")
    auc = report.get("within_auc")
    lines += [
        "",
        f"Selection score {report['selection_score']:.3f} = mean of the recall score "
        f"{report['recall_score']:.3f} (mean recall over (source, class) cells)"
        + (f" and the within-source AUC {auc:.3f}." if auc is not None else "."),
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
            f"| {part} | all | {block['n']} | {interval(block['accuracy'])} | "
            f"{interval(block['auc_macro'], digits=3)} |"
        )
        for src, b in block.get("by_source", {}).items():
            lines.append(
                f"| {part} | {src} | {b['n']} | {interval(b['accuracy'])} | "
                f"{interval(b['auc_macro'], digits=3)} |"
            )
    band = ind.get("abstain")
    if band:
        lines += [
            "",
            f"Referral band (top probability < {band['min_top_prob']:.2f} or margin < "
            f"{band['min_margin']:.2f}: refer to a radiologist), on validation: refers "
            f"{interval(band['referred'])} of images; accuracy of the rest "
            f"{interval(band['accuracy_reported'])}.",
        ]
    lines += ["", "These images come from the same sources as the training data: expect less elsewhere."]
    return lines
