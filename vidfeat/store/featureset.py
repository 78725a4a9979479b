"""A feature set: its spec, its commits, and the readers the trainer and tools use."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidfeat.errors import StoreError, VideoNotFound
from vidfeat.store.catalog import Catalog, Done, VideoEntry, build_catalog, done_from
from vidfeat.store.formats import get_format
from vidfeat.store.fs import StagedCreate, StoreFS
from vidfeat.store.parts import PartReader
from vidfeat.store.records import CommitRecord
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
        rel = f"{self._prefix}/{part_path}"
        try:
            local = self._fs.local_copy(rel)
        except FileNotFoundError:
            raise StoreError(f"Part {self._fs.url}/{rel} is missing.") from None
        reader = get_format(self._fmt).open(local)
        with self._lock:
            self._open[part_path] = reader
            while len(self._open) > self._size:
                _, old = self._open.popitem(last=False)
                old.close()
        return reader

    def close(self) -> None:
        with self._lock:
            for reader in self._open.values():
                reader.close()
            self._open.clear()


class FeatureSet:
    def __init__(self, fs: StoreFS, name: str, spec: FeatureSetSpec, meta: dict[str, Any]) -> None:
        self.fs = fs
        self.name = name
        self.spec = spec
        self.meta = meta
        self.prefix = f"featuresets/{name}"
        self._catalog: Catalog | None = None
        self._readers = _ReaderCache(fs, self.prefix, spec.part_format)

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, backbone={self.spec.backbone!r}, store={self.fs.url!r})"

    # ------------------------------------------------------------------ writing
    def writer(self, part_id: str) -> PartWriter:
        return PartWriter(self.fs, self.prefix, self.spec, part_id, on_commit=self._forget_catalog)

    def stage_commit(self, record: CommitRecord) -> StagedCreate:
        """A commit record written where nobody sees it yet (what a writer killed before
        publishing leaves behind); ``publish()`` on the result makes it appear."""
        return stage_commit(self.fs, self.prefix, record)

    def _forget_catalog(self) -> None:
        self._catalog = None

    # ------------------------------------------------------------------ catalog
    def commits(self) -> list[CommitRecord]:
        out = []
        for name in self.fs.listdir(f"{self.prefix}/commits"):
            if not name.endswith(".json") or name.startswith("."):
                continue
            rel = f"{self.prefix}/commits/{name}"
            try:
                record = CommitRecord.from_json(json.loads(self.fs.read_bytes(rel)))
            except (ValueError, StoreError) as e:
                raise StoreError(
                    f"Commit record {rel} is unreadable: {e}. Run `vidfeat verify` on the store."
                ) from None
            if name != f"{record.part_id}.json":
                raise StoreError(
                    f"Commit record {rel} names part {record.part_id!r}; the file name must be "
                    f"{record.part_id}.json. Run `vidfeat verify` on the store."
                )
            out.append(record)
        return out

    def catalog(self, refresh: bool = False) -> Catalog:
        if self._catalog is None or refresh:
            self._catalog = build_catalog(self.commits())
        return self._catalog

    def done(self) -> Done:
        return done_from(self.catalog(refresh=True))

    def video_ids(self) -> list[str]:
        return list(self.catalog(refresh=True).videos)

    # ------------------------------------------------------------------ reading
    def _entry(self, video_id: str) -> VideoEntry:
        entry = self.catalog().videos.get(video_id)
        if entry is None:  # committed since the catalog was cached?
            entry = self.catalog(refresh=True).videos.get(video_id)
        if entry is not None:
            return entry
        failure = self.catalog().failures.get(video_id)
        why = f" It failed: {failure.kind}: {failure.message}" if failure else ""
        raise VideoNotFound(f"No committed video {video_id!r} in feature set {self.name!r}.{why}")

    def read(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(values (T, D), pts (T,)) of one video."""
        e = self._entry(video_id)
        reader = self._readers.get(e.part_path)
        values = reader.read_values(e.row_start, e.row_stop)
        pts = reader.read_1d("pts", e.row_start, e.row_stop)
        return values, pts

    def load(
        self, video_ids: Sequence[str] | None = None, threads: int = 8, with_pts: bool = True
    ) -> LoadedFeatures:
        """The trainer's bulk path: every chosen video's rows in one contiguous array, read in
        parallel over parts, straight into the output buffer."""
        cat = self.catalog(refresh=True)  # bulk reads see every commit made so far
        ids = list(cat.videos) if video_ids is None else list(video_ids)
        entries = [self._entry(v) for v in ids]
        counts = np.array([e.row_stop - e.row_start for e in entries], np.int64)
        offsets = np.zeros(len(entries) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        values = np.empty((int(offsets[-1]), self.spec.feature_dim), self.spec.dtype)
        pts = np.empty(int(offsets[-1]), np.float64)

        # Group by part; merge videos that are adjacent both in the part and in the output.
        by_part: dict[str, list[tuple[int, int, int]]] = {}
        for i, e in enumerate(entries):
            runs = by_part.setdefault(e.part_path, [])
            if (
                runs
                and runs[-1][1] == e.row_start
                and runs[-1][2] + (runs[-1][1] - runs[-1][0]) == int(offsets[i])
            ):
                runs[-1] = (runs[-1][0], e.row_stop, runs[-1][2])
            else:
                runs.append((e.row_start, e.row_stop, int(offsets[i])))

        def read_part(item: tuple[str, list[tuple[int, int, int]]]) -> None:
            part_path, runs = item
            reader = self._readers.get(part_path)
            for start, stop, dst in runs:
                reader.read_values(start, stop, values[dst : dst + stop - start])
                if with_pts:
                    pts[dst : dst + stop - start] = reader.read_1d("pts", start, stop)

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            list(pool.map(read_part, by_part.items()))
        return LoadedFeatures(
            values,
            offsets,
            ids,
            [e.record.label for e in entries],
            [e.record.split for e in entries],
            pts,
        )

    def to_dask(self) -> Any:
        """A lazy dask array over the rows of every committed video, in catalog order.
        Pair it with ``catalog()`` for offsets. One block per run of consecutive rows of a
        part, split at TO_DASK_BLOCK_BYTES (a block per video gave a graph with a task per
        video). dask is imported here, not by the store."""
        import dask
        import dask.array as da

        dim, dtype = self.spec.feature_dim, np.dtype(self.spec.dtype)
        max_rows = max(1, TO_DASK_BLOCK_BYTES // (dim * dtype.itemsize))
        runs: list[list[Any]] = []  # [part path, start, stop]
        for e in self.catalog().videos.values():
            last = runs[-1] if runs else None
            if last is not None and last[0] == e.part_path and last[2] == e.row_start:
                last[2] = e.row_stop
            else:
                runs.append([e.part_path, e.row_start, e.row_stop])
        if not runs:
            return da.zeros((0, dim), dtype=dtype)

        def block(part_path: str, start: int, stop: int) -> np.ndarray:
            return self._readers.get(part_path).read_values(start, stop)

        pieces = [
            da.from_delayed(
                dask.delayed(block)(path, lo, min(lo + max_rows, stop)),
                shape=(min(lo + max_rows, stop) - lo, dim),
                dtype=dtype,
            )
            for path, start, stop in runs
            for lo in range(start, stop, max_rows)
        ]
        return da.concatenate(pieces, axis=0)

    def close(self) -> None:
        self._readers.close()
