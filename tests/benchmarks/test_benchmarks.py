"""The benchmark harness: JSON contract of `cxr-edge bench`, per-stage numbers, the report."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cxr_edge.benchmarks.report import pareto_front, render, write_plots
from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    images = [str(s.file) for s in load_samples()[:2]]
    args = ["bench", "--runs", "1", "--threads", "1,2", "--variants", "--out", str(out)]
    for image in images:
        args += ["--images", image]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_bench_json_contract(bench_json):
    r = bench_json
    assert r["bundle_mb"] > 0 and r["peak_rss_mb"] > 0
    assert r["end_to_end"]["p50_ms"] > 0 and r["end_to_end"]["p95_ms"] >= r["end_to_end"]["p50_ms"]
    assert {"decode", "preprocess", "combine"} <= set(r["stages"]) and all(
        "p50_ms" in v for v in r["stages"].values()
    )
    assert set(r["by_threads"]) == {"1", "2"} and r["images"] == 2
    assert set(r["variants"]) == set(r["models"])
    one = r["by_threads"]["1"]
    assert (
        one["import_ms"] > 0
        and 0 < one["rss_after_import_mb"] <= one["rss_after_init_mb"] <= one["peak_rss_mb"]
    )
    assert all(0.5 < m["val_auc_macro"] <= 1 for m in r["models"].values())
    assert r["machine"]["cores"] >= 1 and "command" in r


def test_report_renders_every_section(bench_json):
    text = render([("default", bench_json)], {"default": bench_json["command"]})
    for heading in ("End to end", "Stages", "Models", "Runtime alone", "Threads", "Commands"):
        assert f"## {heading}" in text
    assert "AVX-512" in text


@pytest.mark.train
def test_baseline_is_the_unpruned_keras_model(tmp_path, kit_manifest):
    from cxr_edge.dataset.manifest import load_manifest
    from cxr_edge.dataset.splits import make_split, write_split
    from cxr_edge.ops.preprocess import PreprocessSpec
    from cxr_edge.train.config import TrainConfig
    from cxr_edge.train.fit import train_run

    manifest = load_manifest(kit_manifest)
    split = write_split(tmp_path / "split.csv", manifest, make_split(manifest))
    del split
    config = TrainConfig(
        preprocess=PreprocessSpec(input_size=(32, 32)),
        model_args={"depth": 2, "base_filters": 4},
        epochs=1,
        batch_size=4,
        augment=False,
    )
    run = train_run(
        config, kit_manifest, tmp_path / "split.csv", tmp_path / "run", max_per_part=4, progress=False
    )
    out = tmp_path / "b.json"
    image = str(load_samples()[0].file)
    result = CliRunner().invoke(
        main, ["bench", "--runs", "1", "--images", image, "--baseline", str(run), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r["baseline"]["end_to_end"]["p50_ms"] > 0 and r["baseline"]["peak_rss_mb"] > r["peak_rss_mb"]
    assert r["speedup_vs_baseline"] > 0 and "faster than the fp32 Keras baseline" in result.output


def test_plots_and_the_pareto_front(bench_json, tmp_path):
    assert write_plots([("default", bench_json)], tmp_path) == ["pareto.png", "memory.png"]
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("pareto.png", "memory.png"))
    points = [
        ("slow-good", 10.0, 0.95),
        ("fast-bad", 1.0, 0.80),
        ("dominated", 5.0, 0.79),
        ("mid", 3.0, 0.90),
    ]
    assert [p[0] for p in pareto_front(points)] == ["fast-bad", "mid", "slow-good"]
    text = render([("default", bench_json)], {}, ["pareto.png"])
    assert "![pareto.png](pareto.png)" in text


def test_decode_bench_on_a_small_corpus(tmp_path, first_release_bundle):
    """`cxr-edge bench --corpus`: every path per syntax, ratios, cold start, the RESULTS.md section."""
    from cxr_edge.benchmarks.decode import SECTION_BEGIN, SECTION_END, render
    from cxr_edge.benchmarks.dicom_corpus import VARIANTS, make_corpus
    from cxr_edge.benchmarks.results_md import write_section

    corpus = tmp_path / "corpus"
    make_corpus(
        corpus, size=(532, 640), images=1, syntaxes=("explicit_le", "j2k_lossless"), variants=VARIANTS[:1]
    )
    out = tmp_path / "decode.json"
    args = ["bench", "--corpus", str(corpus), "--bundle", str(first_release_bundle), "--runs", "1"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert set(r["syntaxes"]) == {"explicit_le", "j2k_lossless"}
    for row in r["syntaxes"].values():
        assert set(row) >= {"naive", "previous", "fast_full", "fast", "fast_vs_previous"}
        assert row["previous"]["decoder"] == ["pydicom"] and row["fast_full"]["reduction"] == [1]
        assert row["fast"]["stages"]["total"]["p50_ms"] >= row["fast"]["stages"]["decode"]["p50_ms"] > 0
    assert r["cold_start"]["png_sample"]["wall_ms"] > r["cold_start"]["png_sample"]["import_ms"] > 0
    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Benchmark results\n\nearlier text\n")
    write_section(results_md, render(r), "decode")
    write_section(results_md, render(r), "decode")  # replaced, not appended twice
    text = results_md.read_text()
    assert text.count(SECTION_BEGIN) == 1 and text.count(SECTION_END) == 1 and "earlier text" in text
    assert "| j2k_lossless |" in text


def test_batch_benchmark_section_keeps_the_decode_section(tmp_path):
    from cxr_edge.benchmarks.batch import render, summarise
    from cxr_edge.benchmarks.decode import SECTION_BEGIN
    from cxr_edge.benchmarks.results_md import write_section

    def row(steady):
        return {"images": 9, "wall_s": 3.0, "fixed_s": 1.0, "img_per_s": 3.0, "steady_img_per_s": steady,
                "steady_ms_per_img": None if steady is None else round(1000 / steady, 1)}  # fmt: skip

    rows = {"predict": row(4.0), "batch local": row(4.0), "batch ray, 1 worker": row(2.0),
            "batch ray, 2 workers": row(3.0)}  # fmt: skip
    summary = summarise(rows)
    assert summary == {"scaling": 1.5, "ray_overhead_ms": 250.0, "ray_fixed_s": 1.0}
    rows["batch ray, 2 workers"] = row(None)  # within the noise: no ratio is invented
    assert summarise(rows)["scaling"] is None
    md = tmp_path / "RESULTS.md"
    md.write_text(f"# Results\n\n{SECTION_BEGIN}\ndecode table\n<!-- decode:end -->\n")
    result = {"machine": "m", "command": "python -m cxr_edge.benchmarks.batch", "inputs": {"x": rows},
              "summary": {"x": summary}}  # fmt: skip
    write_section(md, render(result), name="batch")
    write_section(md, render(result), name="batch")  # rewriting replaces, never duplicates
    text = md.read_text()
    assert "decode table" in text and text.count("<!-- batch:begin -->") == 1
    assert "| x | batch ray, 2 workers | 9 | 3.0 | 1.0 | 3.0 | - | - |" in text
