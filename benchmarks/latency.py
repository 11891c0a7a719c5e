"""Latency, memory and size of a bundle, stage by stage, against the unpruned fp32 Keras baseline.

    python -m cxr_edge.benchmarks.latency --bundle DIR [--threads 1,2] [--runs 5] [--baseline RUN...] \
        --out FILE.json

(``cxr-edge bench`` is the same command.) Every measurement runs in a fresh child process, so the
peak resident memory of the runtime is not inflated by TensorFlow, and the baseline's by nothing
else. Numbers are medians and percentiles over ``runs`` passes over the images after one warm-up
pass; compare ratios measured in one invocation, because this machine is shared.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np

from cxr_edge.benchmarks.measure import machine, peak_rss_mb, percentiles
from cxr_edge.bundle.folder import Bundle
from cxr_edge.provenance import now_utc, versions


def timed_passes(call, items: list, runs: int) -> tuple[list[float], float]:
    """One warm-up pass, then ``runs`` timed passes of ``call(item)``: ms per call, and wall seconds."""
    for item in items:
        call(item)
    times = []
    t0 = time.perf_counter()
    for _ in range(runs):
        for item in items:
            t = time.perf_counter()
            call(item)
            times.append((time.perf_counter() - t) * 1000.0)
    return times, time.perf_counter() - t0


def measure_bundle(
    bundle_dir: str | None,
    images: list[str],
    *,
    threads: int = 1,
    runs: int = 5,
    members: list[str] | None = None,
) -> dict:
    """Runtime measurement in *this* process (run it in a fresh one): init, stages, end to end, RSS."""
    from cxr_edge.runtime.pipeline import Predictor

    bundle = Bundle.load(bundle_dir)
    if not bundle.manifest.models:
        return _measure_segmenter(bundle, images, threads=threads, runs=runs)
    t0 = time.perf_counter()
    predictor = Predictor(bundle, members=members, threads=threads)
    init_ms = (time.perf_counter() - t0) * 1000.0
    rss_after_init = peak_rss_mb()  # high-water mark once the models are loaded (memory per stage)
    for path in images:  # warm-up
        predictor.predict_file(path)
    stages: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for _ in range(runs):
        for path in images:
            for stage, ms in predictor.predict_file(path).timings_ms.items():
                stages.setdefault(stage, []).append(ms)
    wall = time.perf_counter() - t0
    total = stages.pop("total")
    return {
        "threads": threads,
        "members": list(predictor.member_names),
        "init_ms": init_ms,
        "rss_after_init_mb": rss_after_init,
        "peak_rss_mb": peak_rss_mb(),
        "end_to_end": percentiles(total) | {"throughput_img_s": runs * len(images) / wall},
        "stages": {name: percentiles(v) for name, v in stages.items()},
    }


def _measure_segmenter(bundle: Bundle, images: list[str], *, threads: int, runs: int) -> dict:
    """A segmenter-only bundle: decode once, then time segment (U-Net + crop rule) per image."""
    from cxr_edge.imaging.reader import read_image
    from cxr_edge.runtime.segmenter import Segmenter

    t0 = time.perf_counter()
    segmenter = Segmenter(bundle, threads=threads)
    init_ms = (time.perf_counter() - t0) * 1000.0
    decoded = [read_image(p)[0] for p in images]
    times, wall = timed_passes(segmenter, decoded, runs)
    stage = percentiles(times)
    return {
        "threads": threads,
        "members": [],
        "init_ms": init_ms,
        "peak_rss_mb": peak_rss_mb(),
        "end_to_end": stage | {"throughput_img_s": runs * len(images) / wall},
        "stages": {"segment": stage},
    }


def measure_baseline(run_dirs: list[str], images: list[str], *, runs: int = 5) -> dict:
    """The paper's deployment: unpruned fp32 Keras models on the same decode + preprocessing, averaged.

    Each model runs through ``predict_on_batch`` (compiled), one image at a time, like the runtime.
    """
    t0 = time.perf_counter()
    import keras

    from cxr_edge.imaging.reader import read_image
    from cxr_edge.ops.preprocess import preprocess
    from cxr_edge.train.config import TrainConfig

    import_ms = (time.perf_counter() - t0) * 1000.0
    t0 = time.perf_counter()
    models = []
    for run in run_dirs:
        run = Path(run)
        info = json.loads((run / "run.json").read_text())
        source = Path(info["pruned_from"]) if info.get("pruned_from") else run  # unpruned = the source run
        models.append(
            (keras.models.load_model(source / "best.keras"), TrainConfig.load(source / "config.json"))
        )
    init_ms = (time.perf_counter() - t0) * 1000.0

    def once(path):
        image, _ = read_image(path)
        # predict_on_batch runs Keras's compiled (graph) predict step: the fastest Keras path for
        # one image. An eager `model(x)` call adds per-layer dispatch overhead (see RESULTS.md) and
        # would flatter the runtime's speed-up.
        probs = [m.predict_on_batch(preprocess(image, c.preprocess)[None]) for m, c in models]
        return np.mean([np.asarray(p) for p in probs], axis=0)

    times, wall = timed_passes(once, images, runs)  # the warm-up pass also traces the predict step
    return {
        "runs": [str(r) for r in run_dirs],
        "import_ms": import_ms,
        "init_ms": init_ms,
        "peak_rss_mb": peak_rss_mb(),
        "end_to_end": percentiles(times) | {"throughput_img_s": runs * len(images) / wall},
        "params": int(sum(m.count_params() for m, _ in models)),
    }


def _child(kind: str, payload: dict) -> dict:
    """Runs one measurement in a fresh interpreter and returns its JSON."""
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"}  # the child's stderr is only shown on failure
    proc = subprocess.run(
        [sys.executable, "-m", "cxr_edge.benchmarks._child", kind, json.dumps(payload)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise click.ClickException(f"{kind} measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(
    bundle_dir: str | None,
    images: list[str],
    *,
    threads: list[int],
    runs: int,
    baseline: list[str],
    variants: bool = False,
) -> dict:
    """The full benchmark: bundle per thread count, optionally each model variant alone, and the baseline."""
    bundle = Bundle.load(bundle_dir)
    manifest = bundle.manifest
    result = {
        "created": now_utc(),
        "machine": machine(),
        "versions": versions("ai-edge-litert", "numpy", "opencv-python-headless", "tensorflow-cpu", "keras"),
        "bundle": str(bundle.root),
        "bundle_mb": bundle.size_bytes() / 2**20,
        "images": len(images),
        "runs": runs,
        "models": {
            m.name: {
                "quant": m.quant,
                "file_mb": bundle.path_of(m).stat().st_size / 2**20,
                "params": m.params,
                "params_unpruned": m.params_unpruned,
                "macs": m.macs,
                # Recorded at conversion; the report's accuracy/latency plot uses them.
                "val_auc_macro": m.metrics.get("val", {}).get("auc_macro"),
                "test_accuracy": m.metrics.get("test", {}).get("accuracy"),
            }
            for m in manifest.models
        },
        "segmenter": None
        if manifest.segmenter is None
        else {
            "name": manifest.segmenter.name,
            "macs": manifest.segmenter.macs,
            "file_mb": bundle.path_of(manifest.segmenter).stat().st_size / 2**20,
        },
        "by_threads": {},
    }
    for t in threads:
        result["by_threads"][str(t)] = _child(
            "bundle", {"bundle": str(bundle.root), "images": images, "threads": t, "runs": runs}
        )
    first = result["by_threads"][str(threads[0])]
    result |= {
        "peak_rss_mb": first["peak_rss_mb"],
        "end_to_end": first["end_to_end"],
        "stages": first["stages"],
    }
    if variants:
        result["variants"] = {
            m.name: _child(
                "bundle",
                {
                    "bundle": str(bundle.root),
                    "images": images,
                    "threads": threads[0],
                    "runs": runs,
                    "members": [m.name],
                },
            )
            for m in manifest.models
        }
    if baseline:
        result["baseline"] = _child("baseline", {"runs_dirs": baseline, "images": images, "runs": runs})
        result["speedup_vs_baseline"] = (
            result["baseline"]["end_to_end"]["p50_ms"] / result["end_to_end"]["p50_ms"]
        )
    return result


@click.command()
@click.option(
    "--bundle",
    "bundle_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Bundle folder (default: the shipped one).",
)
@click.option(
    "--images",
    "image_paths",
    multiple=True,
    type=click.Path(exists=True),
    help="Images (default: the shipped samples).",
)
@click.option("--threads", default="1", show_default=True, help="Comma-separated thread counts.")
@click.option(
    "--runs", default=5, show_default=True, type=click.IntRange(1), help="Timed passes over the images."
)
@click.option(
    "--baseline",
    "baseline_runs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Training run(s) whose unpruned fp32 Keras models are the baseline (needs [train]).",
)
@click.option("--variants", is_flag=True, help="Also time every model of the bundle alone.")
@click.option(
    "--corpus",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A DICOM corpus (python -m cxr_edge.benchmarks.dicom_corpus): per transfer syntax, the fast "
    "decode path against the naive pixel_array decode and the previous path, plus cold start "
    "(benchmarks/decode.py).",
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the JSON here.")
def main(bundle_dir, image_paths, threads, runs, baseline_runs, variants, corpus, out):
    """Benchmark a bundle: per-stage latency, end-to-end percentiles, memory and size.

    Each measurement runs in a fresh process (peak memory of the runtime alone; the Keras baseline
    apart). Compare ratios from one invocation: the machine is shared.
    """
    from cxr_edge.dataset.samples import load_samples

    if corpus is not None:
        from cxr_edge.benchmarks.decode import bench_corpus

        result = bench_corpus(corpus, bundle_dir, threads=int(threads.split(",")[0]), runs=runs)
        result["command"] = shlex.join(["cxr-edge", "bench", *sys.argv[2:]])
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(result, indent=2) + "\n")
        return

    images = [str(p) for p in image_paths] or [str(s.file) for s in load_samples()]
    result = bench(
        bundle_dir,
        images,
        threads=[int(t) for t in threads.split(",")],
        runs=runs,
        baseline=list(baseline_runs),
        variants=variants,
    )
    result["command"] = shlex.join(
        ["cxr-edge", "bench", *sys.argv[2:]] if "bench" in sys.argv[1:2] else sys.argv
    )
    text = json.dumps(result, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    e2e = result["end_to_end"]
    click.echo(
        f"end to end p50 {e2e['p50_ms']:.1f} ms, p95 {e2e['p95_ms']:.1f} ms; peak RSS "
        f"{result['peak_rss_mb']:.0f} MiB; bundle {result['bundle_mb']:.2f} MiB"
        + (
            f"; {result['speedup_vs_baseline']:.1f}x faster than the fp32 Keras baseline "
            f"({result['baseline']['end_to_end']['p50_ms']:.1f} ms, "
            f"{result['baseline']['peak_rss_mb']:.0f} MiB)"
            if "baseline" in result
            else ""
        )
    )
    for stage, p in result["stages"].items():
        click.echo(f"  {stage:<28} p50 {p['p50_ms']:8.2f} ms")


if __name__ == "__main__":
    main()
