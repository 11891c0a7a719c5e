"""TF.js layers model -> Keras ``.weights.h5`` for a ``keras.applications`` backbone (``include_top=False``).

Reads the model (:mod:`cxr_edge.train.tfjs_package`), maps its weights onto the zoo's Keras 3
backbone (:mod:`cxr_edge.train.tfjs_match`), checks them, and saves a ``.weights.h5`` that
``keras.applications`` loads (``cxr_edge.train.zoo.build_backbone`` passes the file as ``weights=``),
with a provenance JSON beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.hashing import file_sha256
from cxr_edge.provenance import now_utc, versions
from cxr_edge.train.tfjs_match import transfer
from cxr_edge.train.tfjs_package import TfjsModel, read_tfjs
from cxr_edge.train.zoo import preset

PROVENANCE_SUFFIX = ".provenance.json"
#: Zoo models a TF.js source is known to map onto (the graph matcher itself is architecture-neutral).
SUPPORTED_MODELS = ("mobilenet_v2", "inception_v3")


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
