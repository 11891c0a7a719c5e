"""Reads a TF.js layers model: topology and dequantised weights, from an npm package or a folder.

ImageNet weights cannot be downloaded on the machines this toolkit is built on, but npm packages can,
and some ship Keras-born backbones as TF.js *layers* models (nsfwjs 4.4.0: MobileNet-V2 and
Inception-V3 with uint8-quantised weights). This module reads such a model from an npm tarball, an
extracted package folder, or a plain ``model.json`` + shards folder, parses its functional topology
into :class:`GraphLayer` s and dequantises its weights into a :class:`TfjsModel`, with what was read
(package metadata, file hashes, the tarball's npm integrity) for the provenance. It needs no Keras:
mapping onto a Keras backbone is :mod:`cxr_edge.train.tfjs_match`, the export
:mod:`cxr_edge.train.tfjs_weights`.

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

import numpy as np

from cxr_edge.errors import InputError, SpecError

MODEL_FILES = ("model.json", "model.min.js")

_STORED_DTYPES = {"float32": "<f4", "int32": "<i4", "uint8": "u1", "uint16": "<u2", "float16": "<f2"}
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
