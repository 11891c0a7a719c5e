"""cxr-edge runtime: read chest X-rays, preprocess them once, run LiteRT bundles, combine, report.

Never imports TensorFlow or Keras (the training side lives in the ``train`` and ``convert`` packages).
"""

from cxr_edge.bundle.folder import Bundle, default_bundle_path
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.dataset.manifest import Manifest, Record, load_manifest
from cxr_edge.dataset.splits import Split, make_split, read_split, write_split
from cxr_edge.errors import (
    BundleError,
    CxrEdgeError,
    ImageDecodeError,
    ImageTooLargeError,
    InputError,
    ManifestError,
    ModelRuntimeError,
    SpecError,
    SplitError,
    UnsupportedImageError,
)
from cxr_edge.imaging.reader import ImageInfo, ReadOptions, read_image
from cxr_edge.ops.preprocess import PreprocessSpec, preprocess
from cxr_edge.runtime.pipeline import Outcome, Prediction, Predictor

__version__ = "0.1.0"

__all__ = [
    "Bundle",
    "BundleError",
    "BundleManifest",
    "CxrEdgeError",
    "ImageDecodeError",
    "ImageInfo",
    "ImageTooLargeError",
    "InputError",
    "Manifest",
    "ManifestError",
    "ModelRuntimeError",
    "Outcome",
    "Prediction",
    "Predictor",
    "PreprocessSpec",
    "ReadOptions",
    "Record",
    "SpecError",
    "Split",
    "SplitError",
    "UnsupportedImageError",
    "__version__",
    "default_bundle_path",
    "load_manifest",
    "make_split",
    "preprocess",
    "read_image",
    "read_split",
    "write_split",
]
