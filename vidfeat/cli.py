"""Command line: parse flags → config → one API call → exit code. No logic lives here.

Heavy modules (torch, dask, av) are imported inside commands so ``vidfeat --help`` is instant.
Any VidfeatError becomes ``error: …`` on stderr and exit code 1; bad flags exit with 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from vidfeat import __version__
from vidfeat.errors import VidfeatError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="vidfeat: extract video features into a shared store, then train temporal heads.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidfeat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """vidfeat: extract video features into a shared store, then train temporal heads."""


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers)
    for row in rows:
        table.add_row(*(str(c) for c in row))
    Console().print(table)


# ------------------------------------------------------------------------------ datasets
@app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write OUT/<class>/<video>.<ext>."),
    classes: int = typer.Option(4, help="Number of classes (2-8)."),
    videos_per_class: int = typer.Option(25, help="Videos per class."),
    frames: int = typer.Option(32, help="Frames per video."),
    size: int = typer.Option(128, help="Frame width and height in pixels."),
    fps: int = typer.Option(25, help="Frame rate."),
    codec: str = typer.Option("h264", help="h264 (.mp4), mpeg4 (.avi, like UCF101), vp9 (.webm)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical files."),
    val_fraction: float = typer.Option(0.25, help="Fraction of each class marked split=val."),
) -> None:
    """Write a synthetic labelled dataset whose classes differ only in temporal order."""
    from rich.progress import Progress

    from vidfeat.synth import SynthConfig, make_dataset

    cfg = SynthConfig(classes, videos_per_class, frames, size, fps, codec, seed, val_fraction)
    with Progress(transient=True) as bar:
        task = bar.add_task("synth", total=classes * videos_per_class)
        manifest = make_dataset(out, cfg, progress=lambda: bar.advance(task))
    typer.echo(f"wrote {classes * videos_per_class} videos and {manifest}")


# ------------------------------------------------------------------------------ store
@app.command("ls")
def ls_(store: str = typer.Argument(..., help="Store folder or URL.")) -> None:
    """List feature sets: backbone, sampling, videos, rows, failures, size."""
    from vidfeat.store import open_store, summarize

    st = open_store(store, mode="r")
    rows = []
    for name in st.featuresets():
        s = summarize(st.get_featureset(name))
        rows.append(
            [
                s.name,
                s.backbone,
                s.sampling,
                s.videos,
                s.rows,
                s.failures,
                _human_bytes(s.bytes_on_disk),
            ]
        )
    if not rows:
        typer.echo(f"no feature sets in {st.url}")
        return
    _print_table(["name", "backbone", "sampling", "videos", "rows", "failures", "size"], rows)


@app.command()
def info(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str = typer.Argument(..., help="Feature set name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a feature set's full spec, counts, failures by kind and size on disk."""
    from dataclasses import asdict

    from vidfeat.store import open_store, summarize

    fset = open_store(store, mode="r").get_featureset(name)
    s = summarize(fset)
    doc: dict[str, Any] = {
        "name": name,
        "config_hash": fset.spec.config_hash(),
        "spec": fset.spec.to_json(),
    }
    doc |= {k: v for k, v in asdict(s).items() if k != "name"}
    doc["failures_list"] = [f.to_json() for f in fset.catalog().failures.values()]
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    for key in ("name", "config_hash"):
        typer.echo(f"{key}: {doc[key]}")
    typer.echo("spec:")
    for k, v in doc["spec"].items():
        typer.echo(f"  {k}: {v}")
    typer.echo(f"videos: {s.videos}  rows: {s.rows}  parts: {s.parts}  failures: {s.failures}")
    for kind, n in sorted(s.failures_by_kind.items()):
        typer.echo(f"  {kind}: {n}")
    typer.echo(f"size on disk: {_human_bytes(s.bytes_on_disk)}")


@app.command()
def verify(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str | None = typer.Argument(None, help="Feature set (default: all)."),
) -> None:
    """Check every commit's part: exists, shapes agree with records, no NaN/inf."""
    from vidfeat.store import open_store, verify_store

    problems = verify_store(open_store(store, mode="r"), name)
    for p in problems:
        typer.echo(p)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("ok: no problems found")


@app.command()
def gc(
    store: str = typer.Argument(..., help="Store folder or URL."),
    older_than: str = typer.Option("24h", help="Only remove leftovers older than this."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed."),
) -> None:
    """Remove uncommitted part attempts (left by crashed or losing writers)."""
    from vidfeat.store import gc_store, open_store
    from vidfeat.store.maintenance import parse_age

    removed = gc_store(open_store(store, mode="r"), parse_age(older_than), dry_run)
    verb = "would remove" if dry_run else "removed"
    for r in removed:
        typer.echo(f"{verb} {r}")
    typer.echo(f"{verb} {len(removed)} leftover(s)")


# ------------------------------------------------------------------------------ models
@app.command()
def models(
    all_zoo: bool = typer.Option(True, "--all/--registered", help="Include the torchvision zoo."),
) -> None:
    """List backbones: feature dim, input size, default weights, usable offline now."""
    from vidfeat.models.registry import list_backbones

    rows = [
        [
            i.name,
            i.feature_dim or "-",
            i.input_size,
            i.default_weights,
            "yes" if i.offline_ready else "no",
            i.source,
        ]
        for i in list_backbones(include_zoo=all_zoo)
    ]
    _print_table(["backbone", "dim", "input", "default weights", "offline now", "source"], rows)
    typer.echo("Also: timm:<name> for any timm model (local weights file, or the hub when online).")


def main() -> None:
    try:
        app()
    except VidfeatError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted: committed parts are intact; rerun to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
