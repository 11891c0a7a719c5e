"""Predictor batches: folder expansion and per-file failure isolation."""

from __future__ import annotations

import shutil

from cxr_edge import pipeline
from cxr_edge.errors import InputError
from cxr_edge.pipeline import Predictor, expand_inputs
from cxr_edge.samples import load_samples


def test_expand_inputs_recurses_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b" / ".git").mkdir(parents=True)
    for name in ("b/2.dcm", "b/1", "a.png", ".DS_Store", "b/.git/x.png"):
        (tmp_path / name).write_bytes(b"x")
    files = expand_inputs([tmp_path, tmp_path / "missing.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.png", "b/1", "b/2.dcm", "missing.png"]


def test_unexpected_decoder_failure_is_reported_on_that_file_only(tmp_path, monkeypatch):
    samples = load_samples()[:3]
    files = []
    for i, s in enumerate(samples):
        files.append(tmp_path / f"{i}.png")
        shutil.copy(s.file, files[-1])
    real = pipeline.read_image

    def flaky(path, options=None):
        if str(path).endswith("1.png"):
            raise RuntimeError("decoder exploded")
        return real(path, options)

    monkeypatch.setattr(pipeline, "read_image", flaky)
    outcomes = list(Predictor().predict_many(files))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, InputError) and "decoder exploded" in str(outcomes[1].error)


def test_prediction_probabilities_follow_bundle_labels():
    predictor = Predictor()
    pred = predictor.predict_file(load_samples()[0].file)
    assert tuple(pred.probs) == predictor.labels
    assert abs(sum(pred.probs.values()) - 1) < 0.02
    assert pred.label == max(pred.probs, key=pred.probs.get)
