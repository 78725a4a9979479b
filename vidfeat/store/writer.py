"""Writing one part: rows go through a bounded buffer into files under a unique attempt name,
then the commit record is created (create-only; the first commit wins) and the part is visible.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from vidfeat.errors import StoreError, ValueRangeError
from vidfeat.store.formats import get_format
from vidfeat.store.fs import StagedCreate, StoreFS, local_size
from vidfeat.store.parts import PartSink, rows_per_write
from vidfeat.store.records import CommitRecord, FailureRecord, VideoRecord
from vidfeat.store.rows import RowBuffer
from vidfeat.store.spec import FeatureSetSpec, check_name
from vidfeat.version import __version__


@dataclass(frozen=True, slots=True)
class CommitResult:
    part_id: str
    attempt: str
    won: bool
    n_videos: int
    n_rows: int
    n_failures: int


def stage_commit(fs: StoreFS, prefix: str, record: CommitRecord) -> StagedCreate:
    """The commit record, written and fsynced where nobody sees it yet; ``publish()`` on the
    result makes it appear (False if another attempt committed the part first)."""
    return fs.stage_exclusive(f"{prefix}/commits/{record.part_id}.json", record.encode())


class PartWriter:
    """``with fset.writer(part_id) as w: w.add_video(...); w.add_failure(...); w.commit()``.

    Rows are written into the attempt's files as videos are added, a shard at a time (the part
    is never held whole in memory); they stay invisible until ``commit`` creates the commit
    record. Leaving the block without committing (an exception) removes the attempt's data."""

    def __init__(
        self,
        fs: StoreFS,
        prefix: str,
        spec: FeatureSetSpec,
        part_id: str,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.fs, self.prefix, self.spec = fs, prefix, spec
        self.part_id = check_name("part id", part_id)
        self.attempt = uuid.uuid4().hex[:12]
        self._format = get_format(spec.part_format)
        self.rel_path = f"parts/{part_id}-{self.attempt}{self._format.suffix}"
        self._rel = f"{prefix}/{self.rel_path}"
        self._on_commit = on_commit
        self._dtype = np.dtype(spec.dtype)
        rows = rows_per_write(spec.feature_dim, self._dtype)
        self._rows = RowBuffer(spec.feature_dim, self._dtype, rows, self._write_rows)
        self._sink: PartSink | None = None  # opened with the first rows written
        self._target: Path | None = None
        self._videos: list[VideoRecord] = []
        self._ids: set[str] = set()
        self._pts: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self._failures: list[FailureRecord] = []
        self._done = False

    def add_video(
        self, record: VideoRecord, values: np.ndarray, pts: np.ndarray, frame_index: np.ndarray
    ) -> None:
        if self._done:
            raise StoreError(f"Part {self.part_id} was already committed or aborted.")
        dim = self.spec.feature_dim
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[1] != dim:
            raise StoreError(
                f"Video {record.video_id!r}: values have shape {values.shape}, "
                f"expected (rows, {dim})."
            )
        if values.dtype != self._dtype and not np.can_cast(values.dtype, self._dtype, "same_kind"):
            raise StoreError(
                f"Video {record.video_id!r}: values of dtype {values.dtype} cannot be stored "
                f"as {self.spec.dtype}; pass floating-point features."
            )
        n = values.shape[0]
        if len(pts) != n or len(frame_index) != n or record.n_rows != n:
            raise StoreError(
                f"Video {record.video_id!r}: {n} value rows but {len(pts)} pts, "
                f"{len(frame_index)} frame indices and n_rows={record.n_rows}."
            )
        if record.video_id in self._ids:
            raise StoreError(f"Video {record.video_id!r} added twice to part {self.part_id}.")
        json.dumps(record.to_json())  # a record that cannot be stored is refused before its rows
        try:
            self._rows.add(record.video_id, values)
        except ValueRangeError:
            raise  # this video is refused; the part goes on
        except BaseException:
            self.abort()  # a failed write (disk full, …) leaves nothing behind
            raise
        self._videos.append(record)
        self._ids.add(record.video_id)
        self._pts.append(np.array(pts, np.float64))  # copies: callers may reuse theirs
        self._frames.append(np.array(frame_index, np.int64))

    def add_failure(self, failure: FailureRecord) -> None:
        self._failures.append(failure)

    def _open_sink(self) -> PartSink:
        if self._sink is None:
            self._target = self.fs.staging_path(self._rel)
            self._target.parent.mkdir(parents=True, exist_ok=True)
            self._sink = self._format.create(
                self._target, self.spec.feature_dim, self._dtype, self.spec.compression
            )
        return self._sink

    def _write_rows(self, rows: np.ndarray) -> None:
        self._open_sink().write_values(rows)

    def commit(self) -> CommitResult:
        if self._done:
            raise StoreError(f"Part {self.part_id} was already committed or aborted.")
        try:
            self._rows.flush()
            sink = self._open_sink()  # a part of failures only has had no rows yet
            offsets = np.zeros(len(self._videos) + 1, np.int64)
            np.cumsum([v.n_rows for v in self._videos], out=offsets[1:])
            sink.finish(offsets, _concat(self._pts, np.float64), _concat(self._frames, np.int64))
            sink.close()
            assert self._target is not None
            reader = self._format.open(self._target)
            try:
                layout = reader.layout()
            finally:
                reader.close()
            record = CommitRecord(
                part_id=self.part_id,
                attempt=self.attempt,
                path=self.rel_path,
                part_format=self.spec.part_format,
                n_rows=int(offsets[-1]),
                committed_at=time.time(),
                videos=tuple(self._videos),
                failures=tuple(self._failures),
                host=f"{socket.gethostname()}:{os.getpid()}",
                vidfeat_version=__version__,
                part_bytes=local_size(self._target),
                layout=layout,
            )
            staged = stage_commit(self.fs, self.prefix, record)
            try:
                self.fs.publish(self._rel, self._target)  # uploads on object stores; invisible
            except BaseException:
                staged.discard()
                raise
        except BaseException:
            self.abort()
            raise
        self._done = True
        won = staged.publish()
        self._on_commit()
        if not won:  # another attempt committed this part first: ours is garbage
            self.fs.remove(self._rel)
        return CommitResult(
            self.part_id, self.attempt, won, len(self._videos), record.n_rows, len(self._failures)
        )

    def abort(self) -> None:
        """Drop the attempt: close its files and remove them (staged and published)."""
        if self._done:
            return
        self._done = True
        if self._sink is not None:
            self._sink.close()
        if self._target is not None:
            _remove_local(self._target)
        self.fs.remove(self._rel)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()


def _concat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype)


def _remove_local(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
