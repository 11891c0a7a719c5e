"""Signed bundles (cxr_edge.bundle.signature): keygen, sign, verify, and the trust policy of a cart."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle, bundle_sha256
from cxr_edge.bundle.presets import PRESETS
from cxr_edge.bundle.signature import (
    SIGNATURE_NAME,
    TRUSTED_KEYS_ENV,
    TrustPolicy,
    UntrustedBundleError,
    generate_keys,
    sign,
)
from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import BundleError
from cxr_edge.ops.site import SiteCalibration
from cxr_edge.runtime.pipeline import PredictorSpec
from cxr_edge.serve.config import TriageConfig
from cxr_edge.serve.triage import Triage
from cxr_edge.site.calibrated import check_site_key, write_site_bundle

PAPER = PRESETS["paper"].path


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.fixture()
def keys(tmp_path):
    """Two key pairs: the maker's and someone else's."""
    return generate_keys(tmp_path / "maker"), generate_keys(tmp_path / "other")


@pytest.fixture()
def signed(tmp_path, keys):
    """A copy of a shipped bundle, signed by the maker's key."""
    root = tmp_path / "bundle"
    shutil.copytree(PAPER, root)
    result = run("bundle", "sign", root, "--key", keys[0][0])
    assert result.exit_code == 0, result.output
    return root


def test_keygen_writes_an_owner_only_private_key_and_never_overwrites(tmp_path):
    result = run("bundle", "keygen", "--out", tmp_path / "k")
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "k" / "private.pem", tmp_path / "k" / "public.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in public.read_bytes() and b"BEGIN PRIVATE KEY" in private.read_bytes()
    before = private.read_bytes()
    again = run("bundle", "keygen", "--out", tmp_path / "k")
    assert again.exit_code == 1 and "key file exists" in again.output
    assert private.read_bytes() == before


def test_a_signed_bundle_verifies_with_its_key_only(signed, keys):
    (_, maker), (_, other) = keys
    ok = run("bundle", "verify", signed, "--key", maker)
    assert ok.exit_code == 0 and "signed by ed25519:" in ok.output
    wrong = run("bundle", "verify", signed, "--key", other)
    assert wrong.exit_code == 1 and "does not trust" in wrong.output
    # A folder of keys: any one of them vouches.
    folder = maker.parent.parent / "keys"
    folder.mkdir()
    shutil.copy(maker, folder / "maker.pem")
    shutil.copy(other, folder / "other.pem")
    assert run("bundle", "verify", signed, "--key", folder).exit_code == 0
    info = run("bundle", "info", "--bundle", signed)
    assert "signed by ed25519:" in info.output and "not verified" in info.output


def test_signing_twice_needs_force(signed, keys):
    _, (other, _) = keys
    again = run("bundle", "sign", signed, "--key", other)
    assert again.exit_code == 1 and "signed already" in again.output
    assert run("bundle", "sign", signed, "--key", other, "--force").exit_code == 0


def _first_model(root):
    return root / json.loads((root / "manifest.json").read_text())["models"][0]["file"]


@pytest.mark.parametrize("where", ["model", "manifest", "signature"])
def test_any_change_after_signing_fails_verification(signed, keys, where):
    (_, maker), _ = keys
    if where == "model":
        file = _first_model(signed)
        data = bytearray(file.read_bytes())
        data[len(data) // 2] ^= 0x01
        file.write_bytes(bytes(data))
        message = "checksum mismatch"
    elif where == "manifest":
        # The attacker also "fixes" nothing else: one changed number in the manifest is enough.
        data = json.loads((signed / "manifest.json").read_text())
        data["ensemble"]["temperature"] = 1.0
        (signed / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
        message = "changed after signing"
    else:
        sig = json.loads((signed / SIGNATURE_NAME).read_text())
        sig["signature"] = sig["signature"][:-4] + "AAA="
        (signed / SIGNATURE_NAME).write_text(json.dumps(sig))
        message = "signature"
    result = run("bundle", "verify", signed, "--key", maker)
    assert result.exit_code == 1 and message in result.output, result.output


def test_a_file_changed_with_its_hash_fixed_is_caught_by_the_signature(signed, keys):
    """The attack that hashes alone miss: edit a model and write its new hash into the manifest."""
    from cxr_edge.hashing import file_sha256

    (_, maker), _ = keys
    file = _first_model(signed)
    file.write_bytes(file.read_bytes() + b"\0")
    data = json.loads((signed / "manifest.json").read_text())
    data["models"][0]["sha256"] = file_sha256(file)
    (signed / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    Bundle.load(signed, trust=False)  # the checksums agree now ...
    with pytest.raises(UntrustedBundleError, match="changed after signing"):  # ... the signature does not
        Bundle.load(signed, trust=TrustPolicy.from_path(maker))


def test_trust_policy_refuses_unsigned_and_tampered_bundles_in_predict_batch_and_serve(
    signed, keys, tmp_path, monkeypatch
):
    (_, maker), _ = keys
    unsigned = tmp_path / "unsigned"
    shutil.copytree(PAPER, unsigned)
    sample = load_samples()[0].file
    env = {TRUSTED_KEYS_ENV: str(maker)}
    # No policy: unsigned bundles run as before.
    assert run("predict", sample, "--bundle", unsigned).exit_code == 0
    assert "unsigned" in run("bundle", "info", "--bundle", unsigned).output
    # Policy: the signed bundle runs, the unsigned one is refused with a clear error.
    assert run("predict", sample, "--bundle", signed, env=env).exit_code == 0
    refused = run("predict", sample, "--bundle", unsigned, env=env)
    assert refused.exit_code == 1 and "UntrustedBundleError: bundle is not signed" in refused.output
    out = tmp_path / "batch"
    batch = run("batch", sample, "--bundle", unsigned, "--out", out, env=env)
    assert batch.exit_code != 0 and "not signed" in batch.output
    # Batch workers apply the caller's policy whatever their own environment.
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(maker))
    spec = PredictorSpec(bundle_dir=str(unsigned))
    monkeypatch.delenv(TRUSTED_KEYS_ENV)
    with pytest.raises(UntrustedBundleError):
        spec.build()
    # The node: its own config names the keys.
    with pytest.raises(UntrustedBundleError, match="not signed"):
        Triage(TriageConfig(bundle=str(unsigned), trusted_keys=str(maker)))
    node = Triage(TriageConfig(bundle=str(signed), trusted_keys=str(maker)))
    assert node.bundle["verified"] and node.bundle["signed_by"].startswith("ed25519:")
    # Tampered after signing: refused everywhere the policy applies.
    data = json.loads((signed / "manifest.json").read_text())
    data["ensemble"]["temperature"] = 1.0
    (signed / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    tampered = run("predict", sample, "--bundle", signed, env=env)
    assert tampered.exit_code == 1 and "changed after signing" in tampered.output
    with pytest.raises(UntrustedBundleError):
        Triage(TriageConfig(bundle=str(signed), trusted_keys=str(maker)))


def test_a_policy_that_trusts_nothing_is_refused_at_start(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no trusted keys"):
        TrustPolicy.from_path(tmp_path / "empty")
    with pytest.raises(BundleError, match="not found"):
        TrustPolicy.from_path(tmp_path / "missing.pem")


def test_a_site_calibrated_bundle_is_signed_by_the_site_and_names_the_parents_signer(
    signed, keys, tmp_path, monkeypatch
):
    (maker_private, maker), (site_private, site_public) = keys
    parent = Bundle.load(signed)
    n = len(parent.labels)
    section = SiteCalibration(
        name="signing-test",
        date="2026-12-07",
        parent_sha256=bundle_sha256(parent),
        method="prior",
        images={label: 20 for label in parent.labels},
        patients=40,
        temperature=1.5,
        bias=(0.0,) * n,
        metrics={"images": {label: 20 for label in parent.labels}},
        parent_signed_by=parent.signature.key_id,
    )
    new = write_site_bundle(parent, section, tmp_path / "site", key=site_private)
    assert new.signature.key_id != parent.signature.key_id
    assert new.manifest.site.parent_signed_by == parent.signature.key_id
    assert run("bundle", "verify", new.root, "--key", site_public).exit_code == 0
    assert run("bundle", "verify", new.root, "--key", maker).exit_code == 1
    card = run("bundle", "card", "--bundle", new.root)
    assert parent.signature.key_id in card.output
    # Under a policy: no key, or a key the device does not trust, is refused before any image is read.
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(maker))
    with pytest.raises(UntrustedBundleError, match="must be signed"):
        check_site_key(None)
    with pytest.raises(UntrustedBundleError, match="not trusted"):
        check_site_key(site_private)
    check_site_key(maker_private)


def test_sign_writes_what_the_ports_read(signed):
    sig = json.loads((signed / SIGNATURE_NAME).read_text())
    assert sig["algorithm"] == "Ed25519" and sig["signed_file"] == "manifest.json"
    assert sig["key_id"].startswith("ed25519:") and len(sig["key_id"]) == len("ed25519:") + 16
    assert Bundle.load(signed).signature.key_id == sig["key_id"]


def test_sign_in_the_library_matches_the_cli(tmp_path, keys):
    (maker_private, maker), _ = keys
    root = tmp_path / "b"
    shutil.copytree(PAPER, root)
    sig = sign(root, maker_private)
    assert Bundle.load(root, trust=TrustPolicy.from_path(maker)).trusted_by == sig.key_id
