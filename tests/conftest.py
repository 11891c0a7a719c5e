"""Shared fixtures: the data kit (read-only), the shipped bundle.

DICOM files come from the library's writer, :func:`cxr_edge.imaging.synth.write_radiograph`.

The tests mirror the packages (``tests/imaging/`` for ``cxr_edge.imaging``...). ``tests/train/`` and
``tests/convert/`` test the learning side: every test there is marked ``train`` and, where the
``[train]`` extra (TensorFlow + Keras) is not installed, not even collected, so that
``pytest -m "not train"`` runs on a runtime-only install (``tests/test_layout.py`` checks it). Tests
elsewhere that need Keras are marked ``train`` and import it inside the test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KIT = (REPO.parent / "shared" / "data").resolve()
KIT_MANIFEST = KIT / "manifest.csv"
#: Test folders of the learning side (cxr_edge.train, cxr_edge.convert).
LEARNING = ("train", "convert")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # blocked (tests/runtime_only.py) or a broken install
        return False


collect_ignore = [] if all(_installed(m) for m in ("keras", "tensorflow")) else list(LEARNING)


def pytest_collection_modifyitems(items) -> None:
    """Marks every test under tests/train/ and tests/convert/ ``train``."""
    learning = [Path(__file__).parent / folder for folder in LEARNING]
    for item in items:
        if any(folder in Path(item.fspath).parents for folder in learning):
            item.add_marker(pytest.mark.train)


@pytest.fixture(scope="session")
def kit_manifest() -> Path:
    """The real CXR kit's manifest (CI has ../shared/data; never written to)."""
    if not KIT_MANIFEST.is_file():
        pytest.skip(f"data kit not found at {KIT}")
    return KIT_MANIFEST


@pytest.fixture(scope="session")
def split(kit_manifest, tmp_path_factory) -> Path:
    """A seeded patient-level split of the kit, written once for the session (read-only)."""
    from cxr_edge.dataset.manifest import load_manifest
    from cxr_edge.dataset.splits import make_split, write_split

    manifest = load_manifest(kit_manifest)
    path = tmp_path_factory.mktemp("split") / "split.csv"
    write_split(path, manifest, make_split(manifest))
    return path


#: The first release's default bundle (format 2, one custom CNN, covid / normal / pneumonia_unknown), kept
#: as a fixture for the format-compatibility and manifest-check tests after the default moved on.
FIRST_RELEASE_BUNDLE = REPO / "tests" / "data" / "first_release_bundle"


@pytest.fixture(scope="session")
def first_release_bundle() -> Path:
    """Path of the first release's default bundle (read-only: copy it before changing it)."""
    return FIRST_RELEASE_BUNDLE


@pytest.fixture(scope="session")
def tiny_segmenter_bundle(tmp_path_factory) -> Path:
    """The small format-3 bundle with a lung segmenter of ``tests/tiny_bundle.py`` (skips without Keras)."""
    pytest.importorskip("keras", reason="building the tiny segmenter bundle needs the [train] extra")
    from tiny_bundle import build

    return build(tmp_path_factory.mktemp("tiny") / "tiny_bundle")


@pytest.fixture(scope="session")
def kit_png(kit_manifest) -> Path:
    """One real NIH chest X-ray PNG from the kit."""
    return KIT / "nih" / "normal" / sorted(p.name for p in (KIT / "nih" / "normal").glob("*.png"))[0]
