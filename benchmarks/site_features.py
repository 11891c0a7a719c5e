"""``python -m cxr_edge.benchmarks.site_features``: what LOSO fold models see of the source they never saw.

For the site-adaptation curves (:mod:`cxr_edge.benchmarks.site_curves`, ``docs/site.md``), each held-out
source plays a new hospital. This step runs, per fold, every member of the default recipe (the
fold's best Keras model, trained without that source) over every image of the held-out source, with
the recipe's preprocessing and lung crop, and keeps each member's probabilities, its pooled
``features`` (global average of the last convolutional map: what a bundle's ``features`` output
gives after pooling) and its dense head (kernel = the bundle's CAM weights; bias for reference).
One ``.npz`` per held-out source, so the curves are recomputed without TensorFlow::

    python -m cxr_edge.benchmarks.site_features --loso runs/loso/lungcrop_balanced \\
        --loso runs/loso/lungcrop_balanced_seed1 --loso runs/loso/lungcrop_balanced_seed2 \\
        --source kermany --source nih --out build/site_features

Needs the ``[train]`` extra (Keras) and the recipe's crop table (``make default-segmenter``).
"""

from __future__ import annotations

from pathlib import Path

import click
import keras
import numpy as np

from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import crop_table, load_images, preprocess_all
from cxr_edge.train.rundir import BEST_MODEL


def fold_outputs(run_dir: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(probs (n, C), pooled features (n, K), dense kernel (K, C), dense bias (C,))`` of one fold model."""
    model = keras.models.load_model(run_dir / BEST_MODEL)
    features = model.get_layer("features").output
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    probe = keras.Model(model.input, [model.output, pooled])
    probs, feats = probe.predict(x, verbose=0, batch_size=32)
    kernel, bias = model.get_layer("probs").get_weights()
    return probs, feats, kernel, bias


@click.command()
@click.option(
    "--loso", "loso_dirs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False)
)
@click.option("--source", "sources", multiple=True, required=True, help="Held-out source (repeat).")
@click.option("--manifest", "manifest_path", default="../shared/data/manifest.csv", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
def main(loso_dirs: tuple[str, ...], sources: tuple[str, ...], manifest_path: str, out: str) -> None:
    """Write OUT/<source>.npz: members' probabilities and pooled features on the held-out source."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        runs = [Path(d) / source for d in loso_dirs]
        config = TrainConfig.load(runs[0] / "config.json")
        manifest = load_manifest(manifest_path).select(config.labels, config.label_map)
        records = [r for r in manifest.records if r.source == source]
        x = preprocess_all(load_images(records, crops=crop_table(config), progress=False), config.preprocess)
        arrays: dict[str, np.ndarray] = {}
        for i, run in enumerate(runs):
            probs, feats, kernel, bias = fold_outputs(run, x)
            arrays |= {f"probs_{i}": probs, f"pooled_{i}": feats, f"kernel_{i}": kernel, f"bias_{i}": bias}
        np.savez_compressed(
            out_dir / f"{source}.npz",
            labels=np.array(config.labels),
            y=np.array([config.labels.index(r.label) for r in records]),
            patients=np.array([r.patient_id for r in records]),
            paths=np.array([r.path for r in records]),
            members=np.array([str(Path(d).name) for d in loso_dirs]),
            **arrays,
        )
        click.echo(f"{source}: {len(records)} images, {len(runs)} members -> {out_dir / source}.npz")


if __name__ == "__main__":
    main()
