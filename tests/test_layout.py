"""The house as layers: what imports what, what installs under which name, and how large a module gets.

`lint-imports` (import-linter, in `make test`) checks the runtime's layers inside ``cxr_edge/``. It does
not see the packages mapped from other folders (``cxr_edge.train`` from ``train/``...), so this file
checks those rules on the source itself, and runs the one "no TensorFlow" check of the suite.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Folder -> import name (pyproject's package-dir).
MAPPED = {"train": "cxr_edge.train", "convert": "cxr_edge.convert", "benchmarks": "cxr_edge.benchmarks"}
MAPPED_PACKAGES = tuple(MAPPED.values())
#: Lines a module may hold (Python files of the runtime and the learning stages).
MAX_LINES = 500


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in MAPPED:
        parts = [*MAPPED[parts[0]].split("."), *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (REPO / folder).rglob("*.py"))


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_the_runtime_never_imports_the_learning_stages_or_the_benchmarks():
    """Only the CLI reaches them, by name, when a learning command runs (never by an import statement)."""
    wrong = [
        f"{module_name(p)} imports {m}"
        for p in sources("cxr_edge")
        for m in imports(p)
        if m.startswith(MAPPED_PACKAGES)
    ]
    assert not wrong, wrong


def test_the_learning_stages_flow_one_way():
    """train -> convert -> benchmarks: training never imports conversion, neither imports the benchmarks."""
    rules = {"train": ("cxr_edge.convert", "cxr_edge.benchmarks"), "convert": ("cxr_edge.benchmarks",)}
    wrong = [
        f"{module_name(p)} imports {m}"
        for folder, banned in rules.items()
        for p in sources(folder)
        for m in imports(p)
        if m.startswith(banned)
    ]
    assert not wrong, wrong


def test_no_generic_top_level_import_names():
    """Nothing imports `train`, `convert` or `benchmarks` as top-level packages, and nothing installs so."""
    wrong = [
        f"{p.relative_to(REPO)} imports {m}"
        for p in sources("cxr_edge", *MAPPED, "tests", "android_demo")
        for m in imports(p)
        if m.split(".")[0] in MAPPED
    ]
    assert not wrong, wrong
    top_level = (REPO / "cxr_edge.egg-info" / "top_level.txt").read_text().split()
    assert top_level == ["cxr_edge"]


def test_every_package_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert config["package-dir"] == {name: folder for folder, name in MAPPED.items()}
    found = {module_name(p) for p in sources("cxr_edge", *MAPPED) if p.name == "__init__.py"}
    assert found == listed


def test_the_cli_names_modules_that_exist():
    """COMMANDS and _needs_train_extra name modules by string: each must be a file of the checkout."""
    text = "".join(p.read_text() for p in sources("cxr_edge/cli"))
    named = set(re.findall(r'"(cxr_edge(?:\.\w+)+)(?::\w+)?"', text))
    assert len(named) > 10
    files = {module_name(p) for p in sources("cxr_edge", *MAPPED)}
    assert named <= files, named - files


@pytest.mark.parametrize("folder", ["cxr_edge", "train", "convert"])
def test_no_module_grows_past_the_limit(folder):
    too_long = {
        str(p.relative_to(REPO)): n
        for p in sources(folder)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"split these by role (at most {MAX_LINES} lines): {too_long}"


def test_the_runtime_runs_without_tensorflow(kit_png):
    """The one "no TensorFlow" check: every runtime module imported, one image predicted, no TF/Keras."""
    modules = sorted(
        module_name(p)
        for p in sources("cxr_edge")
        if not module_name(p).endswith("__main__") and "ray_backend" not in p.name
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "from cxr_edge import Predictor\n"
        f"print(Predictor().predict_file({str(kit_png)!r}).label)\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras', 'keras_tuner') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    label, loaded = done.stdout.strip().splitlines()[-2:]
    assert label and loaded == "[]", loaded


def test_tests_mirror_the_packages():
    """Each test folder is named after the package it tests; only repository-wide checks sit at the top."""
    packages = {p.name for p in (REPO / "cxr_edge").iterdir() if (p / "__init__.py").is_file()}
    packages |= {*MAPPED, "ports"}  # ports: web_demo/ and android_demo/
    tests = REPO / "tests"
    folders = {p.parent.relative_to(tests) for p in tests.rglob("test_*.py")}
    assert {str(f) for f in folders} - {"."} <= packages, "test folders must be named after a package"
    assert {p.name for p in tests.glob("test_*.py")} == {"test_layout.py", "test_docs.py"}
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "test file names must be unique (pytest imports them by name)"


def test_a_runtime_only_install_collects_the_runtime_tests():
    """`pytest -m "not train"` where TensorFlow and Keras cannot be imported (tests/runtime_only.py)."""
    env = {"PYTHONPATH": str(REPO / "tests"), "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "pytest", "-p", "runtime_only", "--collect-only", "-q", "-m", "not train"]
    result = subprocess.run(
        [*args, "-p", "no:cacheprovider", "-o", "addopts=", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(collected) > 300, result.stdout[-2000:]
    assert not any(line.startswith(("tests/train/", "tests/convert/")) for line in collected)


def test_every_public_name_of_a_runtime_package_exists():
    """Each package's ``__all__`` names only what it defines or imports (a star import would fail)."""
    import importlib

    broken = {}
    for init in sorted((REPO / "cxr_edge").rglob("__init__.py")):
        package = importlib.import_module(module_name(init))
        missing = [n for n in getattr(package, "__all__", ()) if not hasattr(package, n)]
        if missing:
            broken[package.__name__] = missing
    assert not broken, broken
