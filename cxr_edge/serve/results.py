"""DICOM results sent back to a destination, built with highdicom: a coded SR and a Secondary Capture.

* ``sr``: a Comprehensive SR holding a TID 1500 Measurement Report (finding, one probability per
  label, the referral or rejection, warnings and the disclaimer as coded and text content items);
  content tree, codes and units in :mod:`cxr_edge.serve.report`.
* ``sc``: a Secondary Capture (RGB): the radiograph, the heat map and the result text burned in.

Only these objects carry the source study's identifiers (:data:`COPIED`: patient name and ID, birth
date, sex, study UID, accession number...), copied so that the result files into the right study at
the destination; the audit log and the node's log never hold them. UIDs of results are derived
deterministically from the instance key, the bundle hash and the kind, so a result sent twice (after a
crash between sending and auditing) is the same instance at the destination, not a second one. Every
result has Explicit VR Little Endian file meta (the SCU proposes contexts from it).

highdicom (and pydicom) are imported inside the functions, so ``import cxr_edge.serve`` does not pay
for them; highdicom costs 0.14-0.18 s at the first result of a node that has pydicom and pynetdicom
loaded already (0.42-0.59 s in a fresh interpreter), see :mod:`cxr_edge.serve.report`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cxr_edge.ops.cam import overlay

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
_EXPLICIT_LE = "1.2.840.10008.1.2.1"  # pydicom.uid.ExplicitVRLittleEndian, without importing pydicom


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
    """The Comprehensive SR (TID 1500 Measurement Report) of one record; see :mod:`cxr_edge.serve.report`."""
    from cxr_edge.serve.report import build_sr as build

    return build(header, record)


def build_sc(header, record: dict, image: np.ndarray | None, heat: np.ndarray | None, max_side: int = 1024):
    """A Secondary Capture (RGB, highdicom): the radiograph with the heat map (when one was made) and the
    result text burned in below it."""
    import highdicom as hd

    ref = reference(header, record)
    series_uid, sop_uid = result_uids(ref, record, "sc")
    picture = _picture(image, heat, result_lines(record), max_side)
    rgb = np.ascontiguousarray(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB))
    ds = hd.sc.SCImage.from_ref_dataset(
        ref,
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=_SERIES_NUMBER["sc"],
        sop_instance_uid=sop_uid,
        instance_number=1,
        patient_orientation=("L", "F"),  # replaced below by the source's own (or left empty)
        transfer_syntax_uid=_EXPLICIT_LE,
        **common_attributes(ref, record),
    )
    # The picture keeps the source's orientation (scaled, text band below); unknown stays empty (type 2).
    ds.PatientOrientation = ref.get("PatientOrientation") or None
    ds.ConversionType = "WSD"  # made on a workstation, not digitised
    ds.BurnedInAnnotation = "YES"
    return finish(ds, ref, header)


def build_results(kind: str, header, record: dict, image, heat) -> list:
    """The result objects of one record for a destination of ``kind`` (``sr``, ``sc`` or ``both``)."""
    out = []
    if kind in ("sr", "both"):
        out.append(build_sr(header, record))
    if kind in ("sc", "both"):
        out.append(build_sc(header, record, image, heat))
    return out


#: Attributes of the received image that the results reference or describe it by (besides COPIED).
_REFERENCED = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "Rows",
    "Columns",
    "PatientOrientation",
    "ImagerPixelSpacing",
    "FrameOfReferenceUID",
    "SpecificCharacterSet",
)


def reference(header, record: dict):
    """What the results take from the received image: the COPIED identifiers and its references.

    Highdicom copies the patient and study modules of its reference dataset; giving it only these
    attributes keeps the results' identifiers to :data:`COPIED`. Type 2 attributes that highdicom reads
    unconditionally are present (empty when the source lacks them), and a source without a Study
    Instance UID gets one derived from the instance key.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ref = Dataset()
    for name in (*COPIED, *_REFERENCED):
        if name in header:
            ref[name] = header.data_element(name)
    if not str(ref.get("StudyInstanceUID", "") or ""):
        ref.StudyInstanceUID = generate_uid(entropy_srcs=[record["instance"], "study"])
    for name in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
                 "StudyID", "StudyDate", "StudyTime", "SeriesInstanceUID"):  # fmt: skip
        if name not in ref:
            setattr(ref, name, None)
    if "SpecificCharacterSet" not in ref:
        ref.SpecificCharacterSet = "ISO_IR 100"
    return ref


def result_uids(ref, record: dict, kind: str) -> tuple[str, str]:
    """(Series Instance UID, SOP Instance UID) of a result, derived from the instance key, bundle, kind."""
    from pydicom.uid import generate_uid

    sha = record["bundle"]["sha256"]
    series = generate_uid(entropy_srcs=[str(ref.StudyInstanceUID), sha, kind])
    return series, generate_uid(entropy_srcs=[record["instance"], sha, kind])


def common_attributes(ref, record: dict) -> dict:
    """Keyword arguments shared by both highdicom constructors (equipment, series, character set)."""
    from cxr_edge import __version__

    return {
        "manufacturer": "cxr-edge",
        "manufacturer_model_name": record["bundle"]["name"][:64],
        "software_versions": [__version__, record["bundle"]["name"][:64]],
        "series_description": "cxr-edge triage (not for diagnosis)",
        "specific_character_set": ref.SpecificCharacterSet,
    }


def finish(ds, ref, header):
    """Every COPIED attribute of the source in the result, and Explicit VR Little Endian file meta."""
    from datetime import datetime

    from pydicom.uid import UID

    for name in COPIED:
        if name in header:  # as the source has it (empty included); a missing Study UID was derived
            ds[name] = ref[name]
    now = datetime.now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.file_meta.TransferSyntaxUID = UID(_EXPLICIT_LE)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


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
        heat = cv2.resize(heat.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        picture = overlay(small, heat, scale=True)
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
