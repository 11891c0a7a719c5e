"""Writing a site-calibrated bundle: the parent's files, a manifest with a ``site`` section, nothing changed.

The new bundle is a copy of the parent (every model file byte for byte, so their SHA-256 stay valid)
whose manifest has format :data:`cxr_edge.bundle.manifest.SITE_FORMAT_VERSION` and a ``site`` section
naming the parent by its SHA-256. It is staged in a sibling folder and renamed into place only after
it loads and verifies, so an interrupted write leaves no half bundle; an existing folder is never
overwritten without ``overwrite``, and never when it is the parent itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tempfile
from pathlib import Path

from cxr_edge.bundle.folder import Bundle, bundle_sha256, write_manifest
from cxr_edge.bundle.manifest import SITE_FORMAT_VERSION
from cxr_edge.bundle.signature import TrustPolicy, UntrustedBundleError, key_id, load_private_key, sign
from cxr_edge.errors import BundleError
from cxr_edge.ops.site import SiteCalibration
from cxr_edge.runtime.selftest import add_selftest
from cxr_edge.site.calibrate import CalibrationResult


def check_parent(parent: Bundle) -> None:
    """Refuses a parent that is already site-calibrated (calibrations do not stack).

    Raises:
        BundleError: The parent has a ``site`` section.
    """
    site = parent.manifest.site
    if site is not None:
        raise BundleError(
            "this bundle is already calibrated for a site",
            expected="an uncalibrated bundle (calibrate the parent it names)",
            received=f"calibrated for {site.name!r} on {site.date}",
        )


def site_section(
    parent: Bundle,
    result: CalibrationResult,
    *,
    site: str,
    patients: int,
    digests: tuple[str, ...] = (),
    today: dt.date | None = None,
) -> SiteCalibration:
    """The manifest's ``site`` section of a calibration fitted on ``parent``.

    Args:
        parent: The bundle the calibration was fitted on.
        result: :func:`cxr_edge.site.calibrate.calibrate`'s result.
        site: The site's name.
        patients: Distinct patients behind the labelled images.
        digests: Short SHA-256 of the labelled images' files.
        today: The calibration date (default: today).
    """
    fitted = result.calibration
    # Metrics pass through JSON once so that the manifest round-trips exactly (numpy scalars, tuples).
    metrics = json.loads(json.dumps(result.metrics))
    return SiteCalibration(
        name=site,
        date=(today or dt.date.today()).isoformat(),
        parent_sha256=bundle_sha256(parent),
        method=result.method,
        images={k: v for k, v in metrics["images"].items() if v},
        patients=patients,
        temperature=fitted.temperature,
        bias=tuple(float(b) for b in fitted.bias),
        heads=fitted.heads,
        operating_point=fitted.operating_point,
        metrics=metrics,
        reference=json.loads(json.dumps(result.reference)),
        image_digests=tuple(sorted(set(digests))),
        parent_signed_by=parent.signature.key_id if parent.signature else None,
    )


def check_site_key(key: str | Path | None) -> None:
    """Refuses, before any image is read, a calibration whose bundle the device could not run.

    Under a trust policy (``CXR_EDGE_TRUSTED_KEYS``) the new bundle must be signed by a trusted key:
    the site's ``key`` must be given and its public half trusted.

    Raises:
        UntrustedBundleError: A policy is set and ``key`` is missing or not trusted by it.
    """
    policy = TrustPolicy.from_env()
    if policy is None:
        if key is not None:
            load_private_key(key)  # a bad key file is said now, not after the fit
        return
    if key is None:
        raise UntrustedBundleError(
            "a trust policy is set: the calibrated bundle must be signed",
            expected="--key SITE_PRIVATE_KEY (its public key trusted by this device)",
            received="no key",
        )
    kid = key_id(load_private_key(key).public_key())
    if kid not in policy.keys:
        raise UntrustedBundleError(
            "the site's key is not trusted by this device: the calibrated bundle would not run",
            expected=", ".join(sorted(policy.keys)),
            received=kid,
        )


def write_site_bundle(
    parent: Bundle,
    section: SiteCalibration,
    out: str | Path,
    *,
    command: str = "",
    overwrite: bool = False,
    key: str | Path | None = None,
) -> Bundle:
    """Writes ``parent`` with ``section`` as a new bundle in ``out`` and returns it, loaded and verified.

    Args:
        parent: The bundle the section was fitted on.
        section: Its ``site`` section (:func:`site_section`).
        out: New bundle folder.
        command: The command that made it (provenance).
        overwrite: Replace an existing ``out`` (never the parent).
        key: The site's private key: the new bundle is signed with it (its manifest differs from the
            parent's, so the parent's signature cannot cover it).

    Raises:
        BundleError: ``out`` exists (without ``overwrite``), is the parent, or the parent is already
            site-calibrated (:func:`check_parent`).
    """
    out = Path(out)
    check_parent(parent)
    if out.resolve() == parent.root.resolve():
        raise BundleError(
            "the calibrated bundle would replace its parent", expected="another folder", received=str(out)
        )
    if out.exists() and not (overwrite or (out.is_dir() and not any(out.iterdir()))):
        raise BundleError("output folder exists", expected="a new folder, or --force", received=str(out))
    m = parent.manifest
    provenance = {
        **m.provenance,
        "site_calibration": {
            "parent": m.name,
            "command": command,
            "created": dt.datetime.now(dt.UTC).isoformat(),
        },
    }
    manifest = dataclasses.replace(
        m,
        format_version=SITE_FORMAT_VERSION,
        name=f"{m.name}+{section.name}",
        selftest=None,  # the parent's pins the parent's outputs; add_selftest below records these
        site=section,
        provenance=provenance,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for entry in [*m.models, *([m.segmenter] if m.segmenter else [])]:
            shutil.copy2(parent.path_of(entry), stage / entry.file)
        write_manifest(stage, manifest)
        # The parent's self-test pinned the parent's outputs: the calibrated bundle records its own.
        add_selftest(stage)
        if key is not None:
            sign(stage, key)
        # Verifies every checksum, the site section and (under a trust policy) the new signature
        # before it takes the name.
        Bundle.load(stage)
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return Bundle.load(out)
