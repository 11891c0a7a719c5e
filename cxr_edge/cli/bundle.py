"""``cxr-edge bundle``: what a bundle holds (``info``), its model card (``card``), whether it may
decode DICOMs at reduced resolution (``decode-gate``), and who vouches for it (``keygen``, ``sign``,
``verify``). No TensorFlow needed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import click

from cxr_edge.bundle.card_markdown import card_markdown, card_summary, site_line
from cxr_edge.bundle.folder import Bundle, write_manifest
from cxr_edge.cli.common import bundle_option, clean_errors, manifest_option, root_option, split_option
from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.splits import read_split
from cxr_edge.errors import SpecError


@click.group("bundle")
def bundle_group() -> None:
    """A bundle: what it holds, its model card, its decode gate, its signature."""


@bundle_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the presets as JSON.")
@clean_errors
def list_cmd(as_json):
    """The bundles shipped with cxr-edge, by name (what --bundle NAME takes)."""
    from cxr_edge.bundle.presets import PRESETS

    rows = []
    for preset in PRESETS.values():
        m = Bundle.load(preset.path).manifest
        spec = m.preprocess
        rows.append(
            {
                "name": preset.name,
                "summary": preset.summary,
                "bundle": m.name,
                "input_size": list(spec.input_size),
                "channels": spec.channels,
                "normalize": spec.normalize,
                "labels": list(m.labels),
                "members": list(m.ensemble.members),
                "segmenter": m.segmenter.name if m.segmenter else None,
                "segmenter_role": str(m.segmenter.role) if m.segmenter else None,
                "card": card_summary(m.card),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        h, w = r["input_size"]
        click.echo(f"{r['name']:<9} {r['summary']}")
        click.echo(
            f"{'':<9} {r['bundle']}: {h}x{w}x{r['channels']} {r['normalize']}, "
            f"labels {', '.join(r['labels'])}, "
            f"{len(r['members'])} members"
            + (f", segmenter {r['segmenter']} ({r['segmenter_role']})" if r["segmenter"] else "")
        )
        click.echo(f"{'':<9} {r['card']}")


@bundle_group.command("info")
@bundle_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
@click.option("--markdown", is_flag=True, help="Print the models as a Markdown table (for reports).")
# `cxr-edge info --card` of one release ago: now `cxr-edge bundle card`.
@click.option("--card", "show_card", is_flag=True, hidden=True)
@clean_errors
def info_cmd(bundle_dir, as_json, markdown, show_card):
    """Show what a bundle holds and where it is (checksums are verified)."""
    bundle = Bundle.load(bundle_dir)
    m = bundle.manifest
    if show_card:
        _echo_card(bundle, as_json)
        return
    if as_json:
        click.echo(json.dumps(m.to_dict(), indent=2))
        return
    if markdown:
        click.echo(model_table(bundle))
        return
    click.echo(f"bundle      {m.name}  (format {m.format_version})")
    for warning in m.provenance.get("warnings", []):
        click.echo(f"WARNING     this bundle looks useless: {warning}")
    click.echo(f"location    {bundle.root}")
    click.echo(f"size        {bundle.size_bytes() / 1024:.1f} KiB")
    click.echo(f"signature   {signature_line(bundle)}")
    if m.site is not None:
        click.echo(f"site        {site_line(m.site)}")
    click.echo(f"labels      {', '.join(m.labels)}")
    if m.label_map:
        click.echo(f"label map   {', '.join(f'{k} -> {v}' for k, v in sorted(m.label_map.items()))}")
    spec = m.preprocess
    click.echo(
        f"preprocess  {spec.input_size[0]}x{spec.input_size[1]}x{spec.channels}, border {spec.border}, "
        f"CLAHE {'on' if spec.clahe else 'off'}, median {spec.median}, {spec.normalize}"
    )
    ens = m.ensemble
    click.echo(f"ensemble    {ens.method} of {', '.join(ens.members) or '(none)'}")
    if ens.temperature != 1.0:
        click.echo(
            f"            temperature {ens.temperature:.3g}: the combined probabilities are tempered, softer "
            "than the members' own (JSONL `per_model`, `predict --models NAME`)"
        )
    click.echo(f"referral    {referral_summary(ens.abstain)}")
    if m.segmenter is not None:
        seg = m.segmenter
        click.echo(
            f"segmenter   {seg.name} ({seg.quant}, {bundle.path_of(seg).stat().st_size / 1024:.0f} KiB, "
            f"{seg.macs / 1e9:.1f} GMACs), held-out Dice {_fmt(seg.metrics.get('heldout_dice'))}, "
            + (
                f"crop margin {seg.crop.margin}"
                if seg.crops
                else "role evidence (the classifiers see the full image; the mask checks the heat map)"
            )
        )
        ev = m.lung_evidence
        click.echo(
            "lungs       "
            + (
                f"flagged 'evidence outside the lungs' below lung fraction {ev.min_fraction:.3f} "
                f"({ev.chosen_on})"
                if ev
                else "lung fraction reported, no flag threshold"
            )
        )
    click.echo(f"decode      {decode_summary(m.decode)}")
    click.echo(f"card        {card_summary(m.card)}")
    click.echo("models      (* = ensemble member)")
    for line in model_lines(bundle):
        click.echo(f"  {line}")
    for fallback in m.provenance.get("member_fallbacks", []):
        reasons = "; ".join(fallback.get("gate", {}).get("failures", [])) or "its gate failed"
        click.echo(f"  {fallback.get('failed', '?')}: not shipped ({reasons}); another variant is the member")
    prov = m.provenance
    click.echo(
        f"provenance  created {prov.get('created', '?')}, commit {str(prov.get('git_commit', '?'))[:12]}, "
        f"weights: {', '.join(prov.get('weights', ['?']))}"
    )
    click.echo(
        f"            data manifest {str(prov.get('data_manifest_sha256', '?'))[:16]}..., "
        f"split {str(prov.get('split_sha256', '?'))[:16]}..."
    )


@bundle_group.command("card")
@bundle_option
@click.option("--json", "as_json", is_flag=True, help="The card as JSON instead of Markdown.")
@clean_errors
def card_cmd(bundle_dir, as_json):
    """Print the bundle's model card: intended use, training data, LOSO results, failure modes."""
    _echo_card(Bundle.load(bundle_dir), as_json)


def _echo_card(bundle: Bundle, as_json: bool) -> None:
    m = bundle.manifest
    if m.card is None:
        raise click.ClickException(
            f"bundle {m.name} (format {m.format_version}) carries no model card; "
            "`cxr-edge convert` writes one into every format-3 bundle"
        )
    click.echo(
        json.dumps(m.card.to_dict(), indent=2) if as_json else card_markdown(m.card, m.name, m.site),
        nl=as_json,
    )


@bundle_group.command("decode-gate")
@bundle_option
@manifest_option()
@split_option()
@root_option
@click.option("--images", default=60, show_default=True, type=click.IntRange(1), help="Validation images.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Gated copy of the bundle.")
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
@clean_errors
def decode_gate_cmd(bundle_dir, manifest_path, split_path, root, images, out, force):
    """Gate reduced-resolution DICOM decoding for a bundle and write a copy that records the verdict.

    Each validation image becomes a full-size 12-bit DICOM (uncompressed, JPEG baseline, JPEG 2000),
    predicted by the bundle decoded at full and at reduced resolution; the copy decodes reduced only,
    by the kinds that keep 99% of the argmax decisions outside the referral band. (`cxr-edge
    convert` runs the same gate.) The input bundle is never modified.
    """
    from cxr_edge.dataset.splits import spread
    from cxr_edge.evaluation.decode_gate import KINDS, REFERENCE, decode_gate

    source = Bundle.load(bundle_dir)
    target = Path(out)
    if target.resolve() == source.root.resolve():
        raise SpecError("--out is the input bundle", expected="a new folder", received=str(target))
    if target.exists() and any(target.iterdir()) and not force:
        raise SpecError("output folder is not empty", expected="a new folder (or --force)", received=out)
    manifest = load_manifest(manifest_path, root, check_files=False)
    val = read_split(split_path, manifest).records(manifest, "val")
    config = decode_gate(source.root, [r.file for r in spread(val, images)], progress=True)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source.root, target)
    write_manifest(target, dataclasses.replace(source.manifest, decode=config))
    for kind in (*KINDS, REFERENCE):
        g = config.gate[kind]
        click.echo(
            f"{kind:10s} 1/{'/'.join(map(str, g['reduction']))}: agreement {g['argmax_agreement']:.3f} "
            f"(outside the referral band {g['argmax_agreement_outside_band']:.3f} of "
            f"{g['images_outside_band']}), max |dp| {g['max_abs_diff']:.3f}, "
            f"mean |dp| {g['mean_abs_diff']:.4f}"
            + ("  [reference: lossy JPEG at full resolution]" if kind == REFERENCE else "")
        )
    verdict = (
        f"passed for {', '.join(config.kinds)}" if config.reduced else "failed: full-resolution decoding"
    )
    click.echo(f"decode gate {verdict} (min side {config.min_side} px) -> {target}")


@bundle_group.command("keygen")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the key pair.")
@clean_errors
def keygen_cmd(out):
    """Make an Ed25519 key pair: OUT/private.pem (keep it off the cart) and OUT/public.pem (give it to carts).

    An existing key is never overwritten.
    """
    from cxr_edge.bundle.signature import generate_keys, key_id, load_public_key

    private, public = generate_keys(out)
    click.echo(
        f"private key {private} (owner-only; signs bundles: cxr-edge bundle sign BUNDLE --key {private})"
    )
    click.echo(
        f"public key  {public} ({key_id(load_public_key(public))}; "
        "a cart trusts it through CXR_EDGE_TRUSTED_KEYS)"
    )


@bundle_group.command("sign")
@click.argument("bundle_dir")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False), help="Private key PEM.")
@click.option("--force", is_flag=True, help="Replace an existing signature.")
@clean_errors
def sign_cmd(bundle_dir, key_file, force):
    """Sign BUNDLE (a folder or a preset's name): signature.json over its manifest, which pins every file.

    The bundle is checked first (every file's checksum): a signature vouches for what it covers.
    """
    from cxr_edge.bundle.signature import SIGNATURE_NAME, load_private_key, sign

    key = load_private_key(key_file)
    bundle = Bundle.load(bundle_dir, trust=False)
    if bundle.signature is not None and not force:
        raise SpecError(
            "bundle is signed already",
            expected="an unsigned bundle (or --force to replace the signature)",
            received=f"signed by {bundle.signature.key_id}",
        )
    signature = sign(bundle.root, key)
    click.echo(f"signed {bundle.root} with {signature.key_id} -> {bundle.root / SIGNATURE_NAME}")


@bundle_group.command("verify")
@click.argument("bundle_dir")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True),
    help="Public key PEM, or a folder of them.",
)
@clean_errors
def verify_cmd(bundle_dir, key_path):
    """Exit 0 only when BUNDLE is signed by KEY (or one of a folder's keys) and unchanged since signing."""
    from cxr_edge.bundle.signature import TrustPolicy

    bundle = Bundle.load(bundle_dir, trust=TrustPolicy.from_path(key_path))
    click.echo(f"verified: {bundle.root} is signed by {bundle.trusted_by}; every file matches its manifest")


@bundle_group.command("selftest")
@bundle_option
@click.option("--json", "as_json", is_flag=True, help="Print every stage's result as JSON.")
@clean_errors
def selftest_cmd(bundle_dir, as_json):
    """Run the bundle's golden inputs on this machine's kernels; exit 1 when a stage differs beyond
    its tolerance (the stage is named: decode, segment, crop, preprocess, a member, output)."""
    from cxr_edge.runtime.selftest import run

    bundle = Bundle.load(bundle_dir)
    results = run(bundle)
    failed = [r for r in results if not r.passed]
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        for r in failed or results:
            verdict = "ok" if r.passed else "DIFFERS"
            detail = f"; {r.detail}" if r.detail else ""
            click.echo(
                f"{verdict:<8} {r.case}: {r.stage}: {r.difference:.3g} (tolerance {r.tolerance:.3g}{detail})"
            )
        click.echo(
            f"self-test {'FAILED' if failed else 'passed'}: {len(results) - len(failed)} of {len(results)} "
            f"stage checks on {bundle.manifest.name}"
        )
    if failed:
        raise SystemExit(1)


def signature_line(bundle: Bundle) -> str:
    """Who signed the bundle, and whether this device checked it."""
    sig = bundle.signature
    if sig is None:
        return "unsigned"
    if bundle.trusted_by is not None:
        return f"signed by {sig.key_id} on {sig.signed_at}, verified against this device's trusted keys"
    return (
        f"signed by {sig.key_id} on {sig.signed_at} "
        "(not verified: no trusted keys set; cxr-edge bundle verify)"
    )


def referral_summary(band) -> str:
    """The referral rule in words (a margin of 0 refers nothing, so it is not mentioned)."""
    if band is None:
        return "no band in the bundle (the DICOM node refers below 0.60)"
    rules = [f"top probability < {band.min_top_prob:.2f}"] if band.min_top_prob > 0 else []
    rules += (
        [f"margin between the two most likely labels < {band.min_margin:.2f}"] if band.min_margin > 0 else []
    )
    return "refer to a radiologist when " + " or ".join(rules) if rules else "no referral (band switched off)"


def decode_summary(decode) -> str:
    """One line on reduced-resolution DICOM decoding: which kinds the gate allowed, and its numbers."""
    if decode is None:
        return "full resolution (no decode gate recorded; `cxr-edge bundle decode-gate` measures one)"
    if not decode.reduced:
        return f"full resolution (the decode gate failed on {decode.gate.get('images', '?')} images)"
    refused = [k for k, v in decode.gate.items() if isinstance(v, dict) and v.get("passed") is False]
    refused = [k for k in refused if k != "jpeg_full"]  # the reference never decides
    return (
        f"reduced to >= {decode.min_side} px short side by {', '.join(decode.kinds)} "
        f"(gate on {decode.gate.get('images', '?')} validation images; "
        f"refused: {', '.join(refused) or 'none'}; `info --json` has the numbers)"
    )


def model_table(bundle: Bundle) -> str:
    """Markdown table: variant, size, parameters, parity and gate on validation, val/test metrics."""
    rows = [
        "| model | variant | size (KiB) | params | agreement | max Δp | AUC drop | gate | val acc | val AUC "
        "| test acc | test AUC |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for e in bundle.manifest.models:
        par, val, test = e.parity, e.metrics.get("val", {}), e.metrics.get("test", {})
        rows.append(
            f"| {e.name} | {e.quant} | {bundle.path_of(e).stat().st_size / 1024:.1f} | {e.params:,} | "
            f"{_fmt(par.get('argmax_agreement'))} | {_fmt(par.get('max_abs_diff'), 4)} | "
            f"{_fmt(par.get('auc_macro_drop'), 4)} | {_gate(e.gate)} | {_fmt(val.get('accuracy'))} | "
            f"{_fmt(val.get('auc_macro'))} | {_fmt(test.get('accuracy'))} | {_fmt(test.get('auc_macro'))} |"
        )
    return "\n".join(rows)


def model_lines(bundle: Bundle) -> list[str]:
    """One line per model: variant, size, parameters, parity with Keras on validation, test metrics."""
    lines = []
    members = set(bundle.manifest.ensemble.members)
    for e in bundle.manifest.models:
        size = bundle.path_of(e).stat().st_size / 1024
        par, val, test = e.parity, e.metrics.get("val", {}), e.metrics.get("test", {})
        lines.append(
            f"{'*' if e.name in members else ' '} {e.name:<24} {e.quant:<5} {size:8.1f} KiB  "
            f"{e.params:>9,} params  input {e.input.dtype}  "
            f"parity(val) agree={_fmt(par.get('argmax_agreement'))} "
            f"maxdiff={_fmt(par.get('max_abs_diff'), 4)} gate={_gate(e.gate)}  "
            f"val acc={_fmt(val.get('accuracy'))} auc={_fmt(val.get('auc_macro'))}  "
            f"test acc={_fmt(test.get('accuracy'))} auc={_fmt(test.get('auc_macro'))}"
        )
    return lines


def _gate(verdict: dict) -> str:
    if not verdict:
        return "n/a"
    return (
        "pass"
        if verdict.get("passed")
        else ("FAIL (kept: --allow-degraded)" if verdict.get("allowed_degraded") else "FAIL")
    )


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
