"""TF.js layers model -> Keras backbone weights (cxr_edge.train.tfjs_package, .tfjs_match, .tfjs_weights;
`cxr-edge import-weights`).

The TF.js models are written here, in the format tfjs-converter writes for Keras models (Keras 2
topology JSON, weightsManifest with per-tensor uint8/uint16 quantisation, binary shards), so nothing
is downloaded; the real nsfwjs package is only used when `make imagenet-weights` has fetched it.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import click
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers

from cxr_edge.cli import main
from cxr_edge.cli.common import weights_value
from cxr_edge.errors import SpecError
from cxr_edge.train import zoo
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.fit import _weights_origin
from cxr_edge.train.tfjs_match import transfer
from cxr_edge.train.tfjs_package import read_tfjs
from cxr_edge.train.tfjs_weights import import_tfjs_weights, provenance_path

pytestmark = pytest.mark.train

REPO = Path(__file__).resolve().parents[2]
NSFWJS = REPO / "build" / "nsfwjs" / "nsfwjs-4.4.0.tgz"
CONFIG_KEYS = ("kernel_size", "strides", "dilation_rate", "depth_multiplier", "activation", "epsilon")


def _producers(obj) -> list[str]:
    """Layer names feeding a Keras 3 serialised call (independent of the module under test)."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"][0]]
        return [n for v in obj.values() for n in _producers(v)]
    if isinstance(obj, list | tuple):
        return [n for v in obj for n in _producers(v)]
    return []


def write_tfjs(model: keras.Model, folder: Path, *, quant: str | None = "uint8", rename=lambda n: n) -> dict:
    """Writes ``model`` as a Keras-2-style TF.js layers model; returns ``"layer/var" -> quantisation step``.

    ``rename`` maps layer names (Keras 2 numbered its auto-names differently from Keras 3); weights are
    listed alphabetically and split over two shards at an odd byte, as tfjs-converter may do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for entry in model.get_config()["layers"]:
        cfg = entry["config"]
        config = {"name": rename(cfg["name"]), "trainable": cfg.get("trainable", True)}
        config |= {k: cfg[k] for k in CONFIG_KEYS if k in cfg}
        if entry["class_name"] == "InputLayer":
            config["batch_input_shape"] = list(cfg["batch_shape"])
        inbound = [[rename(n), 0, 0, {}] for n in _producers(entry["inbound_nodes"])]
        entries.append(
            {
                "name": rename(cfg["name"]),
                "class_name": entry["class_name"],
                "config": config,
                "inbound_nodes": [inbound] if inbound else [],
            }
        )
    out_name = model.get_config()["output_layers"]
    out_name = out_name[0] if isinstance(out_name[0], list | tuple) else out_name
    topology = {
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "model_config": {
            "class_name": "Model",
            "config": {"name": "m", "layers": entries, "output_layers": [[rename(out_name[0]), 0, 0]]},
        },
    }
    specs, blobs, steps = [], [], {}
    tensors = [
        (f"{rename(layer.name)}/{_tfjs_var(layer, v)}", v.numpy())
        for layer in model.layers
        for v in layer.weights
    ]
    for name, value in sorted(tensors, key=lambda t: t[0]):
        spec = {"name": name, "shape": list(value.shape), "dtype": "float32"}
        if quant is None:
            blobs.append(value.astype("<f4").tobytes())
            steps[name] = 0.0
        else:
            levels = 255 if quant == "uint8" else 65535
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / levels if hi > lo else 1.0
            q = np.round((value - lo) / scale).astype("u1" if quant == "uint8" else "<u2")
            spec["quantization"] = {"min": lo, "scale": scale, "dtype": quant}
            blobs.append(q.tobytes())
            steps[name] = scale
        specs.append(spec)
    data = b"".join(blobs)
    cut = len(data) // 3 + 1
    (folder / "group1-shard1of2.bin").write_bytes(data[:cut])
    (folder / "group1-shard2of2.bin").write_bytes(data[cut:])
    manifest = [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": specs}]
    (folder / "model.json").write_text(json.dumps({"modelTopology": topology, "weightsManifest": manifest}))
    return steps


def _tfjs_var(layer, variable) -> str:
    # Keras 2 / TF.js call a depthwise convolution's kernel "depthwise_kernel".
    depthwise = isinstance(layer, layers.DepthwiseConv2D) and variable.name == "kernel"
    return "depthwise_kernel" if depthwise else variable.name


def randomise(model: keras.Model, seed: int = 0) -> None:
    """Non-default values everywhere (BatchNorm statistics included), so a mix-up cannot pass."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = rng.normal(0, 0.5, size=tuple(v.shape))
        v.assign((np.abs(value) + 0.1 if "variance" in v.name else value).astype("float32"))


def tiny(head: bool) -> keras.Model:
    """Branches, an Add, a Concatenate (input order matters) and a depthwise/separable mix."""
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    a = layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x))
    b = layers.Conv2D(8, 1)(x)
    x = layers.Add()([a, b])
    c = layers.SeparableConv2D(4, 3, padding="same")(x)
    d = layers.Conv2D(6, 1, activation="relu")(x)
    x = layers.Concatenate(name="out")([c, d])
    if head:
        x = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, x)


def assert_within_step(source: keras.Model, target: keras.Model, pairs: dict, steps: dict, rename) -> None:
    checked = 0
    for keras_name, tfjs_name in pairs.items():
        ours, theirs = target.get_layer(keras_name), source.get_layer(tfjs_name.removeprefix("k2_"))
        assert tfjs_name == rename(theirs.name)
        for a, b in zip(ours.weights, theirs.weights, strict=True):
            step = steps[f"{tfjs_name}/{_tfjs_var(theirs, b)}"]
            diff = np.abs(a.numpy() - b.numpy()).max()
            assert diff <= step / 2 + 1e-6 * (1 + np.abs(b.numpy()).max())
            checked += 1
    assert checked == len(target.weights)


@pytest.mark.parametrize("quant", ["uint8", "uint16", None])
def test_dequantised_weights_match_within_the_quantisation_step(tmp_path, quant):
    keras.utils.set_random_seed(0)
    source = tiny(head=True)
    randomise(source)

    def rename(n):  # the source's names share nothing with the target's but the output's, as in Keras 2
        return n if n == "out" else f"k2_{n}"

    steps = write_tfjs(source, tmp_path / "m", quant=quant, rename=rename)
    target = tiny(head=False)  # built later: its auto-names differ from the source's
    model = read_tfjs(tmp_path / "m" / "model.json", "anything")
    pairs = transfer(model, target)
    assert len(pairs) == sum(1 for layer in target.layers if layer.weights) == 7
    assert_within_step(source, target, pairs, steps, rename)
    if quant == "uint8":  # the step is real: dequantised values are not the float originals
        assert max(steps.values()) > 1e-3
    assert {q["dtype"] for q in model.quantisation.values()} == {quant or "float32"}


def test_wiring_mismatch_is_refused(tmp_path):
    keras.utils.set_random_seed(0)
    source = tiny(head=False)
    write_tfjs(source, tmp_path / "m")
    inp = keras.Input((16, 16, 3))  # same layers, Concatenate inputs swapped
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    a = layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x))
    x = layers.Add()([a, layers.Conv2D(8, 1)(x)])
    x = layers.Concatenate(name="out")(
        [layers.Conv2D(6, 1, activation="relu")(x), layers.SeparableConv2D(4, 3, padding="same")(x)]
    )
    with pytest.raises(SpecError) as err:
        transfer(read_tfjs(tmp_path / "m", "m"), keras.Model(inp, x))
    assert err.value.expected and err.value.received


def test_mobilenet_width_multiplier_mismatch_names_both_sides(tmp_path):
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.5
    )
    write_tfjs(source, tmp_path / "mnv2")
    with pytest.raises(SpecError) as err:
        import_tfjs_weights(tmp_path / "mnv2", "mobilenet_v2", tmp_path / "w.weights.h5")
    assert "alpha 1.0" in err.value.expected and "alpha 0.5" in err.value.received
    assert not (tmp_path / "w.weights.h5").exists()


def test_graph_models_and_other_architectures_are_refused(tmp_path):
    (tmp_path / "g").mkdir()
    graph = {"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": []}
    (tmp_path / "g" / "model.json").write_text(json.dumps(graph))
    with pytest.raises(SpecError, match="graph model"):
        import_tfjs_weights(tmp_path / "g", "mobilenet_v2", tmp_path / "w.weights.h5")
    with pytest.raises(SpecError) as err:
        import_tfjs_weights(tmp_path / "g", "vgg16", tmp_path / "w.weights.h5")
    assert err.value.received == "vgg16"
    with pytest.raises(SpecError, match=r"\.weights\.h5"):
        import_tfjs_weights(tmp_path / "g", "mobilenet_v2", tmp_path / "w.h5")


def test_npm_tarball_to_zoo_backbone_with_provenance(tmp_path):
    keras.utils.set_random_seed(0)
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    randomise(source)
    package = tmp_path / "package"
    steps = write_tfjs(source, package / "dist" / "models" / "mobilenet_v2")
    (package / "package.json").write_text(
        json.dumps({"name": "fakepkg", "version": "1.2.3", "license": "MIT"})
    )
    (package / "dist" / "models" / "package.json").write_text('{"type": "commonjs"}')  # a stub, as nsfwjs has
    tgz = tmp_path / "fakepkg-1.2.3.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(package, arcname="package")
    shutil.rmtree(package)
    out = tmp_path / "w" / "mnv2.weights.h5"
    args = [
        "import-weights",
        "--tfjs",
        str(tgz),
        "--model",
        "mobilenet_v2",
        "--input-size",
        "32",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "260 of 260 Keras variables" in result.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already exists" in again.output
    # Loaded the way the zoo loads it, at another input size than the one it was checked at.
    backbone = zoo.build_backbone(zoo.preset("mobilenet_v2"), (48, 48, 3), weights=str(out))
    pairs = {
        layer.name: layer.name for layer in backbone.layers if layer.weights
    }  # names agree for MobileNet-V2
    assert_within_step(source, backbone, pairs, steps, rename=lambda n: n)
    made = json.loads(provenance_path(out).read_text())
    assert (made["package"], made["version"], made["licence"]) == ("fakepkg", "1.2.3", "MIT")
    assert len(made["source"]["tarball_sha256"]) == 64 and made["source"]["tarball_integrity"].startswith(
        "sha512-"
    )
    assert made["checks"]["keras_variables"] == made["checks"]["imported_variables"] == 260
    assert made["checks"]["all_zero_tensors"] == [] and made["checks"]["reloaded_identically"]
    assert made["layers"]["renamed"] == 0 and made["dequantisation"]["imported_by_dtype"] == {"uint8": 260}
    assert "package/dist/models/mobilenet_v2/model.json" in made["source"]["files"]
    origin = _weights_origin(TrainConfig(model="mobilenet_v2", weights=str(out)))
    assert "imported from fakepkg 1.2.3" in origin and made["source"]["tarball_sha256"] in origin
    provenance_path(out).write_text(json.dumps(made | {"weights_sha256": "0" * 64}))
    assert "stale" in _weights_origin(TrainConfig(model="mobilenet_v2", weights=str(out)))


def test_imagenet_passes_through_the_config_path_without_downloading(monkeypatch):
    config = TrainConfig(model="mobilenet_v2", weights="imagenet")
    seen = {}

    def fake_application(*, include_top, weights, input_shape):
        seen.update(include_top=include_top, weights=weights)
        inp = keras.Input(input_shape)
        return keras.Model(inp, layers.BatchNormalization()(layers.Conv2D(4, 3)(inp)))

    monkeypatch.setattr(keras.applications, "MobileNetV2", fake_application)
    zoo.build_backbone(zoo.preset("mobilenet_v2"), (32, 32, 3), weights=config.weights)
    assert seen == {"include_top": False, "weights": "imagenet"}
    with pytest.raises(SpecError, match="weights file not found"):
        zoo.build_backbone(zoo.preset("mobilenet_v2"), (32, 32, 3), weights="no/such.weights.h5")
    assert _weights_origin(config) == "ImageNet (keras.applications download)"
    assert weights_value(None, None, "imagenet") == "imagenet"
    with pytest.raises(click.BadParameter):
        weights_value(None, None, "no/such.weights.h5")


@pytest.mark.skipif(
    not NSFWJS.is_file() or shutil.which("node") is None, reason="run `make imagenet-weights`"
)
def test_real_nsfwjs_mobilenet_v2(tmp_path):
    made = import_tfjs_weights(NSFWJS, "mobilenet_v2", tmp_path / "m.weights.h5")
    assert (made["package"], made["version"], made["licence"]) == ("nsfwjs", "4.4.0", "MIT")
    assert made["source"]["input_shape"] == [224, 224, 3] and made["source"]["keras_version"] == "2.2.4"
    assert made["checks"]["imported_variables"] == 260 and made["checks"]["not_imported_tfjs_layers"] == [
        "dense_1",
        "dense_2",
        "dense_3",
    ]
    assert made["source_trainable_layers"][0] == "block_11_expand"  # frozen below: ImageNet
