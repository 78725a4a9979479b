"""A feature set: its spec, its commits, and the readers the trainer and tools use."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidfeat.errors import StoreError, VideoNotFound
from vidfeat.store.arrow import from_numpy, strings, to_list, to_numpy
from vidfeat.store.catalog import (
    VIDEO_SCHEMA,
    Catalog,
    Done,
    candidates,
    stats_of,
    winners,
)
from vidfeat.store.formats import get_format
from vidfeat.store.fs import StagedCreate, StoreFS
from vidfeat.store.parts import ChunkMap, PartReader
from vidfeat.store.random_access import RowReader
from vidfeat.store.records import CommitRecord
from vidfeat.store.snapshot import (
    Manifest,
    Snapshot,
    manifest_seqs,
    parts_table,
    read_manifest,
    write_snapshot,
)
from vidfeat.store.spec import FeatureSetSpec
from vidfeat.store.writer import PartWriter, stage_commit

TO_DASK_BLOCK_BYTES = 64 << 20  # rows of one part per dask block, at most


@dataclass(frozen=True, slots=True)
class LoadedFeatures:
    """All rows of the chosen videos in one contiguous array: video i owns
    values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray
    offsets: np.ndarray
    video_ids: list[str]
    labels: list[str | None]
    splits: list[str | None]
    pts: np.ndarray


@dataclass(frozen=True, slots=True)
class Sequences:
    """``FeatureSet.sequences``: video i is values[i] (T, D), its real rows where mask[i]."""

    values: np.ndarray
    mask: np.ndarray
    video_ids: list[str]
    labels: list[str | None]
    splits: list[str | None]


def uniform_positions(lengths: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) row positions within each of N clips of ``lengths`` rows, spread uniformly (the
    centre of each of T equal spans), and the validity mask; a clip shorter than T gives its
    rows in order, then padding. float32 arithmetic, as the trainer's torch code did."""
    lengths = np.asarray(lengths, np.int64)
    t = np.arange(seq_len)
    span = np.maximum(lengths, seq_len).astype(np.float32)
    pos = np.floor((t.astype(np.float32) + np.float32(0.5)) * span[:, None] / np.float32(seq_len))
    pos = np.where(lengths[:, None] >= seq_len, pos.astype(np.int64), t[None, :])
    return pos, pos < lengths[:, None]


@dataclass(frozen=True, slots=True)
class LazyFeatures:
    """``to_dask()``: video i owns values[offsets[i]:offsets[i+1]], a dask array."""

    values: Any
    offsets: np.ndarray
    video_ids: list[str]
    labels: list[str | None]
    splits: list[str | None]


def _runs_by_part(
    part_paths: pa.ChunkedArray, start: np.ndarray, stop: np.ndarray, dst: np.ndarray
) -> dict[str, list[tuple[int, int, int]]]:
    """Rows to read, grouped by part: (start, stop, output row) runs, sorted within a part and
    merged where videos lie back to back both in the part and in the output."""
    if len(start) == 0:
        return {}
    encoded = pc.dictionary_encode(part_paths).combine_chunks()
    part = to_numpy(encoded.indices)
    order = np.lexsort((start, part))
    p, s, e, d = part[order], start[order], stop[order], dst[order]
    new_run = np.ones(len(p), bool)
    new_run[1:] = (p[1:] != p[:-1]) | (s[1:] != e[:-1]) | (d[1:] != d[:-1] + e[:-1] - s[:-1])
    first = np.flatnonzero(new_run)
    last = np.r_[first[1:] - 1, len(p) - 1]
    names = encoded.dictionary.to_pylist()
    runs: dict[str, list[tuple[int, int, int]]] = {}
    for i, j in zip(first.tolist(), last.tolist(), strict=True):
        runs.setdefault(names[p[i]], []).append((int(s[i]), int(e[j]), int(d[i])))
    return runs


def _parse_commit(rel: str, name: str, data: bytes) -> CommitRecord:
    try:
        record = CommitRecord.from_json(json.loads(data))
    except (ValueError, StoreError) as e:
        raise StoreError(
            f"Commit record {rel} is unreadable: {e}. Run `vidfeat verify` on the store."
        ) from None
    if name != f"{record.part_id}.json":
        raise StoreError(
            f"Commit record {rel} names part {record.part_id!r}; the file name must be "
            f"{record.part_id}.json. Run `vidfeat verify` on the store."
        )
    return record


class _ReaderCache:
    """Open part readers, least recently used first out (random reads stay cheap)."""

    def __init__(self, fs: StoreFS, prefix: str, fmt: str, size: int = 64) -> None:
        self._fs, self._prefix, self._fmt, self._size = fs, prefix, fmt, size
        self._open: OrderedDict[str, PartReader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, part_path: str) -> PartReader:
        with self._lock:
            reader = self._open.get(part_path)
            if reader is not None:
                self._open.move_to_end(part_path)
                return reader
        reader = get_format(self._fmt).open(self.local(part_path))
        with self._lock:
            self._open[part_path] = reader
            while len(self._open) > self._size:
                _, old = self._open.popitem(last=False)
                old.close()
        return reader

    def local(self, part_path: str) -> Path:
        """A local path of the part (downloaded once from an object store)."""
        rel = f"{self._prefix}/{part_path}"
        try:
            return self._fs.local_copy(rel)
        except FileNotFoundError:
            raise StoreError(f"Part {self._fs.url}/{rel} is missing.") from None

    def close(self) -> None:
        with self._lock:
            for reader in self._open.values():
                reader.close()
            self._open.clear()


class FeatureSet:
    def __init__(
        self,
        fs: StoreFS,
        name: str,
        spec: FeatureSetSpec,
        meta: dict[str, Any],
        read_only: bool = False,
    ) -> None:
        self.fs = fs
        self.name = name
        self.spec = spec
        self.meta = meta
        self.read_only = read_only
        self.prefix = f"featuresets/{name}"
        self._catalog: Catalog | None = None
        self._snapshot: Snapshot | None = None
        self._records: dict[str, CommitRecord] = {}  # commit file name → parsed record
        self._readers = _ReaderCache(fs, self.prefix, spec.part_format)

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, backbone={self.spec.backbone!r}, store={self.fs.url!r})"

    PROVENANCE = (
        *("created_at", "created_by", "vidfeat_version", "command", "description", "tags"),
        "engine",  # the engine of the run that created the set (each video's record has its own)
    )

    @property
    def provenance(self) -> dict[str, Any]:
        """Who made the feature set, when, with which vidfeat and command, and the description
        and tags given then (recorded at creation; older sets lack some keys)."""
        return {k: self.meta[k] for k in self.PROVENANCE if k in self.meta}

    # ------------------------------------------------------------------ writing
    def check_writable(self, what: str) -> None:
        if self.read_only:
            raise StoreError(
                f"Feature set {self.name!r} of {self.fs.url} is open read-only (mode 'r'): "
                f"cannot {what}. Open the store with mode 'r+' or 'a'."
            )

    def writer(self, part_id: str) -> PartWriter:
        self.check_writable(f"write part {part_id}")
        return PartWriter(self.fs, self.prefix, self.spec, part_id, on_commit=self._forget_catalog)

    def stage_commit(self, record: CommitRecord) -> StagedCreate:
        """A commit record written where nobody sees it yet (what a writer killed before
        publishing leaves behind); ``publish()`` on the result makes it appear."""
        self.check_writable("stage a commit")
        return stage_commit(self.fs, self.prefix, record)

    def _forget_catalog(self) -> None:
        self._catalog = None

    # ------------------------------------------------------------------ catalog
    def _commit_names(self) -> list[str]:
        names = self.fs.listdir(f"{self.prefix}/commits")
        return [n for n in names if n.endswith(".json") and not n.startswith(".")]

    def _read_commits(self, names: list[str], cache: bool) -> list[CommitRecord]:
        """The records ``names`` (under commits/), fetched concurrently; records are
        immutable, so ones read before are not fetched again."""
        missing = [n for n in names if n not in self._records]
        rels = [f"{self.prefix}/commits/{n}" for n in missing]
        fetched = dict(zip(missing, self.fs.read_many(rels), strict=True))
        out = []
        for name in names:
            record = self._records.get(name)
            if record is None:
                record = _parse_commit(f"{self.prefix}/commits/{name}", name, fetched[name])
            out.append(record)
        if cache:
            self._records = dict(zip(names, out, strict=True))
        return out

    def commits(self) -> list[CommitRecord]:
        """Every commit record: the source of truth (verify and tests rebuild from them)."""
        return self._read_commits(self._commit_names(), cache=False)

    def catalog(self, refresh: bool = False) -> Catalog:
        """The newest snapshot plus the commits it does not cover (cached until ``refresh``)."""
        if self._catalog is None or refresh:
            self._catalog = self._load_catalog()
        return self._catalog

    def _load_catalog(self) -> Catalog:
        # Snapshots are listed before commits: a commit that lands in between is read as newer,
        # and a snapshot that lands in between is ignored. Either way nothing is missed.
        for _ in range(3):
            seqs = manifest_seqs(self.fs, self.prefix)
            try:
                snapshot = self._open_snapshot(seqs[-1]) if seqs else None
            except FileNotFoundError:  # gc removed it after a newer one appeared: look again
                continue
            covered = snapshot.covered if snapshot is not None else frozenset()
            names = [n for n in self._commit_names() if n[: -len(".json")] not in covered]
            return Catalog(snapshot, self._read_commits(names, cache=True))
        raise StoreError(
            f"The snapshots of {self.fs.url}/{self.prefix} kept disappearing while being read; "
            "is a `vidfeat gc --older-than 0` running? Try again."
        )

    def _open_snapshot(self, seq: int) -> Snapshot:
        if self._snapshot is None or self._snapshot.manifest.seq != seq:
            manifest = read_manifest(self.fs, self.prefix, seq)
            self._snapshot = Snapshot(self.fs, self.prefix, manifest)
        return self._snapshot

    def compact(self, rebuild: bool = False) -> Manifest | None:
        """Write a snapshot of every commit made so far. None if the newest snapshot already
        covers them all, or if another process published a snapshot first (it is just as
        valid: what it does not cover, readers take from the commits). ``rebuild`` reads
        every commit record instead of the newest snapshot (one that is damaged)."""
        self.check_writable("write a catalog snapshot")
        seqs = manifest_seqs(self.fs, self.prefix)
        if rebuild:
            snapshot, records = None, self.commits()
        else:
            cat = self.catalog(refresh=True)
            if cat.snapshot is not None and not cat.newer:
                return None
            snapshot, records = cat.snapshot, list(cat.newer)
        newer = [self._with_part_bytes(c) for c in records]
        if snapshot is None:
            base, parts = VIDEO_SCHEMA.empty_table(), parts_table(newer)
        else:
            base = snapshot.read_all()
            # promote: a column added to parts.parquet later is null in older snapshots' rows
            parts = pa.concat_tables(
                [snapshot.parts, parts_table(newer)], promote_options="default"
            )
        seq = (snapshot.manifest.seq if snapshot is not None else max(seqs, default=0)) + 1
        videos = winners(pa.concat_tables([base, candidates(newer)]))
        manifest = write_snapshot(self.fs, self.prefix, seq, videos, parts, stats_of(videos))
        self._catalog = None
        return manifest

    def _with_part_bytes(self, c: CommitRecord) -> CommitRecord:
        """Records written before format 2 do not carry their part's size: measure it."""
        if c.part_bytes >= 0:
            return c
        try:
            size = self.fs.disk_usage(f"{self.prefix}/{c.path}")
        except FileNotFoundError:
            size = 0
        return dataclasses.replace(c, part_bytes=size)

    def part_bytes(self) -> int:
        """Bytes of every committed part's files (from the records, not a walk of the data)."""
        cat = self.catalog()
        total = cat.snapshot.manifest.part_bytes if cat.snapshot is not None else 0
        return total + sum(self._with_part_bytes(c).part_bytes for c in cat.newer)

    def done(self) -> Done:
        return Done(self.catalog(refresh=True).table())

    def video_ids(self) -> list[str]:
        """The ids of every stored video, sorted."""
        return self.catalog(refresh=True).video_ids()

    def labels(self) -> dict[str, str | None]:
        """Every stored video's label (None where it has none), by id."""
        t = self._stored(None)
        return dict(zip(to_list(t["video_id"]), to_list(t["label"]), strict=True))

    def splits(self) -> dict[str, str | None]:
        """Every stored video's split from its manifest (train/val/test; None without)."""
        t = self._stored(None)
        return dict(zip(to_list(t["video_id"]), to_list(t["split"]), strict=True))

    # ------------------------------------------------------------------ reading
    def _not_found(self, video_id: str) -> VideoNotFound:
        failure = self.catalog().failure(video_id)
        why = f" It failed: {failure.kind}: {failure.message}" if failure else ""
        return VideoNotFound(f"No committed video {video_id!r} in feature set {self.name!r}.{why}")

    def read(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(values (T, D), pts (T,)) of one video."""
        where = self.catalog().rows_of(video_id)
        if where is None:  # committed since the catalog was cached?
            where = self.catalog(refresh=True).rows_of(video_id)
        if where is None:
            raise self._not_found(video_id)
        part_path, start, stop = where
        reader = self._readers.get(part_path)
        return reader.read_values(start, stop), reader.read_1d("pts", start, stop)

    def _stored(self, video_ids: Sequence[str] | None) -> pa.Table:
        """CORE columns of the chosen stored videos, in the order asked (default: by id)."""
        table = self.catalog(refresh=True).table()  # bulk reads see every commit so far
        table = table.filter(table["ok"])
        if video_ids is None:
            return table
        at = pc.index_in(strings(list(video_ids)), value_set=table["video_id"])
        if at.null_count:
            raise self._not_found(video_ids[int(np.flatnonzero(to_numpy(at.is_null()))[0])])
        return table.take(at)

    def load(
        self,
        video_ids: Sequence[str] | None = None,
        threads: int | None = None,
        with_pts: bool = True,
    ) -> LoadedFeatures:
        """The trainer's bulk path: every chosen video's rows in one contiguous array, read
        part by part straight into the output buffer. ``threads`` (default: 1 when every part
        has a recorded layout, else 8) reads parts in parallel: that pays where opening a part
        through its library dominates, while threads doing plain preadv into fresh memory are
        slower than one (their page faults contend; docs/performance.md, "Catalog")."""
        chosen = self._stored(video_ids)
        start, stop = to_numpy(chosen["row_start"]), to_numpy(chosen["row_stop"])
        offsets = np.zeros(len(start) + 1, np.int64)
        np.cumsum(stop - start, out=offsets[1:])
        # np.zeros, not np.empty: preadv into fresh np.empty pages has the kernel fault them
        # in 4 KiB at a time; calloc'd memory fills faster (docs/performance.md, "Catalog").
        values = np.zeros((int(offsets[-1]), self.spec.feature_dim), self.spec.dtype)
        pts = np.zeros(int(offsets[-1]), np.float64)

        layouts = self.catalog().part_layouts()

        def read_part(item: tuple[str, list[tuple[int, int, int]]]) -> None:
            try:
                read_runs(*item)
            except Exception as e:  # missing, truncated or garbled: all say the same
                raise StoreError(
                    f"Part {item[0]} of feature set {self.name!r} cannot be read "
                    f"({type(e).__name__}: {e}). Run `vidfeat verify {self.fs.url} {self.name}` "
                    "to list every damaged part."
                ) from None

        def read_runs(part_path: str, runs: list[tuple[int, int, int]]) -> None:
            direct = self._direct_maps(part_path, layouts.get(part_path), with_pts)
            if direct is not None:  # straight from the files, no library open per part
                values_map, pts_map = direct
                values_map.read_many([(a, b, values[d : d + b - a]) for a, b, d in runs])
                if pts_map is not None:
                    pts_map.read_many([(a, b, pts[d : d + b - a]) for a, b, d in runs])
                return
            reader = self._readers.get(part_path)
            for lo, hi, dst in runs:
                reader.read_values(lo, hi, values[dst : dst + hi - lo])
                if with_pts:
                    pts[dst : dst + hi - lo] = reader.read_1d("pts", lo, hi)

        by_part = _runs_by_part(chosen["part_path"], start, stop, offsets[:-1])
        if threads is None:
            threads = 1 if all(p in layouts for p in by_part) else 8
        if threads <= 1:
            for item in by_part.items():
                read_part(item)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(read_part, by_part.items()))
        return LoadedFeatures(
            values,
            offsets,
            to_list(chosen["video_id"]),
            to_list(chosen["label"]),
            to_list(chosen["split"]),
            pts,
        )

    def row_reader(self, video_ids: Sequence[str] | None = None) -> RowReader:
        """Random access to the chosen videos' rows (default: all, by id) without loading
        them: ``take(rows)`` reads rows numbered as ``load`` numbers them, straight from the
        parts. The trainer's out-of-core path; only the catalog is read here."""
        chosen = self._stored(video_ids)
        start, stop = to_numpy(chosen["row_start"]), to_numpy(chosen["row_stop"])
        offsets = np.zeros(len(start) + 1, np.int64)
        np.cumsum(stop - start, out=offsets[1:])
        parts = pc.dictionary_encode(chosen["part_path"]).combine_chunks()
        layouts = self.catalog().part_layouts()
        return RowReader(
            offsets,
            to_list(chosen["video_id"]),
            to_list(chosen["label"]),
            to_list(chosen["split"]),
            self.spec.feature_dim,
            np.dtype(self.spec.dtype),
            [str(p) for p in parts.dictionary.to_pylist()],
            to_numpy(parts.indices).astype(np.int64),
            start.astype(np.int64),
            lambda path: self._values_map(path, layouts.get(path)),
            self._readers.get,
            f"feature set {self.name!r} of {self.fs.url}",
        )

    def _values_map(self, part_path: str, layout: dict[str, Any] | None) -> ChunkMap | None:
        direct = self._direct_maps(part_path, layout, with_pts=False)
        return direct[0] if direct is not None else None

    def _direct_maps(
        self, part_path: str, layout: dict[str, Any] | None, with_pts: bool
    ) -> tuple[ChunkMap, ChunkMap | None] | None:
        """ChunkMaps from the part's recorded layout, when it covers what is read."""
        if not layout or "values" not in layout or (with_pts and "pts" not in layout):
            return None
        root = self._readers.local(part_path)
        dtype = np.dtype(self.spec.dtype)
        row_bytes = self.spec.feature_dim * dtype.itemsize
        values = ChunkMap.from_layout(layout["values"], root, dtype, row_bytes)
        f64 = np.dtype(np.float64)
        pts = ChunkMap.from_layout(layout["pts"], root, f64, f64.itemsize) if with_pts else None
        return values, pts

    def sequences(self, seq_len: int, video_ids: Sequence[str] | None = None) -> Sequences:
        """Fixed-length sequences of the chosen videos (default: all, by id): ``seq_len`` rows
        spread uniformly over each video, as the trainer evaluates, a video shorter than that
        padded with zeros. ``values`` (N, T, D) in the stored dtype, ``mask`` (N, T) True on
        real rows."""
        loaded = self.load(video_ids, with_pts=False)
        lengths = np.diff(loaded.offsets)
        pos, mask = uniform_positions(lengths, seq_len)
        rows = loaded.offsets[:-1, None] + np.minimum(pos, np.maximum(lengths - 1, 0)[:, None])
        values = (
            loaded.values[rows]
            if len(loaded.values)
            else np.zeros((*rows.shape, self.spec.feature_dim), self.spec.dtype)
        )
        values[~mask] = 0
        return Sequences(values, mask, loaded.video_ids, loaded.labels, loaded.splits)

    def to_xarray(self, video_ids: Sequence[str] | None = None) -> Any:
        """The chosen videos' rows as an ``xarray.DataArray`` with dims ``row``, ``feature``
        and per-row coords ``video_id`` and ``pts`` (xarray is imported here, not needed by
        the store otherwise)."""
        try:
            import xarray as xr
        except ImportError:
            raise StoreError("to_xarray needs xarray: pip install xarray") from None
        loaded = self.load(video_ids)
        per_row = np.repeat(np.array(loaded.video_ids, dtype=object), np.diff(loaded.offsets))
        return xr.DataArray(
            loaded.values,
            dims=("row", "feature"),
            coords={"video_id": ("row", per_row), "pts": ("row", loaded.pts)},
            name=self.name,
            attrs={"backbone": self.spec.backbone, "config_hash": self.spec.config_hash()},
        )

    def to_dask(self) -> LazyFeatures:
        """Every stored video's rows as a lazy dask array, in storage order (part by part, so
        a block holds consecutive rows of one part whatever the video ids), with the ids,
        labels and offsets in that order. Blocks are split at TO_DASK_BLOCK_BYTES. dask is
        imported here, not by the store."""
        import dask
        import dask.array as da

        table = self._stored(None)
        parts = pc.dictionary_encode(table["part_path"]).combine_chunks()
        order = np.lexsort((to_numpy(table["row_start"]), to_numpy(parts.indices)))
        table = table.take(from_numpy(order))
        start, stop = to_numpy(table["row_start"]), to_numpy(table["row_stop"])
        offsets = np.zeros(len(start) + 1, np.int64)
        np.cumsum(stop - start, out=offsets[1:])
        dim, dtype = self.spec.feature_dim, np.dtype(self.spec.dtype)
        max_rows = max(1, TO_DASK_BLOCK_BYTES // (dim * dtype.itemsize))

        def block(part_path: str, lo: int, hi: int) -> np.ndarray:
            return self._readers.get(part_path).read_values(lo, hi)

        pieces = [
            da.from_delayed(
                dask.delayed(block)(path, a, min(a + max_rows, hi)),
                shape=(min(a + max_rows, hi) - a, dim),
                dtype=dtype,
            )
            for path, runs in _runs_by_part(table["part_path"], start, stop, offsets[:-1]).items()
            for lo, hi, _ in runs
            for a in range(lo, hi, max_rows)
        ]
        values = da.concatenate(pieces, axis=0) if pieces else da.zeros((0, dim), dtype=dtype)
        return LazyFeatures(
            values,
            offsets,
            to_list(table["video_id"]),
            to_list(table["label"]),
            to_list(table["split"]),
        )

    def close(self) -> None:
        self._readers.close()
