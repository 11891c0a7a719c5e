"""``cxr-edge train --distribute data-parallel``: Keras' DataParallel on two virtual CPU devices (JAX).

Each training runs in a subprocess, since the Keras backend and the XLA device count are fixed when
Keras and JAX are first imported.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.train

CONFIG = """\
model = "custom_cnn"
labels = ["covid", "normal", "pneumonia_unknown"]
epochs = 2
batch_size = 8
augment = false
seed = 3

[model_args]
depth = 2
base_filters = 4

[preprocess]
input_size = [32, 32]
"""
# 12 images per part with batches of 8 split in 8 + 4: every batch (and the validation part)
# splits evenly across 2 devices, so both runs fit exactly the same images.
PER_PART = "12"

# Both runs in one process (one JAX start-up instead of two); between them set_random_seed reseeds
# everything. The script also checks that the distribution does not outlive its run and returns the
# largest difference between the two best models' weights.
RUNS = """\
import json, sys
import keras
import numpy as np
from cxr_edge.cli import main
from cxr_edge.errors import SpecError
from cxr_edge.train.distribute import plan_devices

common, single, parallel = json.loads(sys.argv[1])
main([*common, "--out", single], standalone_mode=False)
main([*common, "--out", parallel, "--distribute", "data-parallel"], standalone_mode=False)
report = {"leaked": keras.distribution.distribution() is not None}
a, b = (keras.models.load_model(f"{run}/best.keras").get_weights() for run in (single, parallel))
report["weights_max_abs_diff"] = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
try:
    plan_devices("data-parallel", 3)
except SpecError as exc:
    report["odd_batch_error"] = str(exc)
print("REPORT " + json.dumps(report))
"""


def _env(backend: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KERAS_BACKEND=backend,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        CUDA_VISIBLE_DEVICES="",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONHASHSEED="0",
    )
    return env


def _common_args(tmp_path: Path, manifest: Path, split: Path) -> list[str]:
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    data = ["--manifest", str(manifest), "--split", str(split), "--max-per-part", PER_PART]
    return ["train", "--config", str(config), *data]


@pytest.fixture(scope="module")
def jax_runs(kit_manifest, split, tmp_path_factory):
    """A single-device and a 2-device data-parallel JAX run of the same config and seed."""
    pytest.importorskip("jax", reason="data-parallel training needs jax (pip install jax)")
    tmp = tmp_path_factory.mktemp("distribute")
    single, parallel = tmp / "single", tmp / "parallel"
    args = json.dumps([_common_args(tmp, kit_manifest, split), str(single), str(parallel)])
    proc = subprocess.run(
        [sys.executable, "-c", RUNS, args], env=_env("jax"), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPORT ", 1)[1])
    return single, parallel, report


def _run_info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def _history(run: Path) -> dict[str, np.ndarray]:
    lines = (run / "history.csv").read_text().split()
    names = lines[0].split(",")
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    return {name: rows[:, i] for i, name in enumerate(names)}


def test_data_parallel_matches_single_device(jax_runs):
    single, parallel, report = jax_runs
    info = _run_info(parallel)
    assert info["distribute"] == "data-parallel" and info["devices"] == 2
    assert info["left_out_for_devices"] == {"train_per_epoch": 0, "val": 0}
    assert not report["leaked"]  # the scope restored "no distribution" after the run
    # Same images, seed, dropout masks and updates: only the float32 summation order differs (each
    # device sums its half-batch's gradient, then the all-reduce adds the halves), so results agree
    # to a few ulp. Measured on a 2-core CPU: weights differ by at most 6.0e-8 (|w| ~ 0.1-1) and
    # validation loss by 1.2e-7 (relative 1e-7). The tolerance (1e-5 absolute on weights, 1e-5
    # relative on losses) leaves ~100x headroom for other CPUs and XLA versions yet stays far below
    # what a real bug gives: a halved gradient (one shard's mean weighted wrongly) moved the weights
    # by 1.0e-2 after the 4 SGD steps here (measured with learning_rate 0.005 against 0.01).
    assert report["weights_max_abs_diff"] <= 1e-5
    h1, h2 = _history(single), _history(parallel)
    assert h1.keys() == h2.keys()
    for name in ("loss", "val_loss"):
        np.testing.assert_allclose(h2[name], h1[name], rtol=1e-5, err_msg=name)
    m1, m2 = _run_info(single)["val_metrics"], info["val_metrics"]
    assert m2["accuracy"] == m1["accuracy"]
    assert math.isclose(m2["auc_macro"], m1["auc_macro"], abs_tol=1e-6)


def test_jax_run_records_backend_and_one_device(jax_runs):
    single, parallel, _ = jax_runs
    info = _run_info(single)
    assert info["keras_backend"] == "jax" and _run_info(parallel)["keras_backend"] == "jax"
    assert info["distribute"] == "none" and info["devices"] == 1
    assert info["versions"]["jax"] != "absent"


def test_batch_size_must_split_across_devices(jax_runs):
    message = jax_runs[2]["odd_batch_error"]
    assert "expected batch_size divisible by 2" in message and "received batch_size=3" in message


def test_data_parallel_under_tensorflow_is_a_clean_error(kit_manifest, split, tmp_path):
    out = tmp_path / "run"
    code = "import sys; from cxr_edge.cli import main; main(sys.argv[1:])"
    args = [*_common_args(tmp_path, kit_manifest, split), "--out", str(out), "--distribute", "data-parallel"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=_env("tensorflow"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "data-parallel training needs the JAX backend" in proc.stderr
    assert "expected KERAS_BACKEND=jax; received tensorflow" in proc.stderr
    assert not out.exists()  # refused before the run directory is made


class _Batches:
    """A stand-in PyDataset: 11 examples in batches of 4 (4, 4, 3), dict targets like the adversary's."""

    def __init__(self):
        self.epochs_ended = 0

    def __len__(self):
        return 3

    def __getitem__(self, i):
        n = min(4, 11 - 4 * i)
        return np.zeros((n, 2)), {"probs": np.zeros((n, 3)), "source": np.zeros((n, 1))}

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_plan_trims_batches_and_arrays_to_the_device_count():
    from cxr_edge.train.distribute import DevicePlan

    plan = DevicePlan("data-parallel", 2)  # no Keras distribution needed to trim
    inner = _Batches()
    batches = plan.batches(inner, n=11, batch_size=4)
    assert len(batches) == 3
    x, y = batches[2]
    assert len(x) == 2 and {k: len(v) for k, v in y.items()} == {"probs": 2, "source": 2}
    batches.on_epoch_end()
    assert inner.epochs_ended == 1  # reshuffling still reaches the wrapped sequence
    assert len(plan.batches(_Batches(), n=9, batch_size=4)) == 2  # a last batch of 1: dropped
    assert len(plan.trim(np.zeros((7, 3)))) == 6 and plan.batch_size(32) == 32
    assert plan.metadata(11, 7, 4)["left_out_for_devices"] == {"train_per_epoch": 1, "val": 1}
    assert DevicePlan("data-parallel", 3).batch_size(32) == 33
    one = DevicePlan("none", 1)
    assert one.batches(inner, n=11, batch_size=4) is inner and one.trim(x) is x
