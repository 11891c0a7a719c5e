"""DICOM results sent back to a destination: Basic Text SR and Secondary Capture with a heat map.

Only these objects carry the source study's identifiers (patient name and ID, birth date, sex,
study UID, accession number...), copied so that the result files into the right study at the
destination; the audit log and the node's log never hold them. UIDs of results are derived
deterministically from the instance key, the bundle hash and the kind, so a result sent twice (after a
crash between sending and auditing) is the same instance at the destination, not a second one.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from cxr_edge.cam import overlay

#: Study-level attributes copied from the received image into the result.
COPIED = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)
DISCLAIMER = "cxr-edge triage: research software, not a medical device"
_SERIES_NUMBER = {"sr": 9901, "sc": 9902}


def read_header(path: str | Path):
    """The received object's attributes without pixels (for copying identifiers into a result)."""
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


def result_lines(record: dict) -> list[str]:
    """The human-readable result: what the node decided, without patient identifiers."""
    bundle = record["bundle"]
    tail = [f"Model bundle: {bundle['name']} (manifest sha256 {bundle['sha256'][:12]})", DISCLAIMER]
    # A flag never changes the decision, but whoever reads the result must see it.
    tail = [f"Warning: {flag}" for flag in record.get("flags") or []] + tail
    if record["decision"] == "classified":
        probs = ", ".join(f"{k} {v:.2f}" for k, v in record["probs"].items())
        return [
            f"Triage result: {record['label']} (p = {record['probs'][record['label']]:.2f})",
            probs,
            *tail,
        ]
    if record["decision"] == "refer":
        return ["REFER TO RADIOLOGIST: the model is not confident enough to report", record["reason"], *tail]
    return [f"NOT TRIAGED: {record['reason']}", *tail]


def build_sr(header, record: dict):
    """A Basic Text SR holding the result lines, in the source study, referencing the source image."""
    from pydicom.dataset import Dataset
    from pydicom.uid import BasicTextSRStorage

    ds = _base(header, record, "sr", BasicTextSRStorage, modality="SR")
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "PARTIAL"
    ds.VerificationFlag = "UNVERIFIED"
    items = []
    for line in result_lines(record):
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "TEXT"
        item.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
        item.TextValue = line[:1024]
        items.append(item)
    ds.ContentSequence = items
    ref_sop = Dataset()
    ref_sop.ReferencedSOPClassUID = header.SOPClassUID
    ref_sop.ReferencedSOPInstanceUID = header.SOPInstanceUID
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = header.get("SeriesInstanceUID", "")
    ref_series.ReferencedSOPSequence = [ref_sop]
    evidence = Dataset()
    evidence.StudyInstanceUID = header.get("StudyInstanceUID", "")
    evidence.ReferencedSeriesSequence = [ref_series]
    ds.CurrentRequestedProcedureEvidenceSequence = [evidence]
    return ds


def build_sc(header, record: dict, image: np.ndarray | None, heat: np.ndarray | None, max_side: int = 1024):
    """A Secondary Capture (RGB): the radiograph with the heat map (when one was made) and the result text."""
    from pydicom.uid import SecondaryCaptureImageStorage

    ds = _base(header, record, "sc", SecondaryCaptureImageStorage, modality="OT")
    picture = _picture(image, heat, result_lines(record), max_side)
    rgb = cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    return ds


def build_results(kind: str, header, record: dict, image, heat) -> list:
    """The result objects of one record for a destination of ``kind`` (``sr``, ``sc`` or ``both``)."""
    out = []
    if kind in ("sr", "both"):
        out.append(build_sr(header, record))
    if kind in ("sc", "both"):
        out.append(build_sc(header, record, image, heat))
    return out


def _base(header, record: dict, kind: str, sop_class: str, modality: str):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from cxr_edge import __version__

    ds = Dataset()
    for name in COPIED:
        if name in header:
            setattr(ds, name, header.data_element(name).value)
    study = str(header.get("StudyInstanceUID", "") or "")
    if not study:
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[record["instance"], "study"])
    sha = record["bundle"]["sha256"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[record["instance"], sha, kind])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(ds.StudyInstanceUID), sha, kind])
    ds.Modality = modality
    ds.SeriesNumber = _SERIES_NUMBER[kind]
    ds.InstanceNumber = 1
    ds.SeriesDescription = "cxr-edge triage (not for diagnosis)"
    ds.Manufacturer = "cxr-edge"
    ds.SoftwareVersions = [__version__, record["bundle"]["name"][:64]]
    now = datetime.now()
    ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.SpecificCharacterSet = header.get("SpecificCharacterSet", "ISO_IR 100")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _picture(
    image: np.ndarray | None, heat: np.ndarray | None, lines: list[str], max_side: int
) -> np.ndarray:
    """BGR uint8: the (downscaled) image with the heat map, and a text band below it."""
    if image is None:
        image = np.zeros((512, 512), dtype=np.float32)
    scale = min(1.0, max_side / max(image.shape))
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    if heat is not None:
        picture = overlay(small, cv2.resize(heat.astype(np.float32), size, interpolation=cv2.INTER_LINEAR))
    else:
        picture = cv2.cvtColor(np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    width = picture.shape[1]
    font_scale = max(0.35, width / 1400)
    line_h = int(30 * font_scale) + 6
    band = np.zeros((line_h * len(lines) + 8, width, 3), dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(
            band,
            line,
            (6, line_h * (i + 1)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return np.vstack([picture, band])
