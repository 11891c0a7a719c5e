"""Named bundles shipped with the package, in the style of timm's pretrained configs.

``--bundle NAME`` takes a preset's name wherever it takes a folder (a folder of that name wins, so a
user's ``./default`` is never shadowed); ``cxr-edge bundle list`` shows each preset with what a caller
needs before loading it: input size, normalisation, labels, members, and its LOSO promise from the
model card.

* ``default`` -- what leave-one-source-out chose (``docs/generalisation.md``, issue 27): the full image
  with histogram equalisation, the mean of three pruned CNNs; its segmenter only checks the evidence.
* ``paper`` -- the paper's system: lung segmentation and crop, then the mean of iteratively pruned CNNs
  (Rajaraman et al. 2020); the default until LOSO's within-source score chose otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class Preset:
    """A named bundle.

    Attributes:
        name: What ``--bundle`` takes.
        folder: Its folder under the package's ``data/``.
        summary: One line on what it is.
    """

    name: str
    folder: str
    summary: str

    @property
    def path(self) -> Path:
        """The bundle folder."""
        return PACKAGE_DATA / self.folder


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "default",
            "default_bundle",
            "what leave-one-source-out chose: full image, equalised, mean of three pruned CNNs (int8)",
        ),
        Preset(
            "paper",
            "paper_bundle",
            "the paper's system: segment, lung crop, mean of three APoZ-pruned custom CNNs (int8)",
        ),
    )
}


def resolve(bundle: str | Path | None) -> Path | None:
    """A ``--bundle`` value as a folder: an existing path as it is, else a preset's folder.

    Returns None for None (the caller's default), and the value unchanged when it names neither (so
    that loading it says "not a bundle" with the name the user typed).
    """
    if bundle is None:
        return None
    path = Path(bundle)
    if path.exists() or str(bundle) not in PRESETS:
        return path
    return PRESETS[str(bundle)].path
