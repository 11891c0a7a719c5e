"""How often the input checks refuse good frontal images, and what the referral band does.

    python -m cxr_edge.benchmarks.quality [--manifest KIT/manifest.csv] [--split splits/kit.csv] \\
        [--out FILE.json]

Every kit image is a frontal chest film (PA, AP, AP supine or NIH's unknown, which is frontal), so
each refusal by :func:`cxr_edge.ops.quality.check_pixels` is a false rejection. The frontal-pattern
threshold is meant to be read off the train part (its 1st percentile is printed) and judged on val and
test. The same images inverted (``1 - image``) show how many inverted films the frontal-pattern check
catches. The referral band is measured on the validation part with the shipped bundle: the fraction
referred to a radiologist and the accuracy of the rest, for a few thresholds.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import click
import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.splits import read_split
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.quality import QualityConfig, ReferralBand, check_pixels, frontal_score, referral_reason
from cxr_edge.runtime.pipeline import Predictor


def measure(manifest_path: str, split_path: str, config: QualityConfig) -> dict:
    """False-rejection rates of the pixel checks per part and source, and inverted-image detection."""
    manifest = load_manifest(manifest_path, check_files=False)
    parts = read_split(split_path, manifest).parts
    refused: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    scores: dict[str, list[float]] = defaultdict(list)
    inverted_caught = 0
    for record in manifest.records:
        image, _ = read_image(record.file)
        part = parts.get(record.path, "unknown")
        for key in (f"part:{part}", f"source:{record.source}", "all"):
            totals[key] += 1
        scores[part].append(frontal_score(image))
        rejection = check_pixels(image, config)
        if rejection is not None:
            for key in (f"part:{part}", f"source:{record.source}", "all"):
                refused[key][rejection.check] += 1
        inverted = check_pixels(1.0 - image, config)
        inverted_caught += inverted is not None and inverted.check == "frontal_pattern"
    rates = {
        key: {
            "n": totals[key],
            "refused": sum(refused[key].values()),
            "rate": sum(refused[key].values()) / totals[key],
            "by_check": dict(refused[key]),
        }
        for key in sorted(totals)
    }
    train = np.asarray(scores.get("train", []))
    return {
        "config": {
            "min_side": config.min_side,
            "min_std": config.min_std,
            "min_frontal": config.min_frontal_score,
        },
        "false_rejections": rates,
        "frontal_score_train_percentiles": {
            str(q): float(np.percentile(train, q)) for q in (0.5, 1, 2, 5, 50)
        }
        if len(train)
        else {},
        "inverted_detected": inverted_caught / totals["all"],
    }


def referral(manifest_path: str, split_path: str, thresholds: list[float]) -> dict:
    """Referred fraction and accuracy of the reported rest on the validation part, per threshold."""
    manifest = load_manifest(manifest_path, check_files=False)
    records = read_split(split_path, manifest).records(manifest, "val")
    predictor = Predictor(Bundle.load(), checks=None)  # every validation image, as the band was fitted
    label_map = predictor.bundle.manifest.label_map
    preds = [(label_map.get(r.label, r.label), predictor.predict_file(r.file)) for r in records]
    own = predictor.ensemble.abstain
    out = {"bundle_band": own.min_top_prob if own else None}
    for t in sorted({*thresholds, *([own.min_top_prob] if own else [])}):
        band = ReferralBand(min_top_prob=t)
        kept = [(truth, p) for truth, p in preds if referral_reason(p.probs, band) is None]
        out[str(t)] = {
            "referred": 1 - len(kept) / len(preds),
            "accuracy_reported": sum(truth == p.label for truth, p in kept) / len(kept) if kept else None,
            "n": len(preds),
        }
    out["accuracy_all"] = sum(truth == p.label for truth, p in preds) / len(preds)
    return out


@click.command()
@click.option("--manifest", "manifest_path", default="../shared/data/manifest.csv", show_default=True)
@click.option("--split", "split_path", default="splits/kit.csv", show_default=True)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the numbers as JSON.")
def main(manifest_path: str, split_path: str, out: str | None) -> None:
    """Measure false rejections of the quality checks on the kit and the referral band on validation."""
    result = {
        "quality": measure(manifest_path, split_path, QualityConfig()),
        "abstention_val": referral(manifest_path, split_path, [0.0, 0.34, 0.4, 0.5, 0.6]),
    }
    text = json.dumps(result, indent=2)
    click.echo(text)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main()
