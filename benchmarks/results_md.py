"""benchmarks/RESULTS.md in sections: each benchmark rewrites its own, between two HTML comments, and
leaves the rest as it is."""

from __future__ import annotations

from pathlib import Path


def section_markers(name: str) -> tuple[str, str]:
    """The HTML comments around a benchmark's own section of RESULTS.md."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def read_section(text: str, name: str) -> str | None:
    """A benchmark's section of RESULTS.md's ``text``, markers included, or None when it has none."""
    begin, end = section_markers(name)
    if begin not in text or end not in text:
        return None
    return begin + text.split(begin, 1)[1].split(end, 1)[0] + end


def write_section(markdown: Path, section: str, name: str) -> None:
    """Replaces (or appends) a benchmark's section of RESULTS.md, leaving the rest as it is."""
    begin, end = section_markers(name)
    text = markdown.read_text() if markdown.is_file() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    markdown.write_text(text)
