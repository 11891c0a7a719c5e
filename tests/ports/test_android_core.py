"""The Android demo's platform-independent core (``android_demo/core``, plain Java 17) against Python.

Compiles the core and its JUnit 5 tests with ``javac`` and runs them with the JUnit console launcher
(what ``make android-test`` does). The JVM tests check the committed golden vectors (``tests/golden``)
and extra golden vectors that this module writes with the Python runtime into a temporary folder
(``android_demo/tools/golden_extra.py``: every pipeline stage of the golden samples and synthetic cases
for resize, CLAHE, median, normalisation, quantisation, ensembles, heat maps, lung crop, manifests; signed
bundles, key pairs and Python's trust-policy verdicts, ``android_demo/tools/golden_signature.py``).

Skipped when ``javac``/``java`` (17 or newer) or the JUnit 5 console launcher are missing -- install them
with ``make android-deps`` -- unless ``CXR_EDGE_REQUIRE_JVM=1``, which turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "android_demo" / "core"
GENERATOR = REPO / "android_demo" / "tools" / "golden_extra.py"
JUNIT = Path(os.environ.get("CXR_EDGE_JUNIT", "/usr/share/java/junit-platform-console-standalone.jar"))
TIMEOUT_S = 300


def _java_major(javac: str) -> int:
    out = subprocess.run([javac, "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r"javac (\d+)", out.stdout + out.stderr)
    return int(match.group(1)) if match else 0


@pytest.fixture(scope="module")
def jvm() -> tuple[str, str]:
    """``(javac, java)``; skips (or fails with CXR_EDGE_REQUIRE_JVM=1) when the toolchain is missing."""
    javac, java = shutil.which("javac"), shutil.which("java")
    missing = []
    if javac is None or java is None:
        missing.append("javac/java")
    elif _java_major(javac) < 17:
        missing.append("javac 17 or newer")
    if not JUNIT.is_file():
        missing.append(f"the JUnit 5 console launcher ({JUNIT})")
    if missing:
        reason = f"Android core tests need {' and '.join(missing)}; install them with `make android-deps`"
        if os.environ.get("CXR_EDGE_REQUIRE_JVM") == "1":
            pytest.fail(reason + " (CXR_EDGE_REQUIRE_JVM=1)")
        pytest.skip(reason)
    return javac, java


@pytest.fixture(scope="module")
def golden_extra(jvm, tmp_path_factory) -> Path:
    """The extra golden vectors, written by the Python runtime into a temporary folder."""
    spec = importlib.util.spec_from_file_location("golden_extra", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("golden_extra")
    module.write(folder)
    return folder


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)


def _count(pattern: str, text: str) -> int:
    match = re.search(rf"(\d+) {pattern}", text)
    assert match, f"no '{pattern}' in the launcher summary:\n{text[-3000:]}"
    return int(match.group(1))


def test_android_core_matches_the_python_runtime(jvm, golden_extra, tmp_path):
    javac, java = jvm
    main, test = tmp_path / "main", tmp_path / "test"
    main_sources = sorted(str(p) for p in (CORE / "src" / "main" / "java").rglob("*.java"))
    test_sources = sorted(str(p) for p in (CORE / "src" / "test" / "java").rglob("*.java"))
    common = ["--release", "17", "-encoding", "UTF-8", "-Xlint:all"]
    built = _run([javac, *common, "-Werror", "-d", str(main), *main_sources])
    assert built.returncode == 0, f"the core does not compile:\n{built.stdout}{built.stderr}"
    classpath = f"{main}{os.pathsep}{JUNIT}"
    built = _run([javac, *common, "-d", str(test), "-cp", classpath, *test_sources])
    assert built.returncode == 0, f"the core's tests do not compile:\n{built.stdout}{built.stderr}"

    result = _run(
        [
            java,
            f"-Dcxr.repo={REPO}",
            f"-Dcxr.golden.extra={golden_extra}",
            "-jar",
            str(JUNIT),
            "--class-path",
            f"{main}{os.pathsep}{test}",
            "--scan-class-path",
            "--disable-banner",
            "--disable-ansi-colors",
            "--details=tree",
            "--fail-if-no-tests",
        ]
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"JUnit tests failed:\n{out[-8000:]}"
    # Every test ran: none skipped or aborted (an aborted test is a missing golden file).
    assert _count("tests failed", out) == 0
    assert _count("tests skipped", out) == 0
    assert _count("tests aborted", out) == 0, out[-8000:]
    assert _count("tests successful", out) >= 50
