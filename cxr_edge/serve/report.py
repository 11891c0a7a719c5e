"""The coded result: a Comprehensive SR holding a TID 1500 Measurement Report, built with highdicom.

Content tree (concept names as ``(code value, scheme, meaning)``; ``99CXREDGE`` is this project's
private coding scheme, declared in the Coding Scheme Identification Sequence)::

    CONTAINER (126000, DCM, "Imaging Measurement Report")                    TID 1500
      HAS CONCEPT MOD  CODE Language of Content = (en-US, RFC5646)
      HAS OBS CONTEXT  CODE Observer Type = (121007, DCM, "Device")           TID 1002/1004
                       UIDREF Device Observer UID (stable per bundle), TEXT Device Observer Name
                       "cxr-edge", Manufacturer "cxr-edge", Model Name = bundle name
      HAS CONCEPT MOD  CODE Procedure reported = (399208008, SCT, "Plain chest X-ray")
      CONTAINS CONTAINER Image Library > Image Library Group > IMAGE the received image    TID 1600
      CONTAINS CONTAINER (126010, DCM, "Imaging Measurements")
        CONTAINS CONTAINER (125007, DCM, "Measurement Group")                TID 1501
          TEXT Tracking Identifier "cxr-edge triage", UIDREF Tracking Unique Identifier
          CODE (121071, DCM, "Finding") = the label's code             (classified only)
          TEXT Algorithm Name = bundle name, Algorithm Version = "<cxr_edge version> bundle
               sha256 <12 hex>", Algorithm Manufacturer, Algorithm Parameters = referral band
          NUM  <label's code> = probability, unit ("1", UCUM, "no units"),
               > Measurement Method = (CALIBRATED-P, 99CXREDGE, "Calibrated model probability")
                                                      one per label; none when rejected
          CODE (DECISION, 99CXREDGE, "Triage decision") = (CLASSIFIED, 99CXREDGE, "Classified") |
               (REFER, 99CXREDGE, "Refer to radiologist") | (NOT-TRIAGED, 99CXREDGE, "Not triaged")
          CODE (121075, DCM, "Recommendation") = (REFER, 99CXREDGE, "Refer to radiologist")
                                                      (referrals only)
          TEXT (REASON, 99CXREDGE, "Triage reason") = the referral reason, or "NOT TRIAGED: <reason>"
          TEXT (CHECK, 99CXREDGE, "Failed input check") = the quality check     (rejections only)
          TEXT (WARNING, 99CXREDGE, "Warning") = each flag, e.g. "evidence outside the lungs"
          IMAGE Source of measurement = the received image
      CONTAINS CONTAINER (C0034375, UMLS, "Qualitative Evaluations")
        CONTAINS TEXT (DISCLAIMER, 99CXREDGE, "Disclaimer") = :data:`~cxr_edge.serve.results.DISCLAIMER`

Codes of the labels (:data:`FINDINGS`): covid (840539006, SCT, "COVID-19"; SNOMED's fully
specified name "Disease caused by severe acute respiratory syndrome coronavirus 2" is 65 characters,
one more than a Code Meaning (LO) may hold, so its accepted synonym is used), normal (17621005, SCT,
"Normal"), pneumonia / pneumonia_unknown (233604007, SCT, "Pneumonia"), bacterial (53084003, SCT,
"Bacterial pneumonia"), viral (75570004, SCT, "Viral pneumonia"), tb / tuberculosis (56717001, SCT,
"Tuberculosis"); any other label gets a private code (``<LABEL>``, 99CXREDGE, "<label>").

Probabilities are dimensionless: unit ``("1", "UCUM", "no units")``, value in [0, 1]. Each NUM is
named by the label's code and qualified by the private measurement method "Calibrated model
probability" (no standard code says "model probability of this finding"). The referral and the
rejection are coded with private values because no SNOMED CT or DCM concept says "refer this image to
a radiologist instead of triaging it"; DCM "Recommendation" (121075) names the referral so that a
generic reader finds it. Highdicom 0.28 builds only CODE qualitative evaluations; the TEXT ones
(allowed by TID 1501 and TID 1500, as in dcmtk's TID 1500 classes) are added to its content items.

Measuring ``python -X importtime -c "import highdicom"``: 0.42-0.59 s cold (pydicom and numpy
included), 0.14-0.18 s on top of pydicom, numpy, cv2 and pynetdicom that the node has already
loaded (pydicom's SR concept dictionary is a third of it). It is imported lazily, once per process,
at the first result built; ``import cxr_edge.serve`` does not pay it.
"""

from __future__ import annotations

import re

PRIVATE = "99CXREDGE"
#: Label -> (code value, coding scheme, code meaning) of the finding.
FINDINGS = {
    "covid": ("840539006", "SCT", "COVID-19"),
    "normal": ("17621005", "SCT", "Normal"),
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "pneumonia_unknown": ("233604007", "SCT", "Pneumonia"),
    "bacterial": ("53084003", "SCT", "Bacterial pneumonia"),
    "pneumonia_bacterial": ("53084003", "SCT", "Bacterial pneumonia"),
    "viral": ("75570004", "SCT", "Viral pneumonia"),
    "pneumonia_viral": ("75570004", "SCT", "Viral pneumonia"),
    "tb": ("56717001", "SCT", "Tuberculosis"),
    "tuberculosis": ("56717001", "SCT", "Tuberculosis"),
}
PROCEDURE = ("399208008", "SCT", "Plain chest X-ray")
NO_UNITS = ("1", "UCUM", "no units")
PROBABILITY_METHOD = ("CALIBRATED-P", PRIVATE, "Calibrated model probability")
DECISION = ("DECISION", PRIVATE, "Triage decision")
DECISIONS = {
    "classified": ("CLASSIFIED", PRIVATE, "Classified"),
    "refer": ("REFER", PRIVATE, "Refer to radiologist"),
    "rejected": ("NOT-TRIAGED", PRIVATE, "Not triaged"),
}
RECOMMENDATION = ("121075", "DCM", "Recommendation")
REASON = ("REASON", PRIVATE, "Triage reason")
CHECK = ("CHECK", PRIVATE, "Failed input check")
WARNING = ("WARNING", PRIVATE, "Warning")
DISCLAIMER_NAME = ("DISCLAIMER", PRIVATE, "Disclaimer")
QUALITATIVE_EVALUATIONS = ("C0034375", "UMLS", "Qualitative Evaluations")
TRACKING_IDENTIFIER = "cxr-edge triage"


def finding_code(label: str) -> tuple[str, str, str]:
    """(code value, scheme, meaning) of a bundle label; a private 99CXREDGE code when none is known."""
    if label in FINDINGS:
        return FINDINGS[label]
    value = re.sub(r"[^A-Z0-9_-]", "_", label.upper())[:16] or "UNKNOWN"
    return (value, PRIVATE, label[:64] or "unknown")


def build_sr(header, record: dict):
    """The Comprehensive SR (TID 1500) of one record, in the source study, referencing the source image.

    Args:
        header: The received object's attributes (:func:`~cxr_edge.serve.results.read_header`).
        record: The audit record (decision, label, probs, reason, check, flags, bundle, instance).
    """
    import highdicom as hd
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from cxr_edge import __version__
    from cxr_edge.serve.results import (
        _SERIES_NUMBER,
        DISCLAIMER,
        common_attributes,
        finish,
        reference,
        result_uids,
    )

    ref = reference(header, record)
    series_uid, sop_uid = result_uids(ref, record, "sr")
    bundle, decision = record["bundle"], record["decision"]
    name, sha = bundle["name"], bundle["sha256"]
    code = _concept

    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["cxr-edge device", name, sha]),
            name="cxr-edge",
            manufacturer_name="cxr-edge",
            model_name=name[:64],
        ),
    )
    band = record.get("abstain") or None
    algorithm = hd.sr.AlgorithmIdentification(
        name=name[:64],
        version=f"{__version__} bundle sha256 {sha[:12]}",
        manufacturer="cxr-edge",
        parameters=[
            f"abstain min_top_prob={band['min_top_prob']} min_margin={band['min_margin']} "
            f"({band.get('source', '?')})"
        ]
        if band
        else None,
    )
    measurements = [
        hd.sr.Measurement(
            name=code(finding_code(label)),
            value=float(p),
            unit=code(NO_UNITS),
            method=code(PROBABILITY_METHOD),
        )
        for label, p in (record.get("probs") or {}).items()
    ]
    evaluations = [hd.sr.QualitativeEvaluation(code(DECISION), code(DECISIONS[decision]))]
    if decision == "refer":
        evaluations.append(hd.sr.QualitativeEvaluation(code(RECOMMENDATION), code(DECISIONS["refer"])))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=[record["instance"], sha, "tracking"]),
            identifier=TRACKING_IDENTIFIER,
        ),
        finding_type=code(finding_code(record["label"])) if decision == "classified" else None,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup(ref.SOPClassUID, ref.SOPInstanceUID)],
    )
    texts = []
    if decision == "refer":
        texts.append((REASON, str(record.get("reason") or "")))
    elif decision == "rejected":
        texts.append((REASON, f"NOT TRIAGED: {record.get('reason') or ''}"))
        if record.get("check"):
            texts.append((CHECK, str(record["check"])))
    texts += [(WARNING, str(flag)) for flag in record.get("flags") or []]
    items = group[0].ContentSequence
    at = next((i for i, item in enumerate(items) if item.ValueType == "IMAGE"), len(items))
    for offset, (concept, value) in enumerate(texts):
        items.insert(at + offset, _text(hd, concept, value))

    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=code(PROCEDURE),
        imaging_measurements=[group],
    )
    root = report[0].ContentSequence
    at = next(i for i, item in enumerate(root) if item.name == codes.DCM.ImagingMeasurements)
    root.insert(at, _image_library(hd, ref))
    disclaimer = hd.sr.ContainerContentItem(
        name=code(QUALITATIVE_EVALUATIONS), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    disclaimer.ContentSequence = hd.sr.ContentSequence([_text(hd, DISCLAIMER_NAME, DISCLAIMER)])
    root.append(disclaimer)

    ds = hd.sr.ComprehensiveSR(
        evidence=[ref],
        content=report,
        series_instance_uid=series_uid,
        series_number=_SERIES_NUMBER["sr"],
        sop_instance_uid=sop_uid,
        instance_number=1,
        is_complete=False,
        is_final=False,
        coding_schemes=[
            CodingSchemeIdentificationItem(
                PRIVATE, name="cxr-edge private codes", responsible_organization="cxr-edge"
            )
        ],
        **common_attributes(ref, record),
    )
    return finish(ds, ref, header)


def read_report(dataset) -> dict:
    """Reads a cxr-edge SR back (with highdicom), e.g. as received by a PACS.

    Returns:
        ``decision`` (``classified``, ``refer`` or ``rejected``), ``finding`` (``(value, scheme,
        meaning)`` or None), ``probs`` (``{(value, scheme): probability}``), ``recommendation``
        (``(value, scheme, meaning)`` or None), ``reason``, ``check``, ``flags``, ``disclaimer``,
        ``algorithm`` (``{"name", "version"}``) and ``source`` (the referenced SOP Instance UIDs).
    """
    import highdicom as hd

    sr = hd.sr.ComprehensiveSR.from_dataset(dataset)
    report = sr.content
    (group,) = report.get_image_measurement_groups()
    item = group[0]

    def texts(concept) -> list[str]:
        return [str(i.value) for i in item.ContentSequence if i.ValueType == "TEXT" and _is(i.name, concept)]

    evaluations = {
        (e.name.value, e.name.scheme_designator): e.value for e in group.get_qualitative_evaluations()
    }
    decision_code = evaluations[DECISION[:2]]
    decision = next(k for k, v in DECISIONS.items() if _is(decision_code, v))
    recommendation = evaluations.get(RECOMMENDATION[:2])
    finding = group.finding_type
    disclaimers = [
        str(child.value)
        for top in report[0].ContentSequence
        if top.ValueType == "CONTAINER" and _is(top.name, QUALITATIVE_EVALUATIONS)
        for child in top.ContentSequence
        if child.ValueType == "TEXT" and _is(child.name, DISCLAIMER_NAME)
    ]
    algorithm = {
        str(i.name.meaning).removeprefix("Algorithm ").lower(): str(i.value)
        for i in item.ContentSequence
        if i.ValueType == "TEXT" and i.name.value in ("111001", "111003")
    }
    reason = texts(REASON)
    check = texts(CHECK)
    return {
        "decision": decision,
        "finding": None if finding is None else _triple(finding),
        "probs": {(m.name.value, m.name.scheme_designator): m.value for m in group.get_measurements()},
        "recommendation": None if recommendation is None else _triple(recommendation),
        "reason": reason[0] if reason else None,
        "check": check[0] if check else None,
        "flags": texts(WARNING),
        "disclaimer": disclaimers[0] if disclaimers else None,
        "algorithm": algorithm,
        "source": [str(s.referenced_sop_instance_uid) for s in group.source_images],
    }


def _concept(triple: tuple[str, str, str]):
    from highdicom.sr import CodedConcept

    value, scheme, meaning = triple
    return CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _is(concept, triple: tuple[str, str, str]) -> bool:
    return (concept.value, concept.scheme_designator) == triple[:2]


def _triple(concept) -> tuple[str, str, str]:
    return (str(concept.value), str(concept.scheme_designator), str(concept.meaning))


def _text(hd, concept: tuple[str, str, str], value: str):
    return hd.sr.TextContentItem(
        name=_concept(concept), value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _image_library(hd, ref):
    """TID 1600 Image Library with the received image.

    Highdicom's descriptors (TID 1602/1603) need Patient Orientation and Imager Pixel Spacing for a DX
    image, and a SOP class it knows; without them the entry holds the reference alone.
    """
    try:
        (library,) = hd.sr.ImageLibrary([ref])
        return library
    except (AttributeError, KeyError, ValueError, IndexError, TypeError):
        pass
    from pydicom.sr.codedict import codes

    contains = hd.sr.RelationshipTypeValues.CONTAINS
    image = hd.sr.ImageContentItem(
        name=_concept(("260753009", "SCT", "Source")),
        referenced_sop_class_uid=ref.SOPClassUID,
        referenced_sop_instance_uid=ref.SOPInstanceUID,
        relationship_type=contains,
    )
    group = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibraryGroup, relationship_type=contains)
    group.ContentSequence = hd.sr.ContentSequence([image])
    library = hd.sr.ContainerContentItem(name=codes.DCM.ImageLibrary, relationship_type=contains)
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library
