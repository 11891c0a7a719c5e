"""The pages say what the code does: CLI options, CSV columns and audit fields in the docs are checked here.

Pages drifted before (a `prob_pneumonia_unknown` column, a first-release audit example, options that
no longer exist). These tests read the Markdown the way a newcomer copies from it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cxr_edge.cli import main
from cxr_edge.runtime.pipeline import Outcome
from cxr_edge.runtime.rows import outcome_row

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        REPO / "README.md",
        *REPO.glob("docs/**/*.md"),
        *(REPO / d / "README.md" for d in ("web_demo", "android_demo")),
    ]
)


def code_snippets(text: str) -> list[str]:
    """Inline code spans and code-block commands (continuation lines joined, comments cut)."""
    snippets = []
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        snippets += [line.split(" #", 1)[0] for line in joined.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    snippets += re.findall(r"`([^`\n]+)`", prose)
    return snippets


def cli_uses(snippet: str) -> list[tuple[list[str], list[str]]]:
    """``(command path, --options)`` for every ``cxr-edge ...`` in a snippet."""
    uses = []
    for match in re.finditer(r"(?:^|[\s/])cxr-edge\s+([^|;&]*)", snippet):
        try:
            tokens = shlex.split(match.group(1), comments=False)
        except ValueError:
            tokens = match.group(1).split()
        path, options = [], []
        command: click.Command = main
        ctx = click.Context(main)
        for token in tokens:
            token = token.strip("[](),")
            if isinstance(command, click.Group) and not token.startswith("-"):
                sub = command.get_command(ctx, token)
                if sub is None:
                    if not path:
                        break  # prose: "cxr-edge's", "cxr-edge[train]"
                    continue
                if sub.hidden:
                    options.append(f"!{token}")  # an old name, kept one release: pages use the new one
                command, path = sub, [*path, token]
                options.append(f"@{token}")  # marks where the options of the next command start
                continue
            if token.startswith("--") and len(token) > 2:
                options.append(token.split("=", 1)[0])
        if path:
            uses.append((path, options))
    return uses


def _options(command: click.Command) -> set[str]:
    """The options a page may name: old names kept for one release (hidden) are not among them."""
    names = {"--help"}
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        old = set(getattr(param, "hidden_aliases", ()))
        names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--") and o not in old)
    return names


def test_every_documented_cli_option_exists():
    ctx = click.Context(main)
    wrong = []
    for page in PAGES:
        for snippet in code_snippets(page.read_text(encoding="utf-8")):
            for path, options in cli_uses(snippet):
                command: click.Command = main
                for token in options:
                    if token.startswith("!"):
                        wrong.append(f"{page.relative_to(REPO)}: old command name `{token[1:]}`")
                    elif token.startswith("@"):
                        command = (command.get_command(ctx, token[1:]) if isinstance(command, click.Group)
                                   else command)  # fmt: skip
                    elif token not in _options(command):
                        wrong.append(f"{page.relative_to(REPO)}: cxr-edge {' '.join(path)} {token}")
    assert not wrong, "documented options that the CLI does not have:\n" + "\n".join(sorted(set(wrong)))


def test_documented_csv_columns_are_predicts():
    from cxr_edge.bundle.folder import Bundle

    text = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    listed = re.search(r"One row per input: `([^`]+)`", text.replace("\n  ", " "))
    assert listed, "docs/usage.md lists predict's columns"
    columns = [c.strip() for c in listed.group(1).split(",")]
    assert columns == list(outcome_row(Outcome(""), Bundle.load().labels))


def test_audit_example_and_field_table_match_a_real_record(tmp_path):
    """serve.md's example is a real record of the shipped bundle (abridged), and every field is explained."""
    from cxr_edge.dataset.samples import load_samples
    from cxr_edge.imaging.synth import stored_from_image, write_radiograph
    from cxr_edge.serve import Triage
    from cxr_edge.serve.config import TriageConfig

    record = Triage(TriageConfig())(
        write_radiograph(tmp_path / "x.dcm", stored_from_image(load_samples()[0].file))
    ).record
    text = (REPO / "docs" / "serve.md").read_text(encoding="utf-8")
    section = text.split("## Audit log schema", 1)[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, flags=re.S).group(1))
    real = {"schema", "event", "prev", "time", "delivery", *record}  # the node adds delivery
    assert set(example) == real
    assert set(example["image"]) == set(record["image"])
    assert set(example["probs"]) == set(record["probs"]) and set(example["per_model"]) == set(
        record["per_model"]
    )
    assert set(example["timings_ms"]) <= set(record["timings_ms"]) | {"queue", "results", "send"}
    assert example["abstain"] == record["abstain"]
    table = section.split("| field | meaning |", 1)[1].split("\n\n", 1)[0]
    explained = set(re.findall(r"`([a-z_]+)`", table))
    assert real <= explained, f"fields without a row: {sorted(real - explained)}"


def test_documented_storescu_command_sends_a_compressed_file(tmp_path):
    """serve.md's quick start, as printed, sends a JPEG 2000 file to a node (it once could not)."""
    from pydicom import dcmread

    from cxr_edge.dataset.samples import load_samples
    from cxr_edge.imaging.synth import encode, stored_from_image, write_radiograph
    from cxr_edge.serve import Node
    from cxr_edge.serve.config import NodeConfig, ServeConfig, StorageConfig, TriageConfig

    line = next(
        line
        for line in (REPO / "docs" / "serve.md").read_text(encoding="utf-8").splitlines()
        if "pynetdicom storescu" in line
    )
    ds = dcmread(write_radiograph(tmp_path / "x.dcm", stored_from_image(load_samples()[0].file)))
    assert encode(ds, "j2k_lossless")
    file = tmp_path / "file.dcm"
    ds.save_as(file, enforce_file_format=True)
    config = ServeConfig(
        node=NodeConfig(port=0, allow=("MODALITY",)),
        storage=StorageConfig(inbox=str(tmp_path / "inbox"), audit=str(tmp_path / "audit.jsonl")),
        triage=TriageConfig(),
    )
    node = Node(config).start(worker=False)
    try:
        args = shlex.split(line.split(" #", 1)[0])
        args = [sys.executable if a.endswith("bin/python") else a for a in args]
        args = [str(node.port) if a == "11112" else str(file) if a == "file.dcm" else a for a in args]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(node.inbox.pending()) == 1
    finally:
        node.stop()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


def test_serve_config_table_gives_the_real_defaults():
    """Each `section.field` row of serve.md's config table whose default is one literal (`128`,
    `["PA","AP"]`, `sr`...) shows the dataclass's default; every plain field has a row."""
    import dataclasses

    from cxr_edge.serve.config import DestinationConfig, ServeConfig

    defaults = ServeConfig()
    sections = {
        "node": defaults.node,
        "storage": defaults.storage,
        "triage": defaults.triage,
        "triage.quality": defaults.triage.quality,
        "limits": defaults.limits,
        "destination": DestinationConfig(ae_title="X"),
    }
    text = (REPO / "docs" / "serve.md").read_text(encoding="utf-8")
    documented, wrong = set(), []
    for key, default in re.findall(r"^\| `([a-z_]+(?:\.[a-z_]+)+)`[^|]* \| ([^|]+) \|", text, flags=re.M):
        section, name = key.rsplit(".", 1)
        documented.add(key)
        literal = re.match(r"`([^`]*)`", default.strip())
        if section not in sections or not literal or not hasattr(sections[section], name):
            continue
        value = getattr(sections[section], name)
        value = list(value) if isinstance(value, tuple) else value
        try:
            shown = json.loads(literal.group(1))
        except json.JSONDecodeError:
            shown = literal.group(1)
        if value != shown:
            wrong.append(f"{key}: documented {literal.group(1)}, code {value!r}")
    assert not wrong, wrong
    missing = [
        f"{section}.{f.name}"
        for section, obj in sections.items()
        for f in dataclasses.fields(obj)
        if f.name not in ("tls", "abstain", "quality") and f"{section}.{f.name}" not in documented
    ]
    assert not missing, f"config fields without a row in serve.md: {missing}"


def test_the_command_reference_is_current():
    """docs/cli.md is generated from the click definitions (`python -m cxr_edge.cli.reference`)."""
    from cxr_edge.cli.reference import render

    page = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert page == render(), "docs/cli.md is stale: python -m cxr_edge.cli.reference > docs/cli.md"


#: Folders whose Python packages the layout table of docs/README.md must list (train/ installs as
#: cxr_edge.train, and so on).
PACKAGE_ROOTS = ("cxr_edge", "train", "convert", "benchmarks")
#: What the layout table names in backticks and the test checks: a module (`card_stats`) or a path
#: (`prune/`, `configs/triage/`, `mk/*.mk`).
LAYOUT_NAME = re.compile(r"[a-z_][a-z0-9_]*|[\w.*-]+(/[\w.*-]*)+")


def layout_table() -> dict[str, set[str]]:
    """docs/README.md's layout table: each row's path (`cxr_edge/ops/`) -> the names in its backticks."""
    text = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout of the repository", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for path, what in re.findall(r"^\| `([^`]+)`[^|]*\| (.*) \|$", section, flags=re.M):
        assert path not in rows, f"docs/README.md: two layout rows for `{path}`"
        rows[path] = set(re.findall(r"`([^`\n]+)`", what))
    return rows


def _exists(name: str, folder: Path) -> bool:
    """A module or file of the row's folder (`fit`, `serve` for serve.toml), a folder (`prune/`), or a
    path from the row's folder or the repository root (`configs/triage/`, `mk/*.mk`)."""
    if "/" in name.rstrip("/"):
        return any(any(base.glob(name.rstrip("/"))) for base in (folder, REPO))
    name = name.rstrip("/")
    return (folder / name).is_dir() or any(folder.glob(f"{name}.*"))


def test_layout_table_lists_every_package_and_nothing_stale():
    """One row per package (and per data folder of a package: its own row or `name/` in its parent's
    row), every module named in its package's row, and every module or path the table names exists.

    Checked names are the backticked ones that look like a module (`card_stats`) or a path (`prune/`,
    `configs/triage/`); commands (`cxr-edge bench`) and file names (`kit.csv`) are prose.
    """
    rows = layout_table()
    assert len(rows) > 10, "docs/README.md: no layout table under '## Layout of the repository'"
    missing = []
    for root in PACKAGE_ROOTS:
        folders = [REPO / root, *(p for p in (REPO / root).rglob("*") if p.is_dir())]
        for folder in sorted(folders):
            rel = folder.relative_to(REPO)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            if not (folder / "__init__.py").exists():
                continue
            row = f"{rel.as_posix()}/"
            if row not in rows:
                missing.append(f"{row}: package without a row")
                continue
            modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "__main__"}
            missing += [f"{row}: module `{m}` not named in its row" for m in sorted(modules - rows[row])]
            for child in sorted(folder.iterdir()):
                if not child.is_dir() or child.name == "__pycache__" or child.name.startswith("."):
                    continue
                if (child / "__init__.py").exists() or f"{row}{child.name}/" in rows:
                    continue
                if f"{child.name}/" not in rows[row]:
                    missing.append(f"{row}: folder `{child.name}/` neither named in its row nor a row")
    stale = []
    for path, names in rows.items():
        folder = REPO / path
        if not folder.exists():
            stale.append(f"`{path}`: no such path")
            continue
        for name in sorted(names):
            if LAYOUT_NAME.fullmatch(name) and not _exists(name, folder):
                stale.append(f"`{path}` row: `{name}` does not exist")
    assert not missing, "docs/README.md's layout table lacks:\n" + "\n".join(missing)
    assert not stale, "docs/README.md's layout table names what is gone:\n" + "\n".join(stale)
