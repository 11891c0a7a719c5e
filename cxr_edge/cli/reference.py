"""``docs/cli.md``: every command's help, generated from the click definitions so that it cannot drift.

    python -m cxr_edge.cli.reference > docs/cli.md      (tests/test_docs.py checks the file is current)

Hidden commands (old names kept for one release) are left out; groups list their subcommands.
"""

from __future__ import annotations

import click

from cxr_edge.cli import main

WIDTH = 100


def _help(command: click.Command, path: list[str], parent: click.Context | None) -> str:
    ctx = click.Context(
        command,
        info_name=path[-1],
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        **main.context_settings,
    )
    return command.get_help(ctx).rstrip()


def _walk(command: click.Command, path: list[str], parent: click.Context | None):
    # The root's settings (``-h``) as a real invocation has them: click caches a command's help option.
    ctx = click.Context(command, info_name=path[-1], parent=parent, **main.context_settings)
    yield path, command, parent
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def render() -> str:
    """The Markdown of docs/cli.md."""
    lines = [
        "# `cxr-edge` command reference",
        "",
        "Generated from the commands themselves (`python -m cxr_edge.cli.reference > docs/cli.md`; a test",
        "keeps it current). How to use them: [usage.md](usage.md), [training.md](training.md),",
        "[serve.md](serve.md), [generalisation.md](generalisation.md).",
        "",
    ]
    entries = list(_walk(main, ["cxr-edge"], None))
    lines += ["| command | what |", "|---|---|"]
    for path, command, _ in entries[1:]:
        anchor = "-".join(path).lower()
        lines.append(f"| [`{' '.join(path)}`](#{anchor}) | {command.get_short_help_str(80)} |")
    for path, command, parent in entries:
        lines += ["", f"## {' '.join(path)}", "", "```text", _help(command, path, parent), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    click.echo(render(), nl=False)
