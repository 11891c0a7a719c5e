"""Patient-level, stratified train / validation / test splits written once and read by every stage.

Images of one patient are strongly correlated (follow-ups, same hospital), so a split is made over
patients, never images. Patients are stratified by ``source`` and by the set of labels they carry,
so every part holds every source/label combination in about the same proportion. The default follows
the paper: 10% of patients for test, then 10% of the remaining patients for validation.
"""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.dataset.manifest import Manifest, Record
from cxr_edge.errors import SplitError
from cxr_edge.hashing import file_sha256

PARTS = ("train", "val", "test")
SPLIT_COLUMNS = ("path", "patient_id", "source", "label", "split")


@dataclass(frozen=True)
class Split:
    """Assignment of every manifest image to a part.

    Attributes:
        parts: ``{path: part}`` keyed by the manifest's ``path`` column.
        sha256: Hash of the split file (empty until written or read).
    """

    parts: dict[str, str]
    sha256: str = ""

    def records(self, manifest: Manifest, part: str) -> list[Record]:
        """Manifest records of one part, in manifest order.

        Raises:
            SplitError: ``part`` is unknown or the manifest has images the split does not cover.
        """
        if part not in PARTS:
            raise SplitError("unknown split part", expected=" or ".join(PARTS), received=part)
        uncovered = [r.path for r in manifest.records if r.path not in self.parts]
        if uncovered:
            raise SplitError(
                "split does not cover the manifest",
                expected="every manifest path",
                received=f"{len(uncovered)} missing, e.g. {uncovered[0]}",
            )
        return [r for r in manifest.records if self.parts[r.path] == part]

    def summary(self, manifest: Manifest) -> dict[str, dict[str, int]]:
        """Image counts ``{part: {label: n}}`` plus patient counts under ``"patients"``."""
        out: dict[str, dict[str, int]] = {}
        for part in PARTS:
            recs = self.records(manifest, part)
            counts = Counter(r.label for r in recs)
            out[part] = dict(sorted(counts.items())) | {"patients": len({r.patient_id for r in recs})}
        return out


def make_split(
    manifest: Manifest, test_fraction: float = 0.1, val_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Splits patients into train / val / test, stratified by source and label set.

    Args:
        manifest: Validated manifest.
        test_fraction: Fraction of patients (per stratum) for the test part.
        val_fraction: Fraction of the remaining patients for validation.
        seed: Seed of the shuffle; the same manifest and seed give the same split.

    Returns:
        The :class:`Split` (checked: no patient in two parts).
    """
    if not (0 <= test_fraction < 1 and 0 <= val_fraction < 1):
        raise SplitError(
            "invalid fractions",
            expected="values in [0, 1)",
            received=f"test={test_fraction}, val={val_fraction}",
        )
    labels_of: dict[str, set[str]] = defaultdict(set)
    source_of: dict[str, set[str]] = defaultdict(set)
    for r in manifest.records:
        labels_of[r.patient_id].add(r.label)
        source_of[r.patient_id].add(r.source)
    strata: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(labels_of):
        key = "+".join(sorted(source_of[pid])) + "|" + "+".join(sorted(labels_of[pid]))
        strata[key].append(pid)
    rng = random.Random(seed)
    part_of: dict[str, str] = {}
    for key in sorted(strata):
        patients = strata[key]
        rng.shuffle(patients)
        n_test = round(len(patients) * test_fraction)
        n_val = round((len(patients) - n_test) * val_fraction)
        for i, pid in enumerate(patients):
            part_of[pid] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    split = Split({r.path: part_of[r.patient_id] for r in manifest.records})
    check_split(manifest, split)
    return split


def extend_split(
    manifest: Manifest,
    previous: Split,
    test_fraction: float = 0.1,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Extends ``previous`` to a grown manifest: known patients keep their part, new ones are assigned.

    A data kit grows by appending sources and images. Re-splitting from scratch would move patients
    between parts, so a model trained on the old train part would have seen images of the new test
    part. Instead every patient who already has an image in ``previous`` keeps that part (also for
    their new images), and the new patients are split with :func:`make_split`'s stratified rule
    (per source and label set) with the same fractions.

    Args:
        manifest: The grown, validated manifest.
        previous: A split of an earlier version of the manifest (paths it lists that are no longer in
            the manifest are dropped).
        test_fraction: Fraction of the *new* patients (per stratum) for test.
        val_fraction: Fraction of the remaining new patients for validation.
        seed: Seed of the new patients' shuffle.

    Returns:
        The extended split (checked: no patient in two parts).

    Raises:
        SplitError: ``previous`` already puts one patient in two parts.
    """
    part_of_patient: dict[str, str] = {}
    for r in manifest.records:
        part = previous.parts.get(r.path)
        if part is None:
            continue
        if part_of_patient.setdefault(r.patient_id, part) != part:
            raise SplitError(
                "previous split puts a patient in two parts",
                expected="a patient-level split",
                received=f"conflict at {r.path}",
            )
    new_records = tuple(r for r in manifest.records if r.patient_id not in part_of_patient)
    fresh = make_split(
        Manifest(new_records, manifest.csv_path, manifest.sha256), test_fraction, val_fraction, seed
    )
    parts = {
        r.path: part_of_patient[r.patient_id] if r.patient_id in part_of_patient else fresh.parts[r.path]
        for r in manifest.records
    }
    split = Split(parts)
    check_split(manifest, split)
    return split


def check_split(manifest: Manifest, split: Split) -> None:
    """Proves the split is sound: full coverage, known parts, no patient in two parts.

    Raises:
        SplitError: Naming the number of offending patients (not their ids).
    """
    parts_of: dict[str, set[str]] = defaultdict(set)
    for r in manifest.records:
        part = split.parts.get(r.path)
        if part is None:
            raise SplitError("image missing from split", expected="every manifest path", received=r.path)
        if part not in PARTS:
            raise SplitError(
                "unknown split part", expected=" or ".join(PARTS), received=f"{part!r} for {r.path}"
            )
        parts_of[r.patient_id].add(part)
    leaking = [pid for pid, parts in parts_of.items() if len(parts) > 1]
    if leaking:
        raise SplitError(
            "patients appear in more than one part",
            expected="each patient in exactly one part",
            received=f"{len(leaking)} patients split across parts",
        )


def write_split(path: str | Path, manifest: Manifest, split: Split, *, overwrite: bool = False) -> Split:
    """Writes the split CSV (``path, patient_id, source, label, split``) and returns it with its hash.

    Raises:
        SplitError: The file exists and ``overwrite`` is False (a split is never silently replaced).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise SplitError(
            "split file already exists", expected="a new file (or overwrite=True)", received=str(path)
        )
    check_split(manifest, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SPLIT_COLUMNS)
        for r in manifest.records:
            writer.writerow([r.path, r.patient_id, r.source, r.label, split.parts[r.path]])
    return Split(split.parts, file_sha256(path))


def read_split(path: str | Path, manifest: Manifest | None = None) -> Split:
    """Reads a split CSV, checking it against ``manifest`` when given.

    Raises:
        SplitError: Missing file or columns, or a split inconsistent with the manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise SplitError(
            "split file not found", expected="a CSV written by `cxr-edge split`", received=str(path)
        )
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"path", "split"} <= set(reader.fieldnames or []):
            raise SplitError(
                "split file lacks columns", expected="path, split", received=str(reader.fieldnames)
            )
        parts = {row["path"]: row["split"] for row in reader}
    split = Split(parts, file_sha256(path))
    if manifest is not None:
        check_split(manifest, split)
    return split


def spread(items: Sequence, n: int) -> list:
    """At most ``n`` items taken at an even stride (over a split part: every label and source), as int8
    calibration and the decode gate pick their images."""
    return list(items[:: max(1, len(items) // n)][:n])
