"""Writing one part: buffer the videos of a part, write the data under a unique attempt
name, then publish it by creating the commit record (create-only; the first commit wins)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vidfeat import __version__
from vidfeat.errors import StoreError, ValueRangeError
from vidfeat.store.parts import PartSink, flush_rows, get_format
from vidfeat.store.records import CommitRecord, FailureRecord, VideoRecord
from vidfeat.store.spec import FLOAT16_MAX, check_name

if TYPE_CHECKING:
    from vidfeat.store.featureset import FeatureSet


@dataclass(frozen=True, slots=True)
class CommitResult:
    part_id: str
    attempt: str
    won: bool
    n_videos: int
    n_rows: int
    n_failures: int


def _check_values(video_id: str, values: np.ndarray, dtype: str) -> None:
    """No NaN or inf, and values that fit the stored dtype. Cheap: float16 arithmetic is
    emulated by numpy and 10x slower, so float16 input is checked on its bits, with two max
    reductions and no temporary array: as uint16, +inf/NaN are 0x7C00-0x7FFF and -inf/NaN are
    0xFC00-0xFFFF; seen as int16, the first range is the top of the positive values."""
    if values.dtype == np.float16:
        bits = values.view(np.uint16)
        if values.size and (int(bits.view(np.int16).max()) >= 0x7C00 or int(bits.max()) >= 0xFC00):
            raise ValueRangeError(f"Video {video_id!r}: features contain NaN or inf.")
        return
    if not values.size:
        return
    lo, hi = float(values.min()), float(values.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueRangeError(f"Video {video_id!r}: features contain NaN or inf.")
    if dtype == "float16" and max(-lo, hi) > FLOAT16_MAX:
        raise ValueRangeError(
            f"Video {video_id!r}: feature values up to {max(-lo, hi):g} do not fit float16 "
            f"(max {FLOAT16_MAX:g}). Use --dtype float32."
        )


class _RowBuffer:
    """A few MiB of rows in the stored dtype, reused for the whole part. Each video's rows are
    copied (and cast: float32 engine output becomes float16 here) into it, and every full
    buffer goes to the part's sink in one write of whole chunks. The buffer is small and reused
    (it stays in the CPU's cache), so the copy costs little, and the writes are few and big:
    writing each video's rows straight from the caller's array was slower (a syscall per
    video), and keeping references to them until a big write would break on callers that
    reuse their arrays."""

    _spare: ClassVar[dict[tuple[int, int, str], list[np.ndarray]]] = {}
    _spare_lock: ClassVar[threading.Lock] = threading.Lock()
    KEEP_SPARE = 2  # per shape and dtype

    def __init__(self, dim: int, dtype: np.dtype[Any]) -> None:
        # A buffer left by an earlier part of this process: a fresh one costs 0.7 ms of page
        # faults, 5% of a 50 MiB part's write.
        self._key = (flush_rows(dim, dtype), dim, dtype.str)
        with self._spare_lock:
            spare = self._spare.get(self._key)
            rows = spare.pop() if spare else None
        self.rows = rows if rows is not None else np.empty(self._key[:2], dtype)
        self.fill = 0

    def release(self) -> None:
        """Give the memory back for the next part; this buffer holds nothing afterwards."""
        rows, self.rows, self.fill = self.rows, self.rows[:0], 0
        if len(rows):
            with self._spare_lock:
                spare = self._spare.setdefault(self._key, [])
                if len(spare) < self.KEEP_SPARE:
                    spare.append(rows)

    def add(self, values: np.ndarray, flush: Callable[[np.ndarray], None]) -> None:
        done, n = 0, len(values)
        while done < n:
            take = min(n - done, len(self.rows) - self.fill)
            piece = values if take == n else values[done : done + take]
            self.rows[self.fill : self.fill + take] = piece  # the cast to the stored dtype
            self.fill += take
            done += take
            if self.fill == len(self.rows):
                self.drain(flush)

    def drain(self, flush: Callable[[np.ndarray], None]) -> None:
        if self.fill:
            flush(self.rows[: self.fill])
            self.fill = 0


class PartWriter:
    """``with fs.writer(part_id) as w: w.add_video(...); w.add_failure(...); w.commit()``.

    Rows are streamed into the attempt's files as videos are added (the part is never held
    whole in memory); they stay invisible until ``commit`` creates the commit record. Leaving
    the block without committing (an exception) removes the attempt's data."""

    def __init__(self, featureset: FeatureSet, part_id: str) -> None:
        self.featureset = featureset
        self.part_id = check_name("part id", part_id)
        self.attempt = uuid.uuid4().hex[:12]
        fmt = get_format(featureset.spec.part_format)
        self._format = fmt
        self.rel_path = f"parts/{part_id}-{self.attempt}{fmt.suffix}"
        self._videos: list[VideoRecord] = []
        self._ids: set[str] = set()
        self._dtype = np.dtype(featureset.spec.dtype)
        self._buffer = _RowBuffer(featureset.spec.feature_dim, self._dtype)
        self._sink: PartSink | None = None  # opened with the first full buffer
        self._rel = f"{featureset.prefix}/{self.rel_path}"
        self._target: Path | None = None
        self._pts: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self._failures: list[FailureRecord] = []
        self._done = False

    def add_video(
        self, record: VideoRecord, values: np.ndarray, pts: np.ndarray, frame_index: np.ndarray
    ) -> None:
        if self._done:
            raise StoreError(f"Part {self.part_id} was already committed or aborted.")
        spec = self.featureset.spec
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[1] != spec.feature_dim:
            raise StoreError(
                f"Video {record.video_id!r}: values have shape {values.shape}, "
                f"expected (rows, {spec.feature_dim})."
            )
        if values.dtype != self._dtype and not np.can_cast(values.dtype, self._dtype, "same_kind"):
            raise StoreError(
                f"Video {record.video_id!r}: values of dtype {values.dtype} cannot be stored "
                f"as {spec.dtype}; pass floating-point features."
            )
        n = values.shape[0]
        if len(pts) != n or len(frame_index) != n or record.n_rows != n:
            raise StoreError(
                f"Video {record.video_id!r}: {n} value rows but {len(pts)} pts, "
                f"{len(frame_index)} frame indices and n_rows={record.n_rows}."
            )
        _check_values(record.video_id, values, spec.dtype)
        if record.video_id in self._ids:
            raise StoreError(f"Video {record.video_id!r} added twice to part {self.part_id}.")
        self._videos.append(record)
        self._ids.add(record.video_id)
        try:
            self._buffer.add(values, self._write_rows)
        except BaseException:
            self.abort()  # a failed write (disk full, …) leaves nothing behind
            raise
        self._pts.append(np.asarray(pts, np.float64))
        self._frames.append(np.asarray(frame_index, np.int64))

    def add_failure(self, failure: FailureRecord) -> None:
        self._failures.append(failure)

    def _open_sink(self) -> PartSink:
        if self._sink is None:
            spec = self.featureset.spec
            self._target = self.featureset.fs.staging_path(self._rel)
            if not self._target.parent.is_dir():  # a stat: cheaper than mkdir on every part
                self._target.parent.mkdir(parents=True, exist_ok=True)
            self._sink = self._format.create(
                self._target, spec.feature_dim, self._dtype, spec.compression
            )
        return self._sink

    def _write_rows(self, rows: np.ndarray) -> None:
        self._open_sink().write_rows(rows)

    def _finish(self) -> None:
        """Write what is left and complete the part's files."""
        self._buffer.drain(self._write_rows)
        sink = self._open_sink()  # a part of failures only has had no rows yet
        counts = [v.n_rows for v in self._videos]
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        pts = np.concatenate(self._pts) if self._pts else np.zeros(0, np.float64)
        frames = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)
        sink.finish(offsets, pts, frames)
        sink.close()
        self._buffer.release()

    def commit(self) -> CommitResult:
        if self._done:
            raise StoreError(f"Part {self.part_id} was already committed or aborted.")
        fs = self.featureset
        try:
            self._finish()
            assert self._target is not None
            fs.fs.publish(self._rel, self._target)  # uploads on object stores; still invisible
        except BaseException:
            self.abort()
            raise
        self._done = True
        record = CommitRecord(
            part_id=self.part_id,
            attempt=self.attempt,
            path=self.rel_path,
            part_format=fs.spec.part_format,
            n_rows=sum(v.n_rows for v in self._videos),
            committed_at=time.time(),
            videos=tuple(self._videos),
            failures=tuple(self._failures),
            host=f"{socket.gethostname()}:{os.getpid()}",
            vidfeat_version=__version__,
        )
        won = fs.publish_commit(record)
        if not won:  # another attempt committed this part first: ours is garbage
            fs.fs.remove(self._rel)
        return CommitResult(
            self.part_id,
            self.attempt,
            won,
            len(self._videos),
            record.n_rows,
            len(self._failures),
        )

    def abort(self) -> None:
        """Drop the attempt: close its files and remove them (staged and published)."""
        if self._done:
            return
        self._done = True
        self._buffer.release()
        if self._sink is not None:
            self._sink.close()
        if self._target is not None:
            _remove_local(self._target)
        self.featureset.fs.remove(self._rel)

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


def _remove_local(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
