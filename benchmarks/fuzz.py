"""The fuzz campaign: coverage-guided fuzzing of the reader, the manifest parser and the node (``make fuzz``).

    python -m cxr_edge.benchmarks.fuzz --target reader [--inputs 10000] [--timeout-s 10] [--rss-mb 3072]
                                       [--engine atheris|random] [--work build/fuzz] [--out FILE.json]

Engines. ``atheris`` (the campaign's): libFuzzer led by the coverage of the Python code under test
(cxr_edge and pydicom are instrumented as they are imported), in a child process with libFuzzer's own
per-input time limit (``-timeout``: the input is saved as ``timeout-*`` and the run stops) and RSS limit
(``-rss_limit_mb``: ``oom-*``); a crash stops libFuzzer, so the campaign restarts it on the corpus it
grew until the inputs are run (or ``--max-crashes``). Why atheris and not hypothesis: its inputs are
bytes mutated by libFuzzer and kept when they reach new lines of the reader, pydicom or the codecs'
wrappers, which finds the deep paths (a codestream inside an item inside a pixel data element) that
hypothesis's generators reach only when a strategy spells them out; hypothesis stays for the structured
property tests (``tests/imaging/test_fuzz_reader.py``). ``random`` (the smoke run in ``make test``):
:func:`~cxr_edge.benchmarks.fuzz_targets.mutate` of the seeds, seeded and in this process, the time
limit a ``SIGALRM`` per input.

Every input's outcome is counted (``ok`` or the typed error's class); anything else is a crash: its
input is kept under ``WORK/TARGET/crashes`` (regression tests take them from there, small ones into
tests/data/fuzz/). The summary (``--out``, ``benchmarks/results/fuzz_TARGET.json``): inputs, seconds,
outcomes, crashes with their exception and place, the limits, the engine and its versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import click

#: Modules whose code the fuzzer follows (instrumented on import by atheris).
INSTRUMENTED = ("cxr_edge", "pydicom")
#: Crashes found, reported and not fixable here (their code belongs to another change): each is
#: counted and kept like any crash (``"known": true`` in the summary) but does not stop the fuzzer,
#: which would otherwise meet it again at every restart. (exception, file, function) -> why.
#: (The first entry, Bundle.load letting json's RecursionError through on a deeply nested manifest, is
#: fixed and pinned by tests/benchmarks/test_fuzz_smoke.py.)
KNOWN: dict[tuple[str, str, str], str] = {}
_STATS_EVERY = 100


class Tally:
    """What a run saw: inputs, outcomes, crashes, the slowest input."""

    def __init__(self) -> None:
        self.inputs = 0
        self.outcomes: Counter = Counter()
        self.crashes: list[dict] = []
        self.slowest_s = 0.0

    def add(self, labels: list[str], seconds: float) -> None:
        self.inputs += 1
        self.outcomes.update(labels)
        self.slowest_s = max(self.slowest_s, seconds)

    def crash(self, data: bytes, exc: BaseException, folder: Path | None, kind: str = "crash") -> dict:
        """Records a crash (its input saved under ``folder``); it counts as an input run."""
        self.inputs += 1
        sha = hashlib.sha256(data).hexdigest()
        where = _where(exc)
        entry = {
            "kind": kind,
            "exception": type(exc).__name__,
            "message": str(exc)[:300],
            "where": where,
            "sha256": sha,
            "bytes": len(data),
            "known": is_known(type(exc).__name__, where),
        }
        same = next((c for c in self.crashes if _signature(c) == _signature(entry)), None)
        if same is not None:  # one input per kind of crash (the smallest), counted
            same["count"] = same.get("count", 1) + 1
            if len(data) >= same["bytes"]:
                return same
            if same.get("input"):
                Path(same["input"]).unlink(missing_ok=True)
            same.update(sha256=sha, bytes=len(data), message=entry["message"])
            entry = same
        else:
            self.crashes.append(entry)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{kind}-{sha[:16]}").write_bytes(data)
            entry["input"] = str(folder / f"{kind}-{sha[:16]}")
        return entry

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "outcomes": dict(sorted(self.outcomes.items())),
            "crashes": self.crashes,
            "slowest_s": round(self.slowest_s, 3),
        }

    def merge(self, other: dict) -> None:
        self.inputs += other["inputs"]
        self.outcomes.update(other["outcomes"])
        for crash in other["crashes"]:
            same = next((c for c in self.crashes if _signature(c) == _signature(crash)), None)
            if same is None:
                self.crashes.append(crash)
            else:
                same["count"] = same.get("count", 1) + crash.get("count", 1)
        self.slowest_s = max(self.slowest_s, other["slowest_s"])


def is_known(exception: str, where: str | None) -> bool:
    """Whether a crash is one of :data:`KNOWN` (``where`` as ``file:line in function``)."""
    if not where:
        return False
    file, _, function = where.partition(" in ")
    return (exception, file.split(":")[0], function) in KNOWN


def _signature(crash: dict) -> tuple:
    return crash["kind"], crash["exception"], crash["where"]


def _where(exc: BaseException) -> str | None:
    """The innermost frame in cxr_edge's own code (not the harness), else the innermost one."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    ours = [f for f in frames if "/cxr_edge/" in f.filename.replace("\\", "/")]
    frame = (ours or frames or [None])[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" if frame else None


class _Late(BaseException):  # the alarm; not an Exception, so no handler swallows it
    pass


def run_random(target, inputs: int, seed: int = 0, timeout_s: float = 10.0, crashes: Path | None = None):
    """The smoke engine: ``inputs`` seeded mutations of the target's seeds, in this process.

    Seeds are run first, then mutations of seeds and of inputs that gave a new outcome. Each input runs
    under a ``SIGALRM`` of ``timeout_s`` (main thread only); an input past it is a ``timeout`` crash.

    Returns:
        The :class:`Tally`.
    """
    from cxr_edge.benchmarks.fuzz_targets import mutate

    rng = random.Random(seed)
    pool = list(target.seeds())
    tally = Tally()

    def on_alarm(*_):
        raise _Late(f"input ran past {timeout_s} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        for n in range(inputs):
            data = pool[n] if n < len(pool) else mutate(rng.choice(pool), rng, pool)
            t0 = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
            try:
                labels = target(data)
            except _Late as exc:
                tally.crash(data, exc, crashes, kind="timeout")
                continue
            except Exception as exc:
                tally.crash(data, exc, crashes)
                continue
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            new = any(label not in tally.outcomes for label in labels)
            tally.add(labels, time.perf_counter() - t0)
            if new and n >= len(pool) and len(pool) < 4096:
                pool.append(data)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return tally


# ---------------------------------------------------------------------------------------- atheris


def child(target_name: str, work: str, stats: str, runs: int, libfuzzer_args: list[str]) -> None:
    """The atheris process, started by :func:`run_atheris` through ``python -c`` after :data:`_BOOT`
    imported (and instrumented) the modules under test."""
    import atheris

    from cxr_edge.benchmarks.fuzz_targets import make_target, quiet

    quiet()
    target = make_target(target_name, Path(work))
    tally = Tally()
    crashes = Path(work) / "crashes"
    stats_file = Path(stats)

    def save() -> None:
        stats_file.write_text(json.dumps(tally.to_dict()))

    def one(data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            labels = target(data)
        except Exception as exc:
            entry = tally.crash(data, exc, crashes)
            save()
            if entry["known"]:
                return  # counted; fuzzing goes on past it
            raise
        tally.add(labels, time.perf_counter() - t0)
        if tally.inputs % _STATS_EVERY == 0 or tally.inputs >= runs - _STATS_EVERY:
            save()  # libFuzzer ends the process with exit(): the last inputs are saved one by one

    seeds = Path(work) / "seeds"
    if not seeds.is_dir():
        seeds.mkdir(parents=True)
        for data in target.seeds():
            (seeds / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)
    atheris.Setup([sys.argv[0], *libfuzzer_args, str(Path(work) / "corpus"), str(seeds)], one)
    atheris.Fuzz()


def run_atheris(target: str, inputs: int, work: Path, timeout_s: float, rss_mb: int, seed: int,
                max_crashes: int = 20) -> tuple[Tally, int]:  # fmt: skip
    """Runs atheris children until ``inputs`` inputs ran (restarting after each crash).

    Returns:
        ``(tally, restarts)``.
    """
    tally = Tally()
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    restarts = 0
    while tally.inputs < inputs and sum(c.get("count", 1) for c in tally.crashes) < max_crashes:
        left = inputs - tally.inputs
        stats = work / f"stats-{restarts}.json"
        stats.unlink(missing_ok=True)
        artifacts = work / "crashes"
        artifacts.mkdir(parents=True, exist_ok=True)
        before = set(artifacts.iterdir())
        args = [
            f"-runs={left}",
            f"-timeout={int(max(1, timeout_s))}",
            f"-rss_limit_mb={rss_mb}",
            f"-seed={seed + restarts + 1}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
        ]
        code = _BOOT + (
            "from cxr_edge.benchmarks.fuzz import child\n"
            f"child({target!r}, {str(work)!r}, {str(stats)!r}, {left}, {args!r})\n"
        )
        log = work / f"libfuzzer-{restarts}.log"
        with open(log, "wb") as fh:
            proc = subprocess.run([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT)
        done = json.loads(stats.read_text()) if stats.is_file() else Tally().to_dict()
        recorded = {c["sha256"] for c in done["crashes"]}
        for path in sorted(set(artifacts.iterdir()) - before):
            found = _LIBFUZZER_ARTIFACT.match(path.name)  # not the child's own (kind-16 hex digits)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if not found or sha in recorded:
                continue  # a Python exception the child recorded already
            entry = {"kind": found.group(1), "exception": None, "message": _reason(log), "where": None}
            if entry["kind"] == "crash" and target != "node":
                entry.update(_locate(target, path, work))
            done["crashes"].append({**entry, "sha256": sha, "bytes": path.stat().st_size, "input": str(path)})
        tally.merge(done)
        restarts += 1
        if proc.returncode == 0 or done["inputs"] == 0:
            break  # finished, or a child that could not run at all (see its log)
        _forget([c["sha256"] for c in done["crashes"]], work)  # a seed that crashes would crash again
    return tally, restarts - 1


#: What libFuzzer writes: a crash (a signal: SIGSEGV, SIGFPE...), a timeout, an out-of-memory.
_LIBFUZZER_ARTIFACT = re.compile(r"^(crash|timeout|oom|slow-unit|leak)-([0-9a-f]{40})$")


def _forget(hashes: list[str], work: Path) -> None:
    """Removes the inputs with these SHA-256s from the seeds and the corpus (not from the crashes)."""
    for folder in (work / "seeds", work / "corpus"):
        for path in folder.iterdir() if folder.is_dir() else ():
            if hashlib.sha256(path.read_bytes()).hexdigest() in hashes:
                path.unlink()


#: The child's first lines: the modules under test are imported inside atheris's instrumentation (a
#: module imported before, e.g. by ``cxr_edge/__init__``, would run uninstrumented).
_BOOT = f"""import atheris
with atheris.instrument_imports(include={list(INSTRUMENTED)!r}):
    import pydicom, pydicom.encaps, pydicom.pixels, pydicom.filereader
    import cxr_edge, cxr_edge.imaging.reader, cxr_edge.imaging.isolated, cxr_edge.bundle.folder
    import cxr_edge.serve, cxr_edge.serve.node, cxr_edge.serve.guard
"""


def _reason(log: Path) -> str:
    """libFuzzer's own words on why the child stopped (a deadly signal, a timeout, out of memory)."""
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    said = [x for x in lines if "ERROR: libFuzzer" in x or x.startswith("SUMMARY:") or "Timeout" in x]
    return " | ".join(said or lines[-3:])[:300]


def _locate(target: str, artifact: Path, work: Path) -> dict:
    """Where a native crash happens: the input replayed in a fresh interpreter with ``faulthandler``
    (the signal's name and the innermost cxr_edge frame of the Python stack it prints)."""
    code = (
        "from pathlib import Path\nfrom cxr_edge.benchmarks.fuzz_targets import make_target\n"
        f"make_target({target!r}, Path({str(work / 'replay')!r}))(Path({str(artifact)!r}).read_bytes())\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        return {"exception": "replay timed out"}
    fatal = re.search(r"Fatal Python error: (.+)", proc.stderr)
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', proc.stderr)
    ours = [f for f in frames if "/cxr_edge/" in f[0]]
    where = f"{Path(ours[0][0]).name}:{ours[0][1]} in {ours[0][2]}" if ours else None
    return {"exception": fatal.group(1) if fatal else f"exit status {proc.returncode}", "where": where}


def summary(target: str, engine: str, tally: Tally, seconds: float, **extra) -> dict:
    """The campaign summary of one target (what ``--out`` holds)."""
    versions = {"python": platform.python_version()}
    try:
        from importlib.metadata import version

        for package in ("atheris", "pydicom", "pynetdicom", "imagecodecs"):
            try:
                versions[package] = version(package)
            except Exception:
                continue
    except ImportError:
        pass
    typed = Counter()  # typed errors by class; every other outcome (decoded, classified...) is "ok"
    for label, n in tally.outcomes.items():
        last = label.split(":")[-1].split("/")[0]
        typed[last if last.endswith("Error") else "ok"] += n
    return {
        "target": target,
        "engine": engine,
        **tally.to_dict(),
        "crash_count": len(tally.crashes),  # kinds of crash (exception and place)
        "crash_inputs": sum(c.get("count", 1) for c in tally.crashes),
        "seconds": round(seconds, 1),
        "inputs_per_s": round(tally.inputs / seconds, 1) if seconds else None,
        "by_class": dict(sorted(typed.items())),
        "peak_rss_mb": resource.getrusage(
            resource.RUSAGE_CHILDREN if engine == "atheris" else resource.RUSAGE_SELF
        ).ru_maxrss
        >> 10,
        "versions": versions,
        "date": time.strftime("%Y-%m-%d"),
        **extra,
    }


@click.command()
@click.option("--target", type=click.Choice(["reader", "manifest", "node"]), required=True)
@click.option("--inputs", default=10_000, show_default=True, help="Inputs to run.")
@click.option("--timeout-s", default=10.0, show_default=True, help="Per-input time limit.")
@click.option("--rss-mb", default=3072, show_default=True, help="Memory limit of the fuzzing process.")
@click.option("--engine", type=click.Choice(["atheris", "random"]), default="atheris", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--max-crashes", default=20, show_default=True, help="Stop after this many crashes.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("build/fuzz"), show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Summary JSON.")
def main(target, inputs, timeout_s, rss_mb, engine, seed, max_crashes, work, out) -> None:
    """Fuzzes one target and writes its summary (docs/security.md, "Fuzzing")."""
    folder = work / target
    t0 = time.perf_counter()
    restarts = 0
    if engine == "atheris":
        tally, restarts = run_atheris(target, inputs, folder, timeout_s, rss_mb, seed, max_crashes)
    else:
        from cxr_edge.benchmarks.fuzz_targets import make_target, quiet

        quiet()
        runner = make_target(target, folder)
        try:
            tally = run_random(runner, inputs, seed, timeout_s, folder / "crashes")
        finally:
            runner.close()
    result = summary(target, engine, tally, time.perf_counter() - t0, per_input_limit_s=timeout_s,
                     rss_limit_mb=rss_mb, restarts=restarts, work=str(folder))  # fmt: skip
    text = json.dumps(result, indent=2) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    click.echo(
        f"{target}: {tally.inputs} inputs in {result['seconds']} s, {len(tally.crashes)} crashes; "
        + ", ".join(f"{k} {v}" for k, v in result["by_class"].items())
    )
    for c in tally.crashes:
        known = " (known)" if c.get("known") else ""
        click.echo(f"  {c['kind']}{known}: {c['exception']} at {c['where']}: {c['message'][:120]}", err=True)
    if any(not c.get("known") for c in tally.crashes):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
