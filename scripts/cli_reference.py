"""Generate the option reference in docs/cli.md from the CLI itself, so it cannot drift.

    python scripts/cli_reference.py          # print it
    python scripts/cli_reference.py --write  # update docs/cli.md between the markers

tests/test_docs.py fails when docs/cli.md differs from what this prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from vidfeat.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
BEGIN = "<!-- BEGIN GENERATED: python scripts/cli_reference.py --write -->"
END = "<!-- END GENERATED -->"


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _arg_usage(arg: Any) -> str:
    name = (arg.name or "").upper() + ("..." if arg.nargs == -1 else "")
    return name if arg.required else f"[{name}]"


def reference() -> str:
    group: Any = typer.main.get_command(app)  # Typer vendors click: duck-typed below
    out = []
    for name, cmd in group.commands.items():
        args = [p for p in cmd.params if p.param_type_name == "argument"]
        opts = [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]
        usage = " ".join(
            [f"vidfeat {name}"] + [_arg_usage(a) for a in args] + (["[OPTIONS]"] if opts else [])
        )
        out += [f"### `vidfeat {name}`", "", _cell(cmd.help).split(". ")[0].rstrip(".") + ".", ""]
        out += ["```text", usage, "```", ""]
        if opts:
            out += ["| option | default | meaning |", "|---|---|---|"]
            for o in opts:
                flags = ", ".join(f"`{f}`" for f in [*o.opts, *o.secondary_opts])
                empty = o.default is None or o.default is False or o.default == () or o.is_flag
                default = "" if empty else f"`{o.default}`"
                out.append(f"| {flags} | {default} | {_cell(o.help)} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def current() -> str:
    text = DOC.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n") + "\n"


def main() -> None:
    ref = reference()
    if "--write" in sys.argv:
        text = DOC.read_text()
        head, tail = text[: text.index(BEGIN) + len(BEGIN)], text[text.index(END) :]
        DOC.write_text(f"{head}\n{ref}{tail}")
    else:
        sys.stdout.write(ref)


if __name__ == "__main__":
    main()
