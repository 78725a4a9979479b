"""Features in and out of the store as plain files: export to ``.npz`` or Parquet, import rows
computed elsewhere (``.npz``, or ``.npy`` with a CSV of ids) into an ``external`` feature set
through the same create-only commits as ``extract``."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vidfeat.errors import InputError, SpecMismatch, StoreError
from vidfeat.store.featureset import FeatureSet
from vidfeat.store.records import VideoRecord
from vidfeat.store.spec import FeatureSetSpec
from vidfeat.store.store import Store, creation_meta

IMPORT_VIDEOS_PER_PART = 64


@dataclass(frozen=True, slots=True)
class Rows:
    """Ragged rows of N videos: video i owns values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray  # (R, D)
    offsets: np.ndarray  # (N+1,) int64
    video_ids: list[str]
    labels: list[str | None]
    splits: list[str | None]
    pts: np.ndarray | None = None  # (R,) seconds; None: not known


# ------------------------------------------------------------------ export


def chosen_ids(fset: FeatureSet, split: str | None, ids_file: str | None) -> list[str] | None:
    """The videos ``--split`` and ``--ids`` keep (None: all)."""
    ids = None
    if ids_file:
        ids = _read_ids(Path(ids_file))
        stored = set(fset.video_ids())
        missing = [v for v in ids if v not in stored]
        if missing:
            raise InputError(
                f"{len(missing)} ids in {ids_file} are not stored in {fset.name!r}, e.g. "
                f"{missing[0]!r}."
            )
    if split is not None:
        splits = fset.splits()
        ids = [v for v in (ids if ids is not None else splits) if splits.get(v) == split]
        if not ids:
            have = sorted({s for s in splits.values() if s}) or ["none"]
            raise InputError(
                f"No stored video of {fset.name!r} has split {split!r} (splits: {', '.join(have)})."
            )
    return ids


def _read_ids(path: Path) -> list[str]:
    """One id per line, or a CSV with a video_id column."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"Cannot read --ids {path}: {e.strerror}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and "video_id" in lines[0].split(","):
        return [row["video_id"] for row in csv.DictReader(lines)]
    return lines


def export_npz(
    fset: FeatureSet, out: Path, video_ids: Sequence[str] | None, seq_len: int | None
) -> int:
    """Write ``out`` (.npz): ragged ``values``, ``offsets``, ``pts``, or with ``seq_len``
    ``X`` (N, T, D) and ``mask`` (N, T) sampled as the trainer evaluates; plus ``video_ids``,
    ``labels``, ``splits`` ("" for none) and ``spec`` (JSON). Returns the videos written."""
    arrays: dict[str, np.ndarray]
    if seq_len:
        seqs = fset.sequences(seq_len, video_ids)
        arrays = {"X": seqs.values, "mask": seqs.mask}
        ids, labels, splits = seqs.video_ids, seqs.labels, seqs.splits
    else:
        loaded = fset.load(video_ids)
        arrays = {"values": loaded.values, "offsets": loaded.offsets, "pts": loaded.pts}
        ids, labels, splits = loaded.video_ids, loaded.labels, loaded.splits
    arrays |= {
        "video_ids": np.array(ids, dtype=np.str_),
        "labels": np.array([x or "" for x in labels], dtype=np.str_),
        "splits": np.array([x or "" for x in splits], dtype=np.str_),
        "spec": np.array(json.dumps(fset.spec.to_json())),
    }
    np.savez(out, allow_pickle=False, **arrays)
    return len(ids)


def export_parquet(
    fset: FeatureSet, out: Path, video_ids: Sequence[str] | None, per: str = "video"
) -> int:
    """Write ``out`` (.parquet): one row per video (``features`` a list of its rows) or per
    frame (``row``, ``pts``, ``features``), with ``video_id``, ``label``, ``split``; the stored
    dtype kept; the spec in the schema metadata. Returns the rows written."""
    if per not in ("video", "frame"):
        raise InputError(f"Invalid --per {per!r}: video or frame.")
    loaded = fset.load(video_ids)
    dim, n = fset.spec.feature_dim, len(loaded.video_ids)
    lengths = np.diff(loaded.offsets)
    flat = pa.array(loaded.values.reshape(-1))
    frames = pa.FixedSizeListArray.from_arrays(flat, dim)
    columns: dict[str, pa.Array]
    if per == "video":
        columns = {
            "video_id": pa.array(loaded.video_ids, pa.string()),
            "label": pa.array(loaded.labels, pa.string()),
            "split": pa.array(loaded.splits, pa.string()),
            "n_rows": pa.array(lengths),
            "features": pa.ListArray.from_arrays(pa.array(loaded.offsets.astype(np.int32)), frames),
        }
    else:
        owner = np.repeat(np.arange(n), lengths)
        columns = {
            "video_id": pa.array(loaded.video_ids, pa.string()).take(pa.array(owner)),
            "label": pa.array(loaded.labels, pa.string()).take(pa.array(owner)),
            "split": pa.array(loaded.splits, pa.string()).take(pa.array(owner)),
            "row": pa.array(np.arange(len(owner)) - loaded.offsets[owner]),
            "pts": pa.array(loaded.pts),
            "features": frames,
        }
    table = pa.table(columns).replace_schema_metadata(
        {"vidfeat_spec": json.dumps(fset.spec.to_json()), "featureset": fset.name}
    )
    pq.write_table(table, out)
    return table.num_rows


# ------------------------------------------------------------------ import


def read_rows(path: Path, meta_csv: Path | None = None) -> Rows:
    """Rows from ``path``: an ``.npz`` with ``values`` + ``offsets`` (ragged, as export
    writes) or ``X`` (N, T, D) [+ ``mask`` (N, T)], with ``video_ids`` [``labels``,
    ``splits``, ``pts``]; or an ``.npy`` of (N, T, D) or (N, D) (one row per video). A
    ``meta_csv`` (video_id[,label,split], in row order) gives or replaces ids and labels."""
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        elif path.suffix == ".npy":
            data = {"X": np.load(path, allow_pickle=False)}
        else:
            raise InputError(f"Cannot import {path}: give an .npz or .npy file.")
    except (OSError, ValueError) as e:
        raise InputError(f"Cannot read {path}: {e}") from None
    values, offsets, pts = _ragged(path, data)
    n = len(offsets) - 1
    ids = [str(x) for x in data.get("video_ids", [])]
    labels: list[str | None] = [str(x) or None for x in data.get("labels", [None] * n)]
    splits: list[str | None] = [str(x) or None for x in data.get("splits", [None] * n)]
    if meta_csv is not None:
        ids, labels, splits = _read_meta(meta_csv, n)
    if len(ids) != n:
        what = f"{len(ids)} video_ids" if ids else "no video_ids"
        raise InputError(
            f"{path} holds {n} videos and {what}: add video_ids to the .npz or pass --meta CSV "
            "(video_id[,label,split], one line per video)."
        )
    if len(labels) != n or len(splits) != n:
        raise InputError(f"{path}: labels or splits do not have one entry per video ({n}).")
    if len(set(ids)) != n:
        dup = next(v for v in ids if ids.count(v) > 1)
        raise InputError(f"{path}: video id {dup!r} appears twice.")
    return Rows(values, offsets, ids, labels, splits, pts)


def _ragged(path: Path, data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, Any]:
    if "values" in data and "offsets" in data:
        values, offsets = data["values"], data["offsets"].astype(np.int64)
        if values.ndim != 2 or offsets[0] != 0 or offsets[-1] != len(values):
            raise InputError(f"{path}: values must be (rows, D) and offsets 0 … rows.")
        if np.any(np.diff(offsets) < 0):
            raise InputError(f"{path}: offsets must not decrease.")
        return values, offsets, data.get("pts")
    if "X" in data:
        x = data["X"]
        if x.ndim == 2:
            x = x[:, None, :]  # one row per video
        if x.ndim != 3:
            raise InputError(f"{path}: X must be (N, T, D) or (N, D), not {x.shape}.")
        mask = data.get("mask", np.ones(x.shape[:2], bool)).astype(bool)
        if mask.shape != x.shape[:2] or np.any(mask[:, 1:] & ~mask[:, :-1]):
            raise InputError(f"{path}: mask must be (N, T), True on each video's first rows.")
        lengths = mask.sum(1)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return x[mask], offsets, None
    keys = ", ".join(sorted(data)) or "none"
    raise InputError(f"{path} has no values+offsets or X array (it has: {keys}).")


def _read_meta(path: Path, n: int) -> tuple[list[str], list[str | None], list[str | None]]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"Cannot read --meta {path}: {e.strerror}") from None
    if not rows or "video_id" not in rows[0]:
        raise InputError(f"--meta {path} needs a header with a video_id column.")
    if len(rows) != n:
        raise InputError(f"--meta {path} has {len(rows)} rows for {n} videos.")
    return (
        [r["video_id"] for r in rows],
        [r.get("label") or None for r in rows],
        [r.get("split") or None for r in rows],
    )


@dataclass(frozen=True, slots=True)
class ImportReport:
    featureset: str
    imported: int
    skipped: int  # already stored with the same rows


def import_rows(
    store: Store,
    name: str,
    rows: Rows,
    source: str,
    dtype: str = "float16",
    part_format: str = "zarr",
    description: str = "",
) -> ImportReport:
    """Commit ``rows`` into feature set ``name`` (kind external, created on first use). A
    video already stored with the same rows is skipped, so an import can be rerun; one stored
    with other rows is refused, naming it (nothing is written then)."""
    dim = int(rows.values.shape[1])
    spec = FeatureSetSpec.external(dim, dtype, source, part_format)
    cast = rows.values.astype(dtype, copy=False)
    if not np.isfinite(cast).all():
        raise InputError(f"{source}: NaN or inf in the features (as {dtype}).")
    pts = rows.pts if rows.pts is not None else np.full(len(cast), np.nan)
    shas = [
        hashlib.sha256(cast[a:b].tobytes() + pts[a:b].astype(np.float64).tobytes()).hexdigest()
        for a, b in zip(rows.offsets[:-1], rows.offsets[1:], strict=True)
    ]
    store.fs.check_writable("featuresets")
    try:
        fset = store.create_featureset(name, spec, extra=creation_meta(description or source))
    except SpecMismatch as e:
        first = str(e).splitlines()[:2]
        raise SpecMismatch(
            f"{' '.join(first)}. To add to it, give the same --source (and --dtype, --format) "
            "it was created with; or import into another NAME."
        ) from None
    cat = fset.catalog(refresh=True)
    stored = set(cat.video_ids())
    before = {
        v: entry.record.sha256
        for v in rows.video_ids
        if v in stored and (entry := cat.get(v)) is not None
    }
    clashes = [v for v, h in zip(rows.video_ids, shas, strict=True) if before.get(v, h) != h]
    if clashes:
        raise StoreError(
            f"{len(clashes)} videos are stored in {name!r} with other rows, e.g. {clashes[0]!r}: "
            "import them into another feature set."
        )
    pending = [i for i, v in enumerate(rows.video_ids) if v not in before]
    for k in range(0, len(pending), IMPORT_VIDEOS_PER_PART):
        chunk = pending[k : k + IMPORT_VIDEOS_PER_PART]
        part_id = "i-" + hashlib.sha256("".join(shas[i] for i in chunk).encode()).hexdigest()[:20]
        with fset.writer(part_id) as w:
            for i in chunk:
                a, b = int(rows.offsets[i]), int(rows.offsets[i + 1])
                record = VideoRecord(
                    video_id=rows.video_ids[i],
                    uri=source,
                    size=int(cast[a:b].nbytes),
                    mtime_ns=0,
                    n_rows=b - a,
                    sha256=shas[i],
                    label=rows.labels[i],
                    split=rows.splits[i],
                )
                w.add_video(record, cast[a:b], pts[a:b], np.arange(b - a))
            w.commit()
    return ImportReport(name, len(pending), len(rows.video_ids) - len(pending))
