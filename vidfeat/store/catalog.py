"""What a feature set holds: the winning record of every video id, kept as columns.

A video can appear in several commits (a file re-extracted after it changed, or two jobs that
raced on overlapping inputs). The newest fingerprint (mtime_ns, then size) wins, then a success
over a failure, then the newest commit (committed_at, then part id), then the later entry of
that commit. That is a total order, so the winners of the winners of any split of the commits
are the winners of all of them: a snapshot can stand in for the commits it covers, and a reader
merges it with the few commits that came after.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidfeat.store.arrow import from_numpy, from_values, strings, to_numpy
from vidfeat.store.records import CommitRecord, FailureRecord, VideoRecord

_STR, _I64, _F64, _I32 = pa.string(), pa.int64(), pa.float64(), pa.int32()
VIDEO_SCHEMA = pa.schema(
    [
        ("video_id", _STR),
        ("ok", pa.bool_()),  # a stored video (True) or a recorded failure (False)
        ("part_id", _STR),
        ("part_path", _STR),
        ("row_start", _I64),  # the video's rows in its part: [row_start, row_stop)
        ("row_stop", _I64),
        ("n_rows", _I64),
        ("size", _I64),
        ("mtime_ns", _I64),
        ("committed_at", _F64),
        ("seq", _I32),  # position in its commit record: videos first, then failures
        ("sha256", _STR),
        ("label", _STR),
        ("split", _STR),
        ("uri", _STR),
        ("duration_s", _F64),
        ("fps", _F64),
        ("width", _I32),
        ("height", _I32),
        ("codec", _STR),
        ("kind", _STR),  # failures only
        ("message", _STR),
    ]
)
RANK = ("mtime_ns", "size", "ok", "committed_at", "part_id", "seq")  # higher wins, in order
# What bulk operations (done, load, counts, planning) need: about 100 bytes a video in memory.
CORE = (
    "video_id",
    "ok",
    "part_id",
    "part_path",
    "row_start",
    "row_stop",
    "size",
    "mtime_ns",
    "committed_at",
    "seq",
    "label",
    "split",
    "kind",
)


def candidates(commits: Iterable[CommitRecord]) -> pa.Table:
    """Every video and failure entry of ``commits``, one row each (VIDEO_SCHEMA)."""
    rows: list[tuple[Any, ...]] = []
    for c in commits:
        at, start = c.committed_at, 0
        for seq, v in enumerate(c.videos):
            stop = start + v.n_rows
            rows.append(
                (
                    *(v.video_id, True, c.part_id, c.path, start, stop, v.n_rows, v.size),
                    *(v.mtime_ns, at, seq, v.sha256, v.label, v.split, v.uri, v.duration_s),
                    *(v.fps, v.width, v.height, v.codec, None, None),
                )
            )
            start = stop
        for seq, f in enumerate(c.failures, start=len(c.videos)):
            rows.append(
                (
                    *(f.video_id, False, c.part_id, c.path, 0, 0, 0, f.size, f.mtime_ns, at, seq),
                    *("", f.label, None, f.uri, 0.0, 0.0, 0, 0, "", f.kind, f.message),
                )
            )
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in VIDEO_SCHEMA]
    arrays = [from_values(col, f.type) for col, f in zip(columns, VIDEO_SCHEMA, strict=True)]
    return pa.Table.from_arrays(arrays, schema=VIDEO_SCHEMA)


def winners(table: pa.Table) -> pa.Table:
    """One row per video id, the highest ranked, sorted by video id."""
    if table.num_rows == 0:
        return table
    keys = [("video_id", "ascending")] + [(k, "descending") for k in RANK]
    ranked = table.take(pc.sort_indices(table, sort_keys=keys)).combine_chunks()
    ids = ranked["video_id"]
    first = np.ones(len(ranked), bool)
    first[1:] = to_numpy(pc.not_equal(ids[1:], ids[:-1]))
    return ranked.filter(from_numpy(first))


def beats(a: pa.Table, b: pa.Table) -> np.ndarray:
    """Row i of ``a`` strictly outranks row i of ``b``."""
    gt = np.zeros(len(a), bool)
    eq = np.ones(len(a), bool)
    for k in RANK:
        x, y = to_numpy(a[k]), to_numpy(b[k])
        gt |= eq & (x > y)
        eq &= x == y
    return gt


def find_sorted(ids: pa.Array | pa.ChunkedArray, video_id: str) -> int | None:
    """The index of ``video_id`` in sorted ``ids``, by bisection (no copy of the column)."""
    i = bisect.bisect_left(_Sorted(ids), video_id)
    return i if i < len(ids) and ids[i].as_py() == video_id else None


class _Sorted(Sequence[str]):
    def __init__(self, ids: pa.Array | pa.ChunkedArray) -> None:
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: Any) -> Any:
        return self._ids[i].as_py()


@dataclass(frozen=True, slots=True)
class VideoEntry:
    record: VideoRecord
    part_id: str
    part_path: str
    row_start: int  # rows of this video inside its part: [row_start, row_stop)
    row_stop: int
    committed_at: float


def _entry(row: dict[str, Any]) -> VideoEntry:
    return VideoEntry(
        VideoRecord.from_json(row),  # takes the record's fields from the catalog row
        row["part_id"],
        row["part_path"],
        row["row_start"],
        row["row_stop"],
        row["committed_at"],
    )


def _failure(row: dict[str, Any]) -> FailureRecord:
    return FailureRecord.from_json(row)


@dataclass(frozen=True, slots=True)
class Stats:
    videos: int
    failures: int
    rows: int
    failures_by_kind: dict[str, int]


def stats_of(table: pa.Table) -> Stats:
    ok = to_numpy(table["ok"]).astype(bool)
    rows = to_numpy(table["row_stop"]) - to_numpy(table["row_start"])
    kinds = Counter(table["kind"].filter(from_numpy(~ok)).to_pylist())
    return Stats(int(ok.sum()), int((~ok).sum()), int(rows[ok].sum()), dict(kinds))


class SnapshotView(Protocol):
    """What the catalog needs of a snapshot (store/snapshot.py; that module imports this one)."""

    stats: Stats
    parts: pa.Table
    covered: frozenset[str]
    manifest: Any  # snapshot.Manifest

    def find(self, video_id: str, columns: Sequence[str]) -> pa.Table | None: ...

    def columns(self, names: Sequence[str]) -> pa.Table: ...

    def read_all(self) -> pa.Table: ...


class Catalog:
    """The newest snapshot (if any) plus the commits it does not cover. Point lookups touch
    one row group of the snapshot; bulk operations read the CORE columns once."""

    def __init__(self, snapshot: SnapshotView | None, newer: Sequence[CommitRecord]) -> None:
        self.snapshot = snapshot
        self.newer = tuple(newer)
        self._delta = winners(candidates(self.newer))
        ids = self._delta["video_id"].to_pylist()
        self._delta_at = {vid: i for i, vid in enumerate(ids)}
        self._core: pa.Table | None = None
        self._stats: Stats | None = None

    # ------------------------------------------------------------ one video
    def _row(self, video_id: str, columns: Sequence[str]) -> dict[str, Any] | None:
        i = self._delta_at.get(video_id)
        new = self._delta.slice(i, 1) if i is not None else None
        old = self.snapshot.find(video_id, columns) if self.snapshot is not None else None
        if new is not None and (old is None or beats(new.select(RANK), old.select(RANK))[0]):
            return new.select(columns).to_pylist()[0]
        return old.select(columns).to_pylist()[0] if old is not None else None

    def get(self, video_id: str) -> VideoEntry | None:
        """The stored video's entry, or None (not stored, or its newest record is a failure)."""
        row = self._row(video_id, VIDEO_SCHEMA.names)
        return _entry(row) if row is not None and row["ok"] else None

    def rows_of(self, video_id: str) -> tuple[str, int, int] | None:
        """(part path, row start, row stop) of a stored video: the least a read needs."""
        row = self._row(video_id, CORE)
        if row is None or not row["ok"]:
            return None
        return row["part_path"], row["row_start"], row["row_stop"]

    def failure(self, video_id: str) -> FailureRecord | None:
        row = self._row(video_id, VIDEO_SCHEMA.names)
        return _failure(row) if row is not None and not row["ok"] else None

    # ------------------------------------------------------------ every video
    def table(self) -> pa.Table:
        """CORE columns of every winner (stored videos and failures), sorted by video id."""
        if self._core is None:
            self._core = self._merged()
        return self._core

    def _merged(self) -> pa.Table:
        delta = self._delta.select(CORE)
        if self.snapshot is None:
            return delta
        snap = self.snapshot.columns(CORE)
        if delta.num_rows == 0:
            return snap
        delta = delta.cast(snap.schema)  # the snapshot's strings come dictionary-encoded
        at = pc.index_in(snap["video_id"], value_set=delta["video_id"])
        both = np.flatnonzero(to_numpy(at.is_valid()))
        delta_rows = to_numpy(at.filter(at.is_valid())).astype(np.int64)
        snap_wins = beats(
            snap.take(from_numpy(both)).select(RANK),
            delta.take(from_numpy(delta_rows)).select(RANK),
        )
        keep_snap = np.ones(snap.num_rows, bool)
        keep_snap[both[~snap_wins]] = False
        keep_delta = np.ones(delta.num_rows, bool)
        keep_delta[delta_rows[snap_wins]] = False
        kept = snap.filter(from_numpy(keep_snap))
        added = delta.filter(from_numpy(keep_delta))
        # Both are sorted: insert the delta's rows where they belong (no sort of the whole).
        kept_ids = kept["video_id"]
        where = [bisect.bisect_left(_Sorted(kept_ids), v) for v in added["video_id"].to_pylist()]
        order = np.insert(np.arange(kept.num_rows), where, kept.num_rows + np.arange(len(where)))
        merged = pa.concat_tables([kept, added]).unify_dictionaries()
        return merged.take(from_numpy(order)).combine_chunks()

    def stats(self) -> Stats:
        if self._stats is None:
            if self.snapshot is not None and not self.newer:
                self._stats = self.snapshot.stats  # from the manifest: no column read
            else:
                self._stats = stats_of(self.table())
        return self._stats

    def compare(
        self,
        video_ids: Sequence[str],
        sizes: np.ndarray,
        mtimes_ns: np.ndarray,
        labels: Sequence[str | None],
        splits: Sequence[str | None],
    ) -> Comparison:
        """What the store holds for each of many inputs, in one vectorized pass (a rerun's
        skip step): whether the id is stored, as a video or a failure, with the same
        fingerprint, and whether the input claims another label or split (None claims none)."""
        t = self.table()
        if not len(t):
            none = np.zeros(len(video_ids), bool)
            return Comparison(none, none, none, none)
        at = pc.index_in(strings(video_ids), value_set=t["video_id"])
        found = to_numpy(at.is_valid()).astype(bool)
        rows = from_numpy(to_numpy(at, fill=0).astype(np.int64))
        stored = t.select(["ok", "size", "mtime_ns", "label", "split"]).take(rows)
        same_fp = found & (sizes == to_numpy(stored["size"]))
        same_fp &= mtimes_ns == to_numpy(stored["mtime_ns"])

        def differs(claimed: Sequence[str | None], column: str) -> np.ndarray:
            said = strings(claimed)
            if said.null_count == len(said):
                return np.zeros(len(said), bool)  # no claim at all
            equal = to_numpy(pc.equal(said, stored[column].cast(pa.string())), fill=0)
            return found & to_numpy(said.is_valid()).astype(bool) & ~equal.astype(bool)

        relabelled = differs(labels, "label") | differs(splits, "split")
        return Comparison(found, found & to_numpy(stored["ok"]).astype(bool), same_fp, relabelled)

    def video_ids(self) -> list[str]:
        t = self.table()
        ids: list[str] = t["video_id"].filter(t["ok"]).to_pylist()
        return ids

    def failures(self) -> list[FailureRecord]:
        t = self.table()
        ids = t["video_id"].filter(pc.invert(t["ok"])).to_pylist()
        return [f for f in (self.failure(v) for v in ids) if f is not None]

    # ------------------------------------------------------------ parts
    def part_paths(self) -> list[str]:
        """The data path of every committed part (covered by the snapshot or newer)."""
        paths = self.snapshot.parts["path"].to_pylist() if self.snapshot is not None else []
        return paths + [c.path for c in self.newer]

    def part_layouts(self) -> dict[str, dict[str, Any]]:
        """Part path → where its rows lie in its files (parts that have a layout)."""
        out: dict[str, dict[str, Any]] = {}
        parts = self.snapshot.parts if self.snapshot is not None else None
        if parts is not None and "layout" in parts.column_names:
            texts = parts["layout"].to_pylist()
            for path, text in zip(parts["path"].to_pylist(), texts, strict=True):
                if text:
                    out[path] = json.loads(text)
        out.update({c.path: c.layout for c in self.newer if c.layout})
        return out

    @property
    def n_parts(self) -> int:
        covered = self.snapshot.parts.num_rows if self.snapshot is not None else 0
        return covered + len(self.newer)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Catalog.compare(): one entry per input."""

    found: np.ndarray  # the id has a record (a stored video or a failure)
    stored: np.ndarray  # … and it is a stored video
    same_fingerprint: np.ndarray
    relabelled: np.ndarray  # the input gives a label or split that differs from the record's


class Done:
    """What a planner needs: fingerprints of committed successes and of recorded failures."""

    def __init__(self, table: pa.Table) -> None:
        self._ids = table["video_id"]
        self._ok = to_numpy(table["ok"]).astype(bool)
        self._size = to_numpy(table["size"])
        self._mtime = to_numpy(table["mtime_ns"])

    def __len__(self) -> int:
        return len(self._ids)

    def should_skip(self, video_id: str, fingerprint: tuple[int, int], retry_failed: bool) -> bool:
        i = find_sorted(self._ids, video_id)
        if i is None or (int(self._size[i]), int(self._mtime[i])) != fingerprint:
            return False
        return bool(self._ok[i]) or not retry_failed
