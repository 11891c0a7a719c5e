"""Signed bundles and Python's verdicts on them, for the ports' tests (``golden_extra.py``, the web tests).

``signed.json`` holds what ``SignatureTest.java`` compares against; the files it names are written beside it
(paths relative to the extra golden folder):

* ``keys``: two Ed25519 key pairs made with :func:`cxr_edge.bundle.signature.generate_keys` (``maker`` and
  ``other``: their folders and key ids, as :func:`~cxr_edge.bundle.signature.key_id` computes them) and a
  folder ``both`` holding the two public keys;
* ``bundles``: copies of the ``paper`` preset (it pins a self-test file too), signed with
  :func:`~cxr_edge.bundle.signature.sign` and then changed in the ways :data:`VARIANTS` describes;
* ``loads``: :meth:`Bundle.load` of every bundle under every policy of :data:`POLICIES` (none, the maker's
  key, the other key, both): read (the key id that verified it, the signature's key id and date) or refused
  (the error's type, sentence and full message);
* ``own_key``: whether each bundle's signature verifies against the key it embeds, with that key trusted
  (what the browser app reports: it has no trusted keys of its own);
* ``signatures``: ``signature.json`` texts, well-formed and not, with what
  :func:`~cxr_edge.bundle.signature.read_signature` makes of each;
* ``policies``: Python's verdict on a policy read from the maker's key folder, which holds ``private.pem``
  beside ``public.pem``.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.signature import (
    SIGNATURE_NAME,
    TrustPolicy,
    generate_keys,
    key_id,
    load_public_key,
    read_signature,
    sign,
    verify,
)
from cxr_edge.errors import CxrEdgeError

#: The preset copied (it pins a self-test file beside its models).
PRESET = "paper"
#: Trust policies: none, or the public keys of a key folder (``both``: the folder of both public keys).
POLICIES = ("none", "maker", "other", "both")
#: How each bundle differs from a copy of the preset signed by the maker's key.
VARIANTS = {
    "unsigned": "no signature.json",
    "signed": "signed by the maker's key",
    "signed_by_other": "signed by the other key",
    "manifest_edited": "signed, then the manifest's name changed (a valid manifest)",
    "manifest_reformatted": "signed, then a line break appended to the manifest (same content, other bytes)",
    "claims_maker": "signed by the other key (whose public key it embeds), its key id changed to the maker's",
    "model_tampered": "signed, then one byte of a model file flipped",
    "selftest_tampered": "signed, then the self-test file changed",
    "malformed_signature": "signed, then the public key in signature.json cut to 31 bytes",
}


def _error(exc: CxrEdgeError) -> dict:
    return {"ok": False, "type": type(exc).__name__, "problem": exc.message, "message": str(exc)}


def make_keys(folder: Path) -> dict:
    """The two key pairs and the folder of both public keys; returns ``{name: {dir, public, key_id}}``."""
    keys = {}
    both = folder / "both"
    both.mkdir(parents=True)
    for name in ("maker", "other"):
        _, public = generate_keys(folder / name)
        shutil.copyfile(public, both / f"{name}.pem")
        keys[name] = {"dir": folder / name, "public": public, "key_id": key_id(load_public_key(public))}
    return keys


def make_bundles(folder: Path, keys: dict, source: Path | None = None) -> dict[str, Path]:
    """Every bundle of :data:`VARIANTS` (``selftest_tampered`` when the source pins a self-test), written into
    ``folder``; returns their roots by name."""
    source = source or Bundle.load(PRESET, trust=False).root
    maker, other = keys["maker"]["dir"] / "private.pem", keys["other"]["dir"] / "private.pem"
    roots = {}
    pins_selftest = Bundle.load(source, trust=False, verify=False).manifest.selftest is not None
    for name in VARIANTS:
        if name == "selftest_tampered" and not pins_selftest:
            continue
        root = shutil.copytree(source, folder / name)
        (root / SIGNATURE_NAME).unlink(missing_ok=True)
        roots[name] = root
        if name == "unsigned":
            continue
        sign(root, other if name in ("signed_by_other", "claims_maker") else maker)
        manifest = root / "manifest.json"
        if name == "manifest_edited":
            data = json.loads(manifest.read_text())
            data["name"] += " (edited after signing)"
            manifest.write_text(json.dumps(data, indent=2) + "\n")
        elif name == "manifest_reformatted":
            manifest.write_bytes(manifest.read_bytes() + b"\n")
        elif name == "claims_maker":
            # A valid signature by the other key, with the key it embeds: only the id claims the maker.
            data = json.loads((root / SIGNATURE_NAME).read_text())
            data["key_id"] = keys["maker"]["key_id"]
            (root / SIGNATURE_NAME).write_text(json.dumps(data, indent=2) + "\n")
        elif name == "model_tampered":
            model = root / Bundle.load(root, trust=False, verify=False).manifest.models[0].file
            data = bytearray(model.read_bytes())
            data[len(data) // 2] ^= 0xFF
            model.write_bytes(bytes(data))
        elif name == "selftest_tampered":
            selftest = root / Bundle.load(root, trust=False).manifest.selftest.file
            selftest.write_bytes(selftest.read_bytes() + b" ")
        elif name == "malformed_signature":
            data = json.loads((root / SIGNATURE_NAME).read_text())
            data["public_key"] = base64.b64encode(base64.b64decode(data["public_key"])[:31]).decode("ascii")
            (root / SIGNATURE_NAME).write_text(json.dumps(data, indent=2) + "\n")
    return roots


def load_verdict(root: Path, policy: TrustPolicy | None) -> dict:
    """What :meth:`Bundle.load` does with a bundle under a policy (None: no policy)."""
    try:
        bundle = Bundle.load(root, trust=policy if policy is not None else False)
    except CxrEdgeError as exc:
        return _error(exc)
    sig = bundle.signature
    return {
        "ok": True,
        "trusted_by": bundle.trusted_by,
        "key_id": sig.key_id if sig else None,
        "signed_at": sig.signed_at if sig else None,
    }


def own_key_verdict(root: Path) -> dict:
    """The signature checked against the key it embeds, that key trusted (the browser's check).

    ``status``: ``unsigned``, ``malformed`` (``read_signature`` refuses the file), ``valid`` or ``invalid``
    (:func:`verify` refuses it: another key id than the embedded key's, or a signature that does not match the
    manifest's bytes); ``key_id``: the embedded key's id, computed from its bytes.
    """
    try:
        sig = read_signature(root)
    except CxrEdgeError as exc:
        return {"status": "malformed", "problem": exc.message}
    if sig is None:
        return {"status": "unsigned"}
    public = Ed25519PublicKey.from_public_bytes(sig.public_key)
    embedded = key_id(public)
    try:
        verify((root / "manifest.json").read_bytes(), sig, {embedded: public})
    except CxrEdgeError as exc:
        return {"status": "invalid", "key_id": embedded, "claimed_key_id": sig.key_id, "problem": exc.message}
    return {"status": "valid", "key_id": embedded, "claimed_key_id": sig.key_id, "signed_at": sig.signed_at}


def signature_texts(signed: dict) -> dict[str, str]:
    """``signature.json`` texts: the intact one of a signed bundle and broken copies of it."""
    key, sig = signed["public_key"], signed["signature"]
    short = base64.b64encode(base64.b64decode(key)[:31]).decode("ascii")
    long_sig = base64.b64encode(base64.b64decode(sig) + b"\0").decode("ascii")
    without = {k: v for k, v in signed.items() if k != "signed_at"}
    texts = {
        "intact": signed,
        "format 1.0": signed | {"format": 1.0},
        "no signed_at": without,
        "format 2": signed | {"format": 2},
        "algorithm RSA": signed | {"algorithm": "RSA"},
        "no algorithm": {k: v for k, v in signed.items() if k != "algorithm"},
        "no key_id": {k: v for k, v in signed.items() if k != "key_id"},
        "no public_key": {k: v for k, v in signed.items() if k != "public_key"},
        "no manifest_sha256": {k: v for k, v in signed.items() if k != "manifest_sha256"},
        "public_key not base64": signed | {"public_key": "not base64!"},
        "public_key without padding": signed | {"public_key": key.rstrip("=")},
        "public_key as a number": signed | {"public_key": 12},
        "public_key of 31 bytes": signed | {"public_key": short},
        "signature of 65 bytes": signed | {"signature": long_sig},
    }
    out = {name: json.dumps(value, indent=2) + "\n" for name, value in texts.items()}
    out["a list"] = "[]\n"
    out["not JSON"] = '{"format": 1,\n'
    return out


def signature_cases(root: Path) -> list[dict]:
    """:func:`signature_texts` of the signed bundle at ``root``, each with ``read_signature``'s verdict."""
    cases = []
    with tempfile.TemporaryDirectory(prefix="cxr-sig-") as tmp:
        for name, text in signature_texts(json.loads((root / SIGNATURE_NAME).read_text())).items():
            (Path(tmp) / SIGNATURE_NAME).write_text(text)
            try:
                sig = read_signature(tmp)
                want = {
                    "ok": True,
                    "key_id": sig.key_id,
                    "public_key": base64.b64encode(sig.public_key).decode("ascii"),
                    "signed_at": sig.signed_at,
                }
            except CxrEdgeError as exc:
                want = _error(exc)
            cases.append({"name": name, "text": text, "python": want})
    return cases


def write(folder: str | Path) -> dict:
    """Writes the keys and bundles into ``folder`` and returns ``signed.json`` (see the module docstring)."""
    folder = Path(folder)
    for sub in ("keys", "signed"):  # what an earlier run wrote here (keys are never overwritten)
        shutil.rmtree(folder / sub, ignore_errors=True)
    keys = make_keys(folder / "keys")
    roots = make_bundles(folder / "signed", keys)
    policies = {"none": None}
    policies |= {name: TrustPolicy.from_path(keys[name]["public"]) for name in ("maker", "other")}
    policies["both"] = TrustPolicy.from_path(folder / "keys" / "both")
    assert set(policies) == set(POLICIES)
    loads = {
        name: {policy: load_verdict(root, policies[policy]) for policy in POLICIES}
        for name, root in roots.items()
    }
    # The cases the tests rely on, as Python decides them (so that a change of the library shows here first).
    assert loads["signed"]["maker"]["trusted_by"] == keys["maker"]["key_id"]
    assert not loads["manifest_reformatted"]["maker"]["ok"] and loads["manifest_reformatted"]["none"]["ok"]
    assert not loads["claims_maker"]["maker"]["ok"] and not loads["unsigned"]["both"]["ok"]
    try:
        TrustPolicy.from_path(keys["maker"]["dir"])
        folder_policy = {"ok": True}
    except CxrEdgeError as exc:
        folder_policy = _error(exc)
    rel = lambda p: Path(p).relative_to(folder).as_posix()  # noqa: E731
    return {
        "keys": {
            name: {"dir": rel(k["dir"]), "public": rel(k["public"]), "key_id": k["key_id"]}
            for name, k in keys.items()
        }
        | {"both": {"dir": rel(folder / "keys" / "both")}},
        "bundles": {name: {"dir": rel(root), "description": VARIANTS[name]} for name, root in roots.items()},
        "loads": loads,
        "own_key": {name: own_key_verdict(root) for name, root in roots.items()},
        "signatures": signature_cases(roots["signed"]),
        "policies": {"maker_key_folder": folder_policy},
    }
