"""Command line: parse flags → config → one API call → exit code. No logic lives here.

Heavy modules (torch, dask, av) are imported inside commands so ``vidfeat --help`` is instant.
Any VidfeatError becomes ``error: …`` on stderr and exit code 1; bad flags exit with 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from vidfeat import __version__
from vidfeat.errors import VidfeatError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="vidfeat: extract video features into a shared store, then train temporal heads.",
)


class _Command(TyperCommand):
    """Help without typer's type markers where they mislead: a flag takes no value (no
    ``<bool>``), and the usage line names arguments as ``STORE [FEATURESET]``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = (p.name or "").upper() + ("..." if p.nargs != 1 else "")
                pieces.append(name if p.required else f"[{name}]")
        return pieces


def command(name: str | None = None) -> Callable[[Any], Any]:
    return app.command(name, cls=_Command)


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


def _readable(value: Any) -> str:
    """A value as a person reads it: no ``None``, quotes or braces."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_readable(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        return ", ".join(_readable(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """A table that never cuts a cell: a rich table on a terminal wide enough for it, else
    (piped, or too narrow) plain columns that ``grep`` and ``awk`` read."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cells = [[_readable(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    console = Console()
    if console.is_terminal and sum(widths) + 3 * len(widths) + 1 <= console.width:
        table = Table(*headers)
        for row in cells:
            table.add_row(*(Text(c) for c in row))  # Text: a '[' in a name is not markup
        console.print(table)
        return
    for line in [headers, *cells]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2))


# ------------------------------------------------------------------------------ datasets
@command()
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
@command("ls")
def ls_(
    store: str = typer.Argument(..., help="Store folder or URL."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List feature sets: backbone, sampling, videos, rows, failures, size."""
    from dataclasses import asdict

    from vidfeat.store import open_store, summarize

    st = open_store(store, mode="r")
    summaries = [summarize(st.get_featureset(name)) for name in st.featuresets()]
    if as_json:
        _print_json([asdict(s) for s in summaries])
        return
    if not summaries:
        typer.echo(f"no feature sets in {st.url}")
        return
    rows = [
        [
            s.name,
            s.backbone,
            s.sampling,
            s.videos,
            s.rows,
            s.failures,
            _human_bytes(s.bytes_on_disk),
        ]
        for s in summaries
    ]
    _print_table(["name", "backbone", "sampling", "videos", "rows", "failures", "size"], rows)


FAILURES_SHOWN_PER_KIND = 3
EXTERNAL_SPEC_SHOWN = ("feature_dim", "dtype", "part_format", "kind", "source", "compression")


def _print_provenance(p: dict[str, Any]) -> None:
    import time

    if "created_at" in p:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["created_at"]))
        by = f" by {p['created_by']}" if p.get("created_by") else ""
        typer.echo(f"created: {when}{by} with vidfeat {p.get('vidfeat_version', '?')}")
    for key in ("command", "description", "tags"):
        if p.get(key):
            typer.echo(f"{key}: {_readable(p[key])}")
    if p.get("engine"):
        typer.echo(f"engine (the run that created it): {p['engine']}")


@command()
def info(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str = typer.Argument(..., help="Feature set name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a feature set's full spec, counts, failures (a few reasons per kind) and size."""
    from dataclasses import asdict

    from vidfeat.store import open_store, summarize

    fset = open_store(store, mode="r").get_featureset(name)
    s = summarize(fset)
    failures = fset.catalog().failures()
    doc: dict[str, Any] = {
        "name": name,
        "config_hash": fset.spec.config_hash(),
        "spec": fset.spec.to_json(),
    }
    doc |= fset.provenance
    doc |= {k: v for k, v in asdict(s).items() if k != "name"}
    doc["failures_list"] = [f.to_json() for f in failures]
    if as_json:
        _print_json(doc)
        return
    typer.echo(f"name: {name}")
    typer.echo(f"config hash: {doc['config_hash']}")
    _print_provenance(fset.provenance)
    typer.echo("spec:")
    for k, v in doc["spec"].items():
        if fset.spec.kind == "external" and k not in EXTERNAL_SPEC_SHOWN:
            continue  # image-pipeline fields: empty for features computed elsewhere
        typer.echo(f"  {k.replace('_', ' ')}: {_readable(v)}")
    typer.echo(f"videos: {s.videos}  rows: {s.rows}  parts: {s.parts}  failures: {s.failures}")
    for kind, n in sorted(s.failures_by_kind.items()):
        typer.echo(f"  {kind}: {n}")
        of_kind = [f for f in failures if f.kind == kind]
        for f in of_kind[:FAILURES_SHOWN_PER_KIND]:
            typer.echo(f"    {f.video_id}: {f.message}")
        if len(of_kind) > FAILURES_SHOWN_PER_KIND:
            more = len(of_kind) - FAILURES_SHOWN_PER_KIND
            typer.echo(f"    … and {more} more (--json lists all)")
    typer.echo(f"size on disk: {_human_bytes(s.bytes_on_disk)}")


@command()
def verify(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str | None = typer.Argument(None, help="Feature set (default: all)."),
) -> None:
    """Check every commit's part (exists, shapes agree with records, no NaN/inf) and that the
    newest catalog snapshot equals a rebuild from the commit records."""
    from rich.progress import Progress

    from vidfeat.store import open_store, verify_featureset

    st = open_store(store, mode="r")
    problems: list[str] = []
    with Progress(disable=not sys.stderr.isatty(), transient=True) as bar:
        for fs_name in [name] if name else st.featuresets():
            task = bar.add_task(f"verify {fs_name}", total=None)

            def advance(done: int, total: int, task: Any = task) -> None:
                bar.update(task, completed=done, total=total)

            problems += verify_featureset(st.get_featureset(fs_name), advance)
    for p in problems:
        typer.echo(p)
    if problems:
        typer.echo(f"{len(problems)} problem(s) found", err=True)
        raise typer.Exit(1)
    typer.echo("ok: no problems found")


@command()
def compact(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str | None = typer.Argument(None, help="Feature set (default: all)."),
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Build from every commit record, not the newest snapshot."
    ),
) -> None:
    """Write a catalog snapshot (readers then skip the commit records it covers); without a
    NAME, also upgrades a format 1 store to format 2."""
    from vidfeat.store import compact_store, open_store

    st = open_store(store, mode="r+")
    before = st.version
    for fs_name, manifest in compact_store(st, name, rebuild).items():
        if manifest is None:
            typer.echo(f"{fs_name}: the newest snapshot already covers every commit")
        else:
            s = manifest.stats
            typer.echo(
                f"{fs_name}: snapshot {manifest.seq} of {manifest.commits} commits "
                f"({s.videos} videos, {s.failures} failures, {s.rows} rows)"
            )
    if st.version != before:
        typer.echo(f"upgraded {st.url} from store format {before} to {st.version}")


@command()
def gc(
    store: str = typer.Argument(..., help="Store folder or URL."),
    older_than: str = typer.Option("24h", help="Only remove leftovers older than this."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed."),
) -> None:
    """Remove uncommitted part attempts (left by crashed or losing writers), and catalog
    snapshots replaced by a newer one for longer than --older-than."""
    from vidfeat.store import gc_store, open_store
    from vidfeat.store.maintenance import parse_age

    removed = gc_store(
        open_store(store, mode="r" if dry_run else "r+"), parse_age(older_than), dry_run
    )
    verb = "would remove" if dry_run else "removed"
    for r in removed:
        typer.echo(f"{verb} {r}")
    typer.echo(f"{verb} {len(removed)} leftover(s)")


@command("rm")
def rm_(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str = typer.Argument(..., help="Feature set to delete, with all its data."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a feature set (refused while an extract writes to it)."""
    from vidfeat.errors import ConfigError
    from vidfeat.store import open_store, remove_featureset, summarize

    st = open_store(store, mode="r+")
    s = summarize(st.get_featureset(name))
    what = f"feature set {name} ({s.videos} videos, {_human_bytes(s.bytes_on_disk)}) from {st.url}"
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"Not removing {what} without confirmation: pass --yes.")
        if not typer.confirm(f"Remove {what}?"):
            typer.echo("nothing removed")
            raise typer.Exit(1)
    remove_featureset(st, name)
    typer.echo(f"removed {what}")


@command("export")
def export_(
    store: str = typer.Argument(..., help="Store folder or URL."),
    name: str = typer.Argument(..., help="Feature set."),
    out: Path = typer.Argument(..., help="OUT.npz or OUT.parquet (the suffix picks the format)."),
    split: str | None = typer.Option(None, help="Only videos of this manifest split."),
    ids: str | None = typer.Option(None, help="Only these videos: a file of ids or a CSV."),
    seq_len: int | None = typer.Option(
        None, help=".npz: X (N, T, D) + mask, T rows spread as the trainer evaluates."
    ),
    per: str = typer.Option("video", help=".parquet: one row per video, or per frame."),
) -> None:
    """Write a feature set's rows, ids, labels and splits to .npz or Parquet."""
    from vidfeat.errors import ConfigError
    from vidfeat.store import open_store
    from vidfeat.store.exchange import chosen_ids, export_npz, export_parquet

    fset = open_store(store, mode="r").get_featureset(name)
    chosen = chosen_ids(fset, split, ids)
    if out.suffix == ".npz":
        n = export_npz(fset, out, chosen, seq_len)
        typer.echo(f"wrote {n} videos to {out}")
    elif out.suffix == ".parquet":
        if seq_len:
            raise ConfigError("--seq-len is for .npz; Parquet keeps every row.")
        n = export_parquet(fset, out, chosen, per)
        typer.echo(f"wrote {n} rows (one per {per}) to {out}")
    else:
        raise ConfigError(f"Cannot export to {out}: name it .npz or .parquet.")


@command("import")
def import_(
    store: str = typer.Argument(..., help="Store folder or URL (created if missing)."),
    name: str = typer.Argument(..., help="Feature set to import into (created if missing)."),
    file: Path = typer.Argument(..., help=".npz (values+offsets, or X) or .npy (N, T, D)."),
    meta: Path | None = typer.Option(
        None, help="CSV video_id[,label,split], one line per video in FILE's order."
    ),
    source: str | None = typer.Option(
        None, help="Where the features come from (default: FILE's name); part of the identity."
    ),
    dtype: str = typer.Option("float16", help="Stored dtype: float16 or float32."),
    format: str = typer.Option("zarr", "--format", help="Part format: zarr or hdf5."),
    description: str | None = typer.Option(None, help="Free text recorded with the set."),
) -> None:
    """Bring features computed elsewhere into a feature set of kind external."""
    from vidfeat.store import open_store
    from vidfeat.store.exchange import import_rows, read_rows

    rows = read_rows(file, meta)
    report = import_rows(
        open_store(store, mode="a"),
        name,
        rows,
        source or file.name,
        dtype,
        format,
        description or "",
    )
    typer.echo(
        f"{name}: imported {report.imported} videos"
        + (f", {report.skipped} already stored" if report.skipped else "")
    )


# ------------------------------------------------------------------------------ extract
def _count_flag(key: str, value: str | None) -> int | str | None:
    """``--workers 4`` → 4, ``auto`` stays; anything else is one error line."""
    from vidfeat.errors import ConfigError

    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        flag = "--" + key.replace("_", "-")
        raise ConfigError(f"Invalid {flag} ({value!r}): must be a whole number or auto.") from None


@command()
def extract(
    inputs: list[str] | None = typer.Argument(
        None, help="Video files, folders, globs, CSV/JSONL manifests."
    ),
    store: str | None = typer.Option(None, "--store", "-s", help="Feature store folder or URL."),
    name: str | None = typer.Option(
        None, help="Feature set name (default: derived from the config hash)."
    ),
    format: str | None = typer.Option(
        None, "--format", help="Part format: zarr (default) or hdf5."
    ),
    dtype: str | None = typer.Option(None, help="Stored dtype: float16 (default) or float32."),
    frames: int | None = typer.Option(
        None, help="N frames spread evenly over each video (default 16)."
    ),
    fps: float | None = typer.Option(None, help="Sample F frames per second instead."),
    stride: int | None = typer.Option(None, help="Every K-th frame instead."),
    all_frames: bool | None = typer.Option(None, "--all", help="Every frame."),
    max_frames: int | None = typer.Option(None, help="Cap rows per video (evenly thinned)."),
    stream: int | None = typer.Option(
        None,
        metavar="N",
        help="Decode the container's stream N (as ffprobe numbers them) instead of the main "
        "video stream FFmpeg picks; recorded in the feature set's identity.",
    ),
    backbone: list[str] | None = typer.Option(
        None,
        help="Backbone (see `vidfeat models`); default efficientnet_lite0. Repeat for one "
        "feature set per backbone from a single decode of each video.",
    ),
    weights: list[str] | None = typer.Option(
        None,
        help="DEFAULT, a weight enum name, none, or a file (with several --backbone: once "
        "per backbone, in order).",
    ),
    preprocess: list[str] | None = typer.Option(
        None,
        help="For a weights file: the reference transform it was trained with, a torchvision "
        "weights enum (IMAGENET1K_V1) or a timm pretrained tag (default: the family's classic "
        "recipe, torchvision's V1 / timm's default). Once per --backbone, like --weights.",
    ),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
    precision: str | None = typer.Option(
        None,
        help="auto (float32 on the CPU, bfloat16 on CUDA), float32, bfloat16 or float16. "
        "bfloat16 pays only with bf16 units (GPUs, CPUs with AMX / AVX512-BF16); elsewhere it "
        "is emulated and several times slower (docs/performance.md).",
    ),
    batch_size: str | None = typer.Option(
        None,
        metavar="N|auto",
        help="Frames per backbone batch (default auto: 16 on the CPU; on CUDA probed once per "
        "backbone and GPU, then cached).",
    ),
    hwaccel: str | None = typer.Option(
        None,
        help="none (default) or cuda: decode on the GPU's video engines where FFmpeg can; "
        "each video records its decoder, and why software was used when it was.",
    ),
    resize_on: str | None = typer.Option(
        None,
        help="host (default: the decoder resizes and crops) or device: frames travel at a "
        "bounded size and the backbone's device resizes and crops them (a different feature "
        "set: its values differ slightly).",
    ),
    engine: str | None = typer.Option(
        None,
        help="auto (default: OpenVINO on the CPU where it is installed, converts the backbone "
        "and matches eager torch at load time; else torch, with the reason printed), torch or "
        "openvino.",
    ),
    workers: str | None = typer.Option(
        None,
        metavar="N|auto",
        help="Local Dask worker processes (default auto: 1 on the CPU, one per GPU on CUDA).",
    ),
    scheduler: str | None = typer.Option(None, help="Address of an existing Dask scheduler."),
    connect_timeout: float | None = typer.Option(
        None, help="Seconds to try reaching --scheduler (default 30)."
    ),
    label_from: str | None = typer.Option(
        None,
        help="auto (default: a manifest's labels; for folders, the class subfolder's name, "
        "as in the UCF101 layout), manifest, parent (the folder a video sits in) or none.",
    ),
    retry_failed: bool | None = typer.Option(
        None, "--retry-failed", help="Retry videos that failed before."
    ),
    update: bool | None = typer.Option(
        None,
        "--update",
        help="Replace stored videos whose file content changed (else a conflict, refused).",
    ),
    strict: bool | None = typer.Option(
        None, "--strict", help="Exit 1 if any input video is failed in the feature set."
    ),
    report: str | None = typer.Option(None, help="Write a JSON run report here."),
    decode_threads: str | None = typer.Option(
        None,
        metavar="N|auto",
        help="Decoder processes per worker (default auto: 2 on the CPU; on CUDA the worker's "
        "cores less one).",
    ),
    videos_per_part: int | None = typer.Option(None, help="Videos per part (default: balanced)."),
    timeout: float | None = typer.Option(
        None, help="Per-video decode timeout, seconds (default 600)."
    ),
    description: str | None = typer.Option(
        None, help="Free text recorded with a feature set this run creates (see `info`)."
    ),
    tag: list[str] | None = typer.Option(
        None, "--tag", help="A tag recorded with a feature set this run creates (repeat)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file with any of these options."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Extract features from videos into a feature set (resumable, fault tolerant)."""
    flags = dict(locals())  # before the imports below add names to locals()
    flags.pop("config"), flags.pop("quiet")
    for key in ("workers", "decode_threads", "batch_size"):
        flags[key] = _count_flag(key, flags[key])
    from vidfeat.config import read_config_file
    from vidfeat.options import EXTRACT_KEYS, build_extract_config, extract_options
    from vidfeat.pipeline.runner import extract as run_extract

    file_values = read_config_file(config) if config else {}
    cfg = build_extract_config(extract_options(EXTRACT_KEYS, file_values, flags, str(config)))
    try:
        rep = run_extract(cfg, progress=not quiet)
    except KeyboardInterrupt:  # Typer would exit 130 silently
        typer.echo("interrupted: committed parts are intact; rerun to resume", err=True)
        raise typer.Exit(130) from None
    reports = [rep, *rep.also]  # one per --backbone, from one decode
    for r in reports:
        skipped = f", {r.videos_skipped} already stored" if r.videos_skipped else ""
        typer.echo(
            f"{r.featureset}: {r.videos_done} videos, {r.rows} rows, {len(r.failures)} failed"
            f"{skipped} in {r.wall_s:.1f} s ({r.frames_per_s:.1f} frames/s) → {r.store}"
        )
        if r.videos_same_content:
            typer.echo(f"  {r.videos_same_content} changed files have the stored bytes: kept")
        if r.snapshot_note:
            typer.echo(f"  note: {r.snapshot_note}", err=True)
    if rep.hwaccel != "none":
        _echo_hwaccel(rep)
    for line in rep.refused_workers:  # joined with another backbone: given no part
        typer.echo(f"  refused worker {line}", err=True)
    failures = list({f.video_id: f for r in reports for f in r.failures}.values())
    for f in failures[:20]:
        typer.echo(f"  failed {f.video_id}: {f.kind}: {f.message}", err=True)
    if len(failures) > 20:
        typer.echo(f"  … and {len(failures) - 20} more (see `vidfeat info`)", err=True)
    failed_inputs = {i for r in reports for i in r.failed_inputs}
    earlier = sorted(failed_inputs - {f.video_id for f in failures})
    if earlier:
        shown = ", ".join(earlier[:10]) + (" …" if len(earlier) > 10 else "")
        typer.echo(
            f"  {len(earlier)} inputs failed in earlier runs: {shown} (--retry-failed retries)",
            err=True,
        )
    if cfg.strict and failed_inputs:
        raise typer.Exit(1)


def _echo_hwaccel(rep: Any) -> None:
    """How many videos the GPU decoded, and why the others were not (grouped reasons)."""
    from collections import Counter

    total = rep.videos_hw_decoded + len(rep.decode_fallbacks)
    typer.echo(f"  decoded on {rep.hwaccel}: {rep.videos_hw_decoded} of {total} videos")
    reasons = Counter(line.split(": ", 1)[1] for line in rep.decode_fallbacks)
    for why, n in reasons.most_common(5):
        typer.echo(f"  {n} in {why}", err=True)


# ------------------------------------------------------------------------------ train
def _only_featureset(store: str) -> str:
    """The feature set of a store that holds exactly one (said on stderr), else an error."""
    from vidfeat.errors import ConfigError
    from vidfeat.store import open_store

    names = open_store(store, mode="r").featuresets()
    if len(names) == 1:
        typer.echo(f"feature set: {names[0]} (the only one in {store})", err=True)
        return names[0]
    listing = ", ".join(names) if names else "none"
    raise ConfigError(f"{store} holds {len(names)} feature sets ({listing}): name one.")


def _train_config(
    store: str, featureset: str | None, values: dict[str, Any], config: Path | None
) -> Any:
    from vidfeat.config import TrainConfig, build, field_names, merge_options, read_config_file
    from vidfeat.options import check_dataclass_values

    featureset = featureset or _only_featureset(store)
    file_values = read_config_file(config) if config else {}
    merged = merge_options(field_names(TrainConfig), file_values, values, str(config))
    check_dataclass_values(TrainConfig, file_values, str(config))
    return build(TrainConfig, {"store": store, "featureset": featureset, **merged})


@command("train")
def train_cmd(
    store: str = typer.Argument(..., help="Feature store."),
    featureset: str | None = typer.Argument(
        None, help="Feature set name (see `vidfeat ls`); optional when the store holds one."
    ),
    head: str | None = typer.Option(
        None, help="meanpool, lstm, bilstm, attention, gru, transformer, seed."
    ),
    hidden: int | None = typer.Option(None, help="Hidden size (default 256)."),
    layers: int | None = typer.Option(None, help="Recurrent/transformer layers (default 1)."),
    bidirectional: bool | None = typer.Option(None, "--bidirectional", help="Bidirectional RNN."),
    dropout: float | None = typer.Option(None, help="Dropout (default 0.3)."),
    layer_norm: bool | None = typer.Option(None, "--layer-norm", help="LayerNorm on the inputs."),
    seq_len: int | None = typer.Option(None, help="Rows per clip T (default 16)."),
    sampling: str | None = typer.Option(
        None,
        help="Training rows of a clip: segment (default: a random row in each of T equal "
        "segments, the span evaluation sees) or crop (a random run of T neighbouring rows).",
    ),
    rows_from: str | None = typer.Option(
        None,
        help="Where training reads rows: auto (default: memory when the set fits), memory "
        "(loaded once) or disk (read on demand from the parts, for sets larger than memory).",
    ),
    epochs: int | None = typer.Option(None, help="Max epochs (default 30)."),
    batch_size: int | None = typer.Option(None, help="Clips per batch (default 32)."),
    lr: float | None = typer.Option(None, help="AdamW learning rate (default 1e-3)."),
    weight_decay: float | None = typer.Option(None, help="AdamW weight decay (default 0.01)."),
    warmup_epochs: int | None = typer.Option(
        None, help="Epochs of linear learning-rate warmup (default 1)."
    ),
    schedule: str | None = typer.Option(
        None, help="Learning rate after warmup: cosine (default, decays to 0) or constant."
    ),
    grad_clip: float | None = typer.Option(
        None, help="Clip the gradient norm to this (default 1.0)."
    ),
    attention_heads: int | None = typer.Option(
        None, help="Heads of the transformer head's attention (default 4)."
    ),
    label_smoothing: float | None = typer.Option(None, help="Label smoothing (default 0)."),
    class_weights: bool | None = typer.Option(
        None, "--class-weights", help="Weight classes by inverse frequency."
    ),
    patience: int | None = typer.Option(
        None, help="Early-stopping patience in epochs (default 10; 0: never stop early)."
    ),
    val_fraction: float | None = typer.Option(
        None, help="Validation fraction without split info (0.2)."
    ),
    split_file: str | None = typer.Option(
        None, help="UCF101 trainlist/testlist file or CSV video_id,split."
    ),
    group_pattern: str | None = typer.Option(
        None, help="Regex of a group kept on one side, e.g. '_g[0-9]+_'."
    ),
    labels: str | None = typer.Option(
        None, help="CSV video_id,label overriding the stored labels."
    ),
    pca: int | None = typer.Option(None, help="PCA to k dims (fitted on the training split)."),
    seed: int | None = typer.Option(None, help="Random seed (default 0)."),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
    runs_dir: str | None = typer.Option(None, help="Where runs go (default ./runs)."),
    name: str | None = typer.Option(None, help="Run directory name."),
    mlflow: bool | None = typer.Option(
        None, "--mlflow", help="Also log to MLflow at MLFLOW_TRACKING_URI (vidfeat[mlflow])."
    ),
    tensorboard: bool | None = typer.Option(
        None, "--tensorboard", help="Also write TensorBoard events into the run directory."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file with any of these options."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every epoch."),
) -> None:
    """Train a temporal head on a cached feature set; writes a run directory."""
    values = {
        k: v for k, v in locals().items() if k not in ("store", "featureset", "config", "verbose")
    }
    from vidfeat.trainer.loop import train

    cfg = _train_config(store, featureset, values, config)
    try:
        res = train(cfg, verbose=verbose)
    except KeyboardInterrupt:
        typer.echo("interrupted before the first epoch ended: nothing saved", err=True)
        raise typer.Exit(130) from None
    m = res.metrics
    typer.echo(
        f"{cfg.head}: val top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}  "
        f"macro-F1 {m['macro_f1']:.3f}  "
        f"(best epoch {res.best_epoch}, {res.seconds:.1f} s) → {res.run_dir}"
    )
    if res.interrupted:
        typer.echo(
            f"interrupted after {m['epochs_run']} epoch(s): the best so far (epoch "
            f"{res.best_epoch}) is saved in {res.run_dir}, marked interrupted",
            err=True,
        )
        raise typer.Exit(130)


@command()
def runs(
    runs_dir: str = typer.Argument("runs", help="Runs folder."),
    featureset: str | None = typer.Option(
        None,
        "--featureset",
        help="Only runs on this feature set (runs on different ones do not compare).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Leaderboard of training runs, best validation accuracy first, with the feature set and
    validation split each was scored on."""
    from vidfeat.trainer.runs import leaderboard

    entries = [e for e in leaderboard(runs_dir) if featureset in (None, e.get("featureset"))]
    if as_json:
        _print_json(entries)
        return
    if not entries:
        typer.echo(f"no runs on feature set {featureset} in {runs_dir}")
        return
    rows = [
        [
            e["head"],
            e["hidden"],
            e["lr"],
            e["seq_len"],
            f"{e['val_top1']:.3f}",
            f"{e['macro_f1']:.3f}",
            e["best_epoch"],
            e["seconds"],
            e.get("featureset", "-"),
            e.get("split", "-"),
            Path(e["run"]).name + (" (interrupted)" if e.get("interrupted") else ""),
        ]
        for e in entries
    ]
    headers = ["head", "hidden", "lr", "T", "val top-1", "macro-F1", "epoch", "s"]
    _print_table([*headers, "featureset", "split", "run"], rows)


@command("sweep")
def sweep_cmd(
    store: str = typer.Argument(..., help="Feature store."),
    featureset: str | None = typer.Argument(
        None, help="Feature set name; optional when the store holds one."
    ),
    grid: list[str] = typer.Option(
        ..., "--grid", help="key=v1,v2 (repeat): e.g. head=lstm,meanpool"
    ),
    epochs: int | None = typer.Option(None, help="Max epochs per run."),
    runs_dir: str | None = typer.Option(None, help="Where runs go (default ./runs)."),
    seed: int | None = typer.Option(None, help="Random seed."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Configs trained in parallel processes."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file with the base training options (as train takes)."
    ),
    mlflow: bool | None = typer.Option(None, "--mlflow", help="Log every run to MLflow."),
    tensorboard: bool | None = typer.Option(
        None, "--tensorboard", help="TensorBoard events in every run directory."
    ),
) -> None:
    """Run every combination of a grid on features loaded once; print the leaderboard."""
    from vidfeat.trainer.sweep import parse_grid, sweep

    items = [g for item in grid for g in item.split()]
    base = {"epochs": epochs, "runs_dir": runs_dir, "seed": seed}
    base |= {"mlflow": mlflow, "tensorboard": tensorboard}
    cfg = _train_config(store, featureset, base, config)
    configs = parse_grid(items)
    typer.echo(f"sweep: {len(configs)} configs, {jobs} job(s)")

    def report(overrides: dict[str, Any], result: Any) -> None:
        label = ", ".join(f"{k}={v}" for k, v in overrides.items())
        typer.echo(f"  done  {label}: val top-1 {result.metrics['top1']:.3f}")

    swept = sweep(cfg, configs, jobs=jobs, on_result=report)
    typer.echo(
        f"features loaded once in {swept.load_seconds:.1f} s; "
        f"sweep took {swept.total_seconds:.1f} s in all"
    )
    results = swept.results
    rows = [
        [
            ", ".join(f"{k}={v}" for k, v in o.items()),
            f"{r.metrics['top1']:.3f}",
            f"{r.metrics['macro_f1']:.3f}",
            f"{r.seconds:.1f}",
            r.run_dir.name,
        ]
        for o, r in sorted(results, key=lambda t: -t[1].metrics["top1"])
    ]
    _print_table(["config", "val top-1", "macro-F1", "s", "run"], rows)


@command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    split: str = typer.Option("val", "--split", help="Clips to score: val, train or all."),
    split_file: str | None = typer.Option(
        None, "--split-file", help="Another split definition (UCF101 testlist or CSV)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-evaluate a run from the store, on its validation split by default."""
    from vidfeat.predict import evaluate_run

    m = evaluate_run(run, split, split_file)
    if as_json:
        typer.echo(json.dumps(m, indent=2))
        return
    typer.echo(
        f"{split} top-1 {m['top1']:.3f}  top-5 {m['top5']:.3f}  "
        f"macro-F1 {m['macro_f1']:.3f}  (n={m['n']})"
    )


@command()
def predict(
    run: Path = typer.Argument(..., help="Run directory."),
    videos: list[str] = typer.Argument(
        ..., help="Video files, folders, globs, CSV/JSONL manifests (as extract takes)."
    ),
    top_k: int = typer.Option(3, "--top-k", help="Labels to show (at least 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    engine: str = typer.Option(
        "auto",
        help="auto, torch or openvino, as for extract; where the run's feature set was computed "
        "with one engine's own values (bfloat16, --dtype float32), that engine.",
    ),
) -> None:
    """Extract videos with the run's feature-set spec, apply the head, print top-k labels.
    Exits 1 when any video could not be predicted."""
    from vidfeat.predict import predict_videos

    out = predict_videos(run, videos, top_k, engine)
    failed = [item for item in out if "error" in item]
    if as_json:
        _print_json(out)
    else:
        for item in out:
            if "error" in item:
                typer.echo(f"{item['video']}: failed: {item['error']}", err=True)
                continue
            preds = "  ".join(f"{p['label']} {p['prob']:.3f}" for p in item["top"])
            typer.echo(f"{item['video']}: {preds}")
    if failed:
        typer.echo(f"error: {len(failed)} of {len(out)} videos could not be predicted", err=True)
        raise typer.Exit(1)


# ------------------------------------------------------------------------------ models
@command()
def models(
    all_zoo: bool = typer.Option(
        True,
        "--all/--registered",
        help="--all (default): also every torchvision classification model; --registered: "
        "only vidfeat's own registry.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List backbones: feature dim, input size, default weights, usable offline now."""
    from dataclasses import asdict

    from vidfeat.models.factory import list_backbones

    found = list_backbones(include_zoo=all_zoo)
    if as_json:
        _print_json([asdict(i) for i in found])
        return
    rows = [
        [
            i.name,
            i.feature_dim or "-",
            i.input_size,
            i.default_weights,
            "yes" if i.offline_ready else "no",
            i.source,
        ]
        for i in found
    ]
    _print_table(["backbone", "dim", "input", "default weights", "offline now", "source"], rows)
    typer.echo("Also: timm:<name> for any timm model (local weights file, or the hub when online).")


def main() -> None:
    try:
        app()
    except VidfeatError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except OSError as e:  # a path the user gave that the system refuses (permissions, space)
        if os.environ.get("VIDFEAT_DEBUG"):
            raise
        where = f": {e.filename}" if e.filename else ""
        typer.echo(
            f"error: {e.strerror or e}{where} (check the path; VIDFEAT_DEBUG=1 shows where)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
