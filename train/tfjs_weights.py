"""TF.js layers model -> Keras ``.weights.h5`` for a ``keras.applications`` backbone (``include_top=False``).

ImageNet weights cannot be downloaded on the machines this toolkit is built on, but npm packages can,
and some ship Keras-born backbones as TF.js *layers* models (nsfwjs 4.4.0: MobileNet-V2 and
Inception-V3 with uint8-quantised weights). This module reads such a model from an npm tarball, an
extracted package folder, or a plain ``model.json`` + shards folder, dequantises its weights, maps
them onto the zoo's Keras 3 backbone and saves a ``.weights.h5`` that ``keras.applications`` loads
(``cxr_edge.train.zoo.build_backbone`` passes the file as ``weights=``), with a provenance JSON beside it.

Layers are paired by graph structure, not by name: TF.js models converted from Keras 2 carry Keras 2
auto-names (``conv2d_1`` ... ``conv2d_94`` in Inception-V3) while Keras 3 numbers its auto-named
layers per session. Walking both graphs back from the backbone output through their weighted layers,
input by input, pairs every layer whatever it is called, and checks class, configuration and weight
shapes on the way, so any architecture mismatch is a :class:`SpecError` naming both sides.

Bundled ``model.min.js`` files are browserified JavaScript modules, not JSON: they are evaluated with
``node`` in a ``vm`` context without ``require`` or ``process``, string code generation disabled and
node's permission model on (see :func:`_eval_js_module`); still, convert only packages you trust (the
tarball's npm integrity is recorded). Shard modules hold one base64 string, decoded here without node.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import keras
import numpy as np

from cxr_edge.errors import InputError, SpecError
from cxr_edge.hashing import file_sha256
from cxr_edge.provenance import now_utc, versions
from cxr_edge.train.zoo import preset

PROVENANCE_SUFFIX = ".provenance.json"
#: Zoo models a TF.js source is known to map onto (the graph matcher itself is architecture-neutral).
SUPPORTED_MODELS = ("mobilenet_v2", "inception_v3")
MODEL_FILES = ("model.json", "model.min.js")

_STORED_DTYPES = {"float32": "<f4", "int32": "<i4", "uint8": "u1", "uint16": "<u2", "float16": "<f2"}
# Configuration entries compared between paired layers; the rest (names, initialisers, padding, which
# Keras 3 folds into the convolution for MobileNet-V2's first layer) carries no weight semantics.
_CONFIG_KEYS = ("kernel_size", "strides", "dilation_rate", "depth_multiplier", "activation", "epsilon")
_NODE_EVAL = (
    "const vm=require('vm');const src=require('fs').readFileSync(0,'utf8');"
    "const m={exports:{}};vm.runInNewContext(src,{module:m,exports:m.exports},{timeout:120000});"
    "process.stdout.write(JSON.stringify(m.exports));"
)


@dataclass(frozen=True)
class GraphLayer:
    """One layer of a serialised Keras/TF.js functional graph.

    Attributes:
        name: Layer name.
        class_name: Keras class name (``Conv2D``, ``BatchNormalization``...).
        config: The layer's serialised config.
        inbound: Names of the layers feeding it, in argument order.
    """

    name: str
    class_name: str
    config: dict
    inbound: tuple[str, ...]


@dataclass(frozen=True)
class TfjsModel:
    """A TF.js layers model read from disk, weights dequantised.

    Attributes:
        layers: Graph layers by name, in topology order.
        outputs: Names of the output layers.
        input_shape: ``(H, W, C)`` of the (single) input; entries may be None.
        weights: ``layer -> variable -> float32 array`` (variable names as TF.js stores them).
        quantisation: ``"layer/variable" -> {"dtype": ..., "step": ...}`` for every weight.
        source: What was read: origin, package metadata, file hashes (goes into the provenance).
    """

    layers: dict[str, GraphLayer]
    outputs: tuple[str, ...]
    input_shape: tuple
    weights: dict[str, dict[str, np.ndarray]]
    quantisation: dict[str, dict]
    source: dict


# --- Reading the source -------------------------------------------------------------------------


def _pick_model_dir(dirs: list[str], model: str, origin: Path) -> str:
    named = [d for d in dirs if PurePosixPath(d).name == model]
    if len(named) == 1:
        return named[0]
    if len(dirs) == 1 and not named:
        return dirs[0]  # a plain model folder: its name need not be the model's
    raise InputError(
        f"cannot tell which TF.js model in {origin} is {model}",
        expected=f"one folder named {model} holding {' or '.join(MODEL_FILES)}",
        received=str(sorted(dirs)) if dirs else "no model.json / model.min.js",
    )


def _wanted(names: list[str], model: str, origin: Path) -> tuple[str, list[str]]:
    """The model folder among ``names`` and the files to read: its own, then metadata nearest-first."""
    dirs = sorted({str(PurePosixPath(n).parent) for n in names if PurePosixPath(n).name in MODEL_FILES})
    model_dir = _pick_model_dir(dirs, model, origin)
    wanted = [n for n in names if str(PurePosixPath(n).parent) == model_dir]
    for parent in PurePosixPath(model_dir).parents:
        wanted += [
            n for n in (f"{parent}/package.json", f"{parent}/LICENSE") if n.removeprefix("./") in names
        ]
    return model_dir, [n.removeprefix("./") for n in wanted]


def _collect(origin: Path, model: str) -> tuple[str, dict[str, bytes], dict]:
    """Reads the model folder's files (and the package's metadata) from a tarball or a folder.

    Returns:
        ``(model_dir, files, source)``: the model folder (posix, relative), its files by relative path
        (then ``package.json``/``LICENSE`` of its parents, nearest first), and provenance about the
        origin (kind; for a tarball its sha256 and sha512 integrity).
    """
    if origin.is_file() and tarfile.is_tarfile(origin):
        with tarfile.open(origin) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            model_dir, wanted = _wanted(list(members), model, origin)
            files = {n: tar.extractfile(members[n]).read() for n in wanted}
        data = origin.read_bytes()
        return (
            model_dir,
            files,
            {
                "kind": "npm tarball",
                "tarball_sha256": hashlib.sha256(data).hexdigest(),
                # The form of npm's `dist.integrity`, so the tarball can be checked against the registry.
                "tarball_integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
            },
        )
    if origin.is_file() and origin.name not in MODEL_FILES:
        raise InputError("not a TF.js model", expected="a .tgz, a folder or model.json", received=str(origin))
    # Package metadata is looked for inside the given folder only: a package.json further up could
    # belong to anything and must not be credited in the provenance.
    root = origin.parent if origin.is_file() else origin
    model_dir, wanted = _wanted([p.relative_to(root).as_posix() for p in root.rglob("*")], model, origin)
    return model_dir, {n: (root / n).read_bytes() for n in wanted if (root / n).is_file()}, {"kind": "folder"}


def _package_metadata(files: dict[str, bytes]) -> dict:
    """The nearest ``package.json`` that names a package ({} when none): skips stubs like {"type": ...}."""
    for name, data in files.items():
        if PurePosixPath(name).name != "package.json":
            continue
        try:
            meta = json.loads(data)
        except json.JSONDecodeError:
            continue
        if isinstance(meta, dict) and meta.get("name"):
            return {"package": meta["name"], "version": meta.get("version"), "licence": meta.get("license")}
    return {}


def _eval_js_module(data: bytes, label: str) -> tuple[dict, str]:
    """The object a (browserified) JS module exports, and how it was read.

    A vm context alone is no security boundary (``module.constructor.constructor`` reaches the host's
    ``Function``), so node also runs without string code generation and, where it has one, under its
    permission model (no file access beyond stdin, no child processes).
    """
    node = shutil.which("node")
    if node is None:
        raise InputError(f"reading {label} (JavaScript) needs node", expected="node on PATH", received="none")
    for permission in ("--permission", "--experimental-permission", None):  # node >= 22.13, 20, older
        flags = ["--disallow-code-generation-from-strings", *([permission] if permission else [])]
        run = subprocess.run([node, *flags, "-e", _NODE_EVAL], input=data, capture_output=True, timeout=300)
        if b"bad option" not in run.stderr:
            break
    if run.returncode != 0:
        raise InputError(
            f"node could not evaluate {label}", received=run.stderr.decode(errors="replace")[-200:]
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return json.loads(run.stdout), f"node {version} {' '.join(flags)} (vm context without require/process)"


def _in(model_dir: str, name: str) -> str:
    return name if model_dir == "." else f"{model_dir}/{name}"


def _model_json(files: dict[str, bytes], model_dir: str) -> tuple[dict, str]:
    if _in(model_dir, "model.json") in files:
        return json.loads(files[_in(model_dir, "model.json")]), "json"
    return _eval_js_module(files[_in(model_dir, "model.min.js")], _in(model_dir, "model.min.js"))


def _shard(files: dict[str, bytes], model_dir: str, path: str) -> bytes:
    for name in (path, f"{path}.bin", f"{path}.min.js", f"{path}.js"):
        data = files.get(_in(model_dir, name))
        if data is None:
            continue
        if not name.endswith(".js"):
            return data
        literals = re.findall(rb'exports\s*=\s*"([A-Za-z0-9+/=]*)"', data)
        if len(literals) != 1:
            raise InputError(f"unexpected shard module {name}", expected="one base64 string", received="?")
        return base64.b64decode(literals[0], validate=True)
    raise InputError("weight shard missing", expected=f"{path}[.bin|.min.js] in {model_dir}", received="none")


def _decode_weights(manifest: list, shard) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict]]:
    """Dequantises every weight of a ``weightsManifest`` (uint8/uint16: ``q * scale + min``)."""
    weights: dict[str, dict[str, np.ndarray]] = {}
    quantisation: dict[str, dict] = {}
    for group in manifest:
        data = b"".join(shard(p) for p in group["paths"])  # a tensor may straddle two shards
        offset = 0
        for spec in group["weights"]:
            quant = spec.get("quantization")
            stored = quant["dtype"] if quant else spec["dtype"]
            if stored not in _STORED_DTYPES:
                raise SpecError(
                    f"dtype of {spec['name']}", expected=str(list(_STORED_DTYPES)), received=stored
                )
            count = math.prod(spec["shape"])
            size = count * np.dtype(_STORED_DTYPES[stored]).itemsize
            if offset + size > len(data):
                raise InputError(
                    "shards truncated", expected=f">= {offset + size} B", received=f"{len(data)}"
                )
            raw = np.frombuffer(data, dtype=_STORED_DTYPES[stored], count=count, offset=offset)
            offset += size
            step = 0.0
            if stored in ("uint8", "uint16") and quant:
                step = float(quant["scale"])
                values = (raw.astype(np.float64) * step + float(quant["min"])).astype(np.float32)
            else:
                values = raw.astype(np.float32)
            layer_path, _, variable = spec["name"].rpartition("/")
            layer = layer_path.rsplit("/", 1)[-1]
            if variable in weights.setdefault(layer, {}):
                raise SpecError("duplicate weight", expected="unique names", received=spec["name"])
            weights[layer][variable] = values.reshape(spec["shape"])
            quantisation[f"{layer}/{variable}"] = {"dtype": stored, "step": step}
        if offset != len(data):
            raise InputError("shards too long", expected=f"{offset} B", received=f"{len(data)} B")
    return weights, quantisation


def _history_names(obj, out: list[str]) -> None:
    """Collects producer layer names from a serialised call, Keras 2 (``[name, 0, 0, {}]``) or Keras 3."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            out.append(obj["config"]["keras_history"][0])
            return
        for value in obj.values():
            _history_names(value, out)
    elif isinstance(obj, list | tuple):  # Keras 3's get_config() holds tuples, its JSON lists
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            out.append(obj[0])
            return
        for value in obj:
            _history_names(value, out)


def parse_topology(model_config: dict) -> tuple[dict[str, GraphLayer], tuple[str, ...]]:
    """Layers and output names of a serialised functional model (Keras 2, Keras 3 or TF.js JSON)."""
    class_name, config = model_config.get("class_name"), model_config.get("config")
    if class_name not in ("Model", "Functional"):
        raise SpecError("unsupported model topology", expected="a functional model", received=str(class_name))
    layers = {}
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise SpecError(
                "shared layers are not supported", expected="one call per layer", received=entry["name"]
            )
        inbound: list[str] = []
        _history_names(nodes[0] if nodes else [], inbound)
        layers[entry["name"]] = GraphLayer(
            entry["name"], entry["class_name"], entry["config"], tuple(inbound)
        )
    outputs = config["output_layers"]
    outputs = [outputs] if outputs and isinstance(outputs[0], str) else outputs  # one output: not nested
    return layers, tuple(o[0] for o in outputs)


def read_tfjs(path: str | Path, model: str) -> TfjsModel:
    """Reads a TF.js layers model: an npm tarball, an (extracted) package folder, or a model folder.

    Args:
        path: ``.tgz``; a folder holding ``dist/models/<model>/``; a folder or ``model.json`` /
            ``model.min.js`` with its weight shards (``.bin`` as tfjs writes them, or ``.min.js``).
        model: Model folder to pick when the package holds several (e.g. ``mobilenet_v2``).

    Raises:
        InputError: files missing, truncated or unreadable.
        SpecError: not a layers model (e.g. a TF.js graph model), unsupported dtypes or topology.
    """
    origin = Path(path)
    if not origin.exists():
        raise InputError(
            "TF.js source not found", expected="a .tgz, folder or model.json", received=str(origin)
        )
    model_dir, files, source = _collect(origin, model)
    document, read_with = _model_json(files, model_dir)
    topology = document.get("modelTopology") or {}
    if document.get("format") == "graph-model" or "node" in topology:
        raise SpecError("a TF.js graph model has no layers", expected="a layers model", received=model_dir)
    model_config = topology.get("model_config", topology)  # Keras-converted vs tfjs-layers-saved layout
    layers, outputs = parse_topology(model_config)
    weights, quantisation = _decode_weights(
        document["weightsManifest"], lambda p: _shard(files, model_dir, p)
    )
    inputs = [layer.config for layer in layers.values() if layer.class_name == "InputLayer"]
    shape = (inputs[0].get("batch_input_shape") or inputs[0].get("batch_shape")) if inputs else None
    source |= {
        "path": str(origin),
        "model_dir": model_dir,
        **_package_metadata(files),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
        "format": "TF.js layers model",
        "keras_version": topology.get("keras_version"),
        "read_with": read_with,
    }
    return TfjsModel(
        layers=layers,
        outputs=outputs,
        input_shape=tuple(shape[1:]) if shape else (None, None, None),
        weights=weights,
        quantisation=quantisation,
        source=source,
    )


# --- Mapping onto Keras ------------------------------------------------------------------------


def _source_variable(class_name: str, variable: str) -> str:
    # Keras 2 called a depthwise convolution's kernel ``depthwise_kernel``; Keras 3 calls it ``kernel``.
    return "kernel" if class_name == "DepthwiseConv2D" and variable == "depthwise_kernel" else variable


def _frontier(layers: dict[str, GraphLayer], weighted: set[str], names, memo: dict) -> list[str]:
    """The nearest weighted layers behind ``names``, in input order, looking through weightless ones."""
    out: list[str] = []
    for name in names:
        if name in weighted:
            found = [name]
        else:
            if name not in memo:
                memo[name] = _frontier(layers, weighted, layers[name].inbound, memo) if name in layers else []
            found = memo[name]
        out.extend(f for f in found if f not in out)
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-6)
    return np.ravel(a).tolist() == np.ravel(b).tolist()  # [1, 1] in Keras 2 JSON, (1, 1) in Keras 3


def _check_pair(source: TfjsModel, tfjs_name: str, keras_layer) -> None:
    src = source.layers[tfjs_name]
    where = f"layer {keras_layer.name!r} (TF.js {tfjs_name!r})"
    if src.class_name != keras_layer.__class__.__name__:
        raise SpecError(
            f"{where}: layer kind differs", expected=keras_layer.__class__.__name__, received=src.class_name
        )
    theirs = {_source_variable(src.class_name, k): v for k, v in source.weights[tfjs_name].items()}
    ours = {v.name: tuple(v.shape) for v in keras_layer.weights}
    if set(theirs) != set(ours):
        raise SpecError(
            f"{where}: variables differ", expected=str(sorted(ours)), received=str(sorted(theirs))
        )
    for name, shape in ours.items():
        if tuple(theirs[name].shape) != shape:
            raise SpecError(
                f"{where}: {name} shape differs", expected=str(shape), received=str(theirs[name].shape)
            )
    config = keras_layer.get_config()
    for key in _CONFIG_KEYS:
        if key in config and key in src.config:
            a, b = config[key], src.config[key]
            if not _same(a, b):
                raise SpecError(f"{where}: {key} differs", expected=str(a), received=str(b))


def match_layers(source: TfjsModel, target: keras.Model) -> dict[str, str]:
    """Pairs every weighted layer of ``target`` with a layer of ``source`` by graph structure.

    Both graphs are walked back from the target's output (found in the source by name: it is the
    architecture's named backbone output, e.g. ``out_relu`` or ``mixed10``), through weighted layers
    only, pairing the i-th weighted input of one layer with the i-th of its counterpart.

    Returns:
        ``keras layer name -> TF.js layer name`` for every layer of ``target`` that has weights.

    Raises:
        SpecError: the graphs differ (layer kinds, variables, shapes, configuration or wiring).
    """
    ours, our_outputs = parse_topology({"class_name": "Functional", "config": target.get_config()})
    our_weighted = {layer.name for layer in target.layers if layer.weights}
    missing = [o for o in our_outputs if o not in source.layers]
    if missing:
        raise SpecError(
            "the TF.js model lacks the backbone's output layer",
            expected=f"a layer named {missing[0]!r}",
            received=f"outputs {list(source.outputs)}",
        )
    their_weighted = set(source.weights) & set(source.layers)
    memo_ours: dict = {}
    memo_theirs: dict = {}
    pairs: dict[str, str] = {}
    stack = [(our_outputs, our_outputs)]  # the output is named alike on both sides (checked above)
    while stack:
        mine, theirs = stack.pop()
        mine = _frontier(ours, our_weighted, mine, memo_ours)
        theirs = _frontier(source.layers, their_weighted, theirs, memo_theirs)
        if len(mine) != len(theirs):
            raise SpecError(
                "the graphs are wired differently",
                expected=f"{len(mine)} weighted inputs ({', '.join(mine)})",
                received=f"{len(theirs)} ({', '.join(theirs)})",
            )
        for keras_name, tfjs_name in zip(mine, theirs, strict=True):
            if keras_name in pairs:
                if pairs[keras_name] != tfjs_name:
                    raise SpecError(
                        f"layer {keras_name!r} reached from two TF.js layers",
                        expected=pairs[keras_name],
                        received=tfjs_name,
                    )
                continue
            _check_pair(source, tfjs_name, target.get_layer(keras_name))
            pairs[keras_name] = tfjs_name
            stack.append((ours[keras_name].inbound, source.layers[tfjs_name].inbound))
    if set(pairs) != our_weighted or len(set(pairs.values())) != len(pairs):
        raise SpecError(
            "layer map incomplete or not one-to-one",
            expected=f"{len(our_weighted)} backbone layers",
            received=f"{len(pairs)} paired with {len(set(pairs.values()))} TF.js layers",
        )
    # In the backbone's layer order, so the provenance map reads top to bottom.
    return {layer.name: pairs[layer.name] for layer in target.layers if layer.name in pairs}


def transfer(source: TfjsModel, target: keras.Model) -> dict[str, str]:
    """Assigns the source's weights to ``target``'s weighted layers; returns the layer map used."""
    pairs = match_layers(source, target)
    for keras_name, tfjs_name in pairs.items():
        layer = target.get_layer(keras_name)
        cls = source.layers[tfjs_name].class_name
        values = {_source_variable(cls, k): v for k, v in source.weights[tfjs_name].items()}
        layer.set_weights([values[v.name] for v in layer.weights])
    return pairs


# --- Checks, export, provenance ------------------------------------------------------------------


def _input_size(source: TfjsModel, model: str, input_size: int | None) -> int:
    """Refuses sources the zoo's backbone cannot take; returns the input side to build it at."""
    p = preset(model)
    height, width, channels = (*source.input_shape, None, None, None)[:3]
    if channels not in (None, p.channels):
        raise SpecError(
            f"{model} takes {p.channels}-channel input", expected=str(p.channels), received=str(channels)
        )
    if model == "mobilenet_v2":
        # The zoo builds MobileNet-V2 at width multiplier 1.0: its last block projects to 320*alpha channels.
        kernel = source.weights.get("block_16_project", {}).get("kernel")
        filters = None if kernel is None else kernel.shape[-1]
        if filters != 320:
            received = (
                "no block_16_project layer"
                if filters is None
                else f"alpha {filters / 320:g} ({filters} filters)"
            )
            raise SpecError(
                "TF.js MobileNetV2 has another width multiplier than the zoo's",
                expected="alpha 1.0 (block_16_project: 320 filters)",
                received=received,
            )
    size = input_size or height or p.input_size
    if size < p.min_size or (width is not None and input_size is None and width != height):
        raise SpecError(
            f"{model} input size unusable",
            expected=f"a square input of at least {p.min_size} px",
            received=f"{size} (source {height}x{width})",
        )
    return int(size)


def weight_checks(target: keras.Model, source: TfjsModel, pairs: dict[str, str]) -> dict:
    """Plausibility of the imported weights; raises on non-finite values or negative variances."""
    arrays = {v.path: v.numpy() for v in target.weights}
    bad = [k for k, a in arrays.items() if not np.isfinite(a).all()]
    variances = np.concatenate(
        [a for k, a in arrays.items() if k.endswith("/moving_variance")] or [np.ones(1)]
    )
    if bad or variances.min() < 0:
        raise SpecError(
            "implausible imported weights", expected="finite values, variances >= 0", received=str(bad[:5])
        )
    imported = {f"{t}/{k}" for t in pairs.values() for k in source.weights[t]}
    return {
        "keras_variables": len(target.weights),
        "imported_variables": len(imported),
        "tfjs_variables": len(source.quantisation),
        "not_imported_tfjs_layers": sorted(set(source.weights) - set(pairs.values())),
        "all_zero_tensors": sorted(k for k, a in arrays.items() if not a.any()),
        "constant_tensors": sorted(
            k for k, a in arrays.items() if a.size > 1 and a.min() == a.max() and a.any()
        ),
        "bn_variance_min": float(variances.min()),
        "bn_zero_variance_channels": int((variances == 0).sum()),
        "max_quantisation_step": max((source.quantisation[k]["step"] for k in imported), default=0.0),
    }


def _note(package: str | None) -> str:
    who = f"the {package} authors" if package else "the source's authors"
    return (
        "Layers the source marked trainable=false carry the weights its authors started from (ImageNet for "
        "nsfwjs). The layers listed in source_trainable_layers were trainable when the source was saved and "
        f"may have been fine-tuned by {who} on their own classes (NSFW image categories for nsfwjs): they "
        "are ImageNet-initialised, not ImageNet weights. Quantised weights differ from the float "
        "originals by up to half a quantisation step."
    )


def import_tfjs_weights(
    source_path: str | Path,
    model: str,
    out: str | Path,
    *,
    input_size: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Converts a TF.js layers model's backbone into a Keras ``.weights.h5`` and writes its provenance.

    Args:
        source_path: See :func:`read_tfjs`.
        model: Zoo backbone to build (``mobilenet_v2`` or ``inception_v3``), ``include_top=False``.
        out: Target ``.weights.h5``; ``<out>.provenance.json`` is written beside it.
        input_size: Input side the Keras backbone is built and checked at (default: the source's).
            The backbone's weights do not depend on it: the file loads at any side >= the preset's minimum.
        overwrite: Replace an existing ``out``.

    Returns:
        The provenance record (also written to ``<out>.provenance.json``).

    Raises:
        SpecError: unsupported model, architecture mismatch (expected vs received), bad ``out`` name.
        InputError: unreadable or incomplete source files.
    """
    if model not in SUPPORTED_MODELS:
        raise SpecError(
            "no TF.js import for this model", expected=f"one of {list(SUPPORTED_MODELS)}", received=model
        )
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise SpecError("weights file name", expected="a name ending in .weights.h5", received=out.name)
    if out.exists() and not overwrite:
        raise SpecError(
            "weights file already exists", expected="a new path, or overwrite (--force)", received=str(out)
        )
    p = preset(model)
    source = read_tfjs(source_path, model)
    size = _input_size(source, model, input_size)
    constructor = getattr(keras.applications, p.application)
    shape = (size, size, p.channels)
    target = constructor(include_top=False, weights=None, input_shape=shape)
    pairs = transfer(source, target)
    checks = weight_checks(target, source, pairs)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name.removesuffix(".weights.h5") + ".partial.weights.h5")
    target.save_weights(partial)
    # Load it exactly as cxr_edge.train.zoo.build_backbone will, and insist on bit-identical variables.
    reloaded = constructor(include_top=False, weights=str(partial), input_shape=shape)
    if not all(
        np.array_equal(a, b) for a, b in zip(target.get_weights(), reloaded.get_weights(), strict=True)
    ):
        partial.unlink()
        raise SpecError(
            "saved weights do not reload unchanged", expected="identical variables", received="differences"
        )
    partial.replace(out)
    checks["reloaded_identically"] = True
    trainable = [k for k, t in pairs.items() if source.layers[t].config.get("trainable", True)]
    dtypes = [source.quantisation[f"{t}/{k}"]["dtype"] for t in pairs.values() for k in source.weights[t]]
    provenance = {
        "created": now_utc(),
        "tool": "cxr-edge import-weights (train/tfjs_weights.py)",
        "versions": versions("keras", "tensorflow-cpu", "numpy"),
        "weights_file": out.name,
        "weights_sha256": file_sha256(out),
        "model": model,
        "keras_application": f"keras.applications.{p.application}(include_top=False)",
        "input_shape_checked": list(shape),
        "loads_at": f"any square input of at least {p.min_size} px (backbone weights are size-independent)",
        "package": source.source.get("package"),
        "version": source.source.get("version"),
        "licence": source.source.get("licence"),
        "source": source.source | {"input_shape": list(source.input_shape)},
        "dequantisation": {
            "formula": "uint8/uint16: q * scale + min per tensor (weightsManifest quantization)",
            "imported_by_dtype": {d: dtypes.count(d) for d in sorted(set(dtypes))},
        },
        "layers": {
            "imported": len(pairs),
            "renamed": sum(k != t for k, t in pairs.items()),
            # Keras 3 numbers auto-named layers per session; .weights.h5 files are addressed by order.
            "keras_names": "as numbered in a fresh Keras session (the weights file does not use names)",
            "map": pairs,
        },
        "source_trainable_layers": trainable,
        "checks": checks,
        "note": _note(source.source.get("package")),
    }
    provenance_path(out).write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def provenance_path(weights: str | Path) -> Path:
    """Where the provenance JSON of a weights file lives: ``<file>.provenance.json``."""
    return Path(f"{weights}{PROVENANCE_SUFFIX}")


def read_provenance(weights: str | Path) -> dict | None:
    """The provenance JSON beside ``weights``, or None when there is none (or it is unreadable)."""
    path = provenance_path(weights)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None
