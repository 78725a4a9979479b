"""Catalog snapshots: numbered, create-only Parquet files that stand in for the commits they
cover (store format 2, docs/store-format.md).

    snapshots/<seq>-<attempt>/videos.parquet   the winner of every video id, sorted by id
    snapshots/<seq>-<attempt>/parts.parquet    every commit the snapshot covers
    snapshots/<seq>.json                       the manifest: created last, create-only

As with parts and commits, the data files are written under a unique attempt name and only the
manifest's create-only write makes them count: two compactions racing for one number leave one
manifest, a killed one leaves files that no manifest names (``gc`` removes them).
"""

from __future__ import annotations

import bisect
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidfeat.errors import StoreError
from vidfeat.hashing import file_sha256
from vidfeat.store.arrow import from_values
from vidfeat.store.catalog import CORE, VIDEO_SCHEMA, Stats, find_sorted
from vidfeat.store.fs import StoreFS
from vidfeat.store.records import CommitRecord
from vidfeat.version import __version__

SNAPSHOTS = "snapshots"
MANIFEST_FORMAT = "vidfeat-catalog-snapshot"
ROW_GROUP_ROWS = 16384  # a point lookup decodes one group of this many rows
# Few distinct values: read as indices into one dictionary (4 bytes a video in memory).
DICTIONARY_COLUMNS = ["part_id", "part_path", "label", "split", "kind", "codec"]
_MANIFEST = re.compile(r"^(\d{8})\.json$")

PARTS_SCHEMA = pa.schema(
    [
        ("part_id", pa.string()),
        ("attempt", pa.string()),
        ("path", pa.string()),
        ("part_format", pa.string()),
        ("n_rows", pa.int64()),
        ("n_videos", pa.int64()),
        ("n_failures", pa.int64()),
        ("committed_at", pa.float64()),
        ("part_bytes", pa.int64()),
        ("host", pa.string()),
        ("vidfeat_version", pa.string()),
        ("layout", pa.string()),  # the commit's layout as JSON ("" if none)
    ]
)


def parts_table(commits: Sequence[CommitRecord]) -> pa.Table:
    columns: dict[str, list[Any]] = {
        "part_id": [c.part_id for c in commits],
        "attempt": [c.attempt for c in commits],
        "path": [c.path for c in commits],
        "part_format": [c.part_format for c in commits],
        "n_rows": [c.n_rows for c in commits],
        "n_videos": [len(c.videos) for c in commits],
        "n_failures": [len(c.failures) for c in commits],
        "committed_at": [c.committed_at for c in commits],
        "part_bytes": [c.part_bytes for c in commits],
        "host": [c.host for c in commits],
        "vidfeat_version": [c.vidfeat_version for c in commits],
        "layout": [_compact_json(c.layout) if c.layout else "" for c in commits],
    }
    arrays = [from_values(columns[f.name], f.type) for f in PARTS_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=PARTS_SCHEMA)


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: str  # relative to the feature set folder
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    seq: int
    attempt: str
    created_at: float
    videos: SnapshotFile
    parts: SnapshotFile
    commits: int
    stats: Stats
    part_bytes: int
    row_group_first_ids: tuple[str, ...]
    vidfeat_version: str = __version__

    def to_json(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "version": 1} | asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        if d.get("format") != MANIFEST_FORMAT or int(d.get("version", 0)) != 1:
            raise StoreError(f"not a version 1 {MANIFEST_FORMAT} manifest")
        try:
            return cls(
                seq=int(d["seq"]),
                attempt=str(d["attempt"]),
                created_at=float(d["created_at"]),
                videos=SnapshotFile(**d["videos"]),
                parts=SnapshotFile(**d["parts"]),
                commits=int(d["commits"]),
                stats=Stats(**d["stats"]),
                part_bytes=int(d["part_bytes"]),
                row_group_first_ids=tuple(str(i) for i in d["row_group_first_ids"]),
                vidfeat_version=str(d.get("vidfeat_version", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"malformed snapshot manifest: {e}") from None


def _compact_json(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def manifest_name(seq: int) -> str:
    return f"{SNAPSHOTS}/{seq:08d}.json"


def is_manifest(name: str) -> bool:
    return _MANIFEST.match(name) is not None


def snapshot_folder(m: Manifest) -> str:
    """The folder of a snapshot's files, relative to the feature set."""
    return f"{SNAPSHOTS}/{m.seq:08d}-{m.attempt}"


def manifest_seqs(fs: StoreFS, prefix: str) -> list[int]:
    """Numbers of the published snapshots, oldest first."""
    names = fs.listdir(f"{prefix}/{SNAPSHOTS}")
    return sorted(int(m.group(1)) for n in names if (m := _MANIFEST.match(n)))


def read_manifest(fs: StoreFS, prefix: str, seq: int) -> Manifest:
    rel = f"{prefix}/{manifest_name(seq)}"
    try:
        return Manifest.from_json(json.loads(fs.read_bytes(rel)))
    except (ValueError, StoreError) as e:
        raise StoreError(
            f"Snapshot manifest {fs.url}/{rel} is unreadable: {e}. Run `vidfeat compact` to "
            "write a new snapshot from the commit records."
        ) from None


class Snapshot:
    """An open snapshot: its manifest, the covered parts, and the videos file."""

    def __init__(self, fs: StoreFS, prefix: str, manifest: Manifest) -> None:
        self.manifest = manifest
        self.stats = manifest.stats
        where = f"{fs.url}/{prefix}/{manifest_name(manifest.seq)}"
        self._where = where
        self._videos = _open(fs, prefix, manifest.videos, where, DICTIONARY_COLUMNS)
        self.parts = self._read(_open(fs, prefix, manifest.parts, where).read)
        self.covered = frozenset(self.parts["part_id"].to_pylist())
        self._first_ids = list(manifest.row_group_first_ids)
        if len(self._first_ids) != self._videos.num_row_groups:
            raise StoreError(f"{where}: row group index disagrees with its videos file")
        self._groups: dict[tuple[int, bool], pa.Table] = {}
        self._columns: dict[tuple[str, ...], pa.Table] = {}

    def find(self, video_id: str, columns: Sequence[str]) -> pa.Table | None:
        """The one row of ``video_id`` (a table of length 1), or None."""
        g = bisect.bisect_right(self._first_ids, video_id) - 1
        if g < 0:
            return None
        full = any(c not in CORE for c in columns)
        group = self._groups.get((g, full))
        if group is None:
            names = None if full else list(CORE)
            group = self._read(lambda: self._videos.read_row_group(g, columns=names))
            self._groups[(g, full)] = group
        i = find_sorted(group["video_id"], video_id)
        return group.slice(i, 1) if i is not None else None

    def columns(self, names: Sequence[str]) -> pa.Table:
        key = tuple(names)
        if key not in self._columns:
            table = self._read(lambda: self._videos.read(columns=list(names)))
            self._columns[key] = table.combine_chunks()
        return self._columns[key]

    def read_all(self) -> pa.Table:
        """Every column, strings plain (as VIDEO_SCHEMA)."""
        return self._read(self._videos.read).cast(VIDEO_SCHEMA).combine_chunks()

    def _read(self, read: Callable[[], pa.Table]) -> pa.Table:
        try:
            return read()
        except (OSError, pa.ArrowException) as e:  # a page checksum, a truncated file
            raise StoreError(
                f"{self._where}: the snapshot's data is damaged ({e}). Run `vidfeat compact "
                "--rebuild` on the store to write a new one from the commit records."
            ) from None


def _open(
    fs: StoreFS, prefix: str, f: SnapshotFile, where: str, dictionary: Sequence[str] = ()
) -> pq.ParquetFile:
    try:
        local = fs.local_copy(f"{prefix}/{f.path}")
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: {f.path} is missing") from None
    if local.stat().st_size != f.bytes:
        raise StoreError(
            f"{where}: {f.path} has {local.stat().st_size} bytes, the manifest says {f.bytes}. "
            "Run `vidfeat compact --rebuild` on the store to write a new snapshot."
        )
    try:
        return pq.ParquetFile(
            local,
            memory_map=True,
            page_checksum_verification=True,
            read_dictionary=dictionary,
        )
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{where}: {f.path} is unreadable: {e}") from None


def write_snapshot(
    fs: StoreFS,
    prefix: str,
    seq: int,
    videos: pa.Table,
    parts: pa.Table,
    stats: Stats,
) -> Manifest | None:
    """Write snapshot ``seq``; None if another process published that number first."""
    attempt = uuid.uuid4().hex[:12]
    folder = f"{SNAPSHOTS}/{seq:08d}-{attempt}"  # snapshot_folder() of its manifest
    written: dict[str, SnapshotFile] = {}
    first_ids: list[str] = []
    try:
        for name, table in (("videos", videos.cast(VIDEO_SCHEMA)), ("parts", parts)):
            rel = f"{folder}/{name}.parquet"
            staged = fs.staging_path(f"{prefix}/{rel}")
            staged.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                table.combine_chunks(),
                staged,
                compression="zstd",
                row_group_size=ROW_GROUP_ROWS,
                write_page_checksum=True,
            )
            if name == "videos":
                first_ids = _first_ids(staged, table)
            written[name] = SnapshotFile(rel, staged.stat().st_size, file_sha256(staged))
            fs.publish(f"{prefix}/{rel}", staged)
        manifest = Manifest(
            seq=seq,
            attempt=attempt,
            created_at=time.time(),
            videos=written["videos"],
            parts=written["parts"],
            commits=parts.num_rows,
            stats=stats,
            part_bytes=int(pc.sum(parts["part_bytes"]).as_py() or 0),
            row_group_first_ids=tuple(first_ids),
        )
        data = json.dumps(manifest.to_json(), separators=(",", ":")).encode()
        won = fs.create_exclusive(f"{prefix}/{manifest_name(seq)}", data)
    except BaseException:
        fs.remove(f"{prefix}/{folder}")
        raise
    if not won:
        fs.remove(f"{prefix}/{folder}")
        return None
    return manifest


def _first_ids(path: Path, table: pa.Table) -> list[str]:
    meta = pq.ParquetFile(path).metadata
    ids = table["video_id"]
    out, row = [], 0
    for g in range(meta.num_row_groups):
        out.append(ids[row].as_py() if row < len(ids) else "")
        row += meta.row_group(g).num_rows
    return out
