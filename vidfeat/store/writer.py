"""Writing one part: buffer the videos of a part, write the data under a unique attempt
name, then publish it by creating the commit record (create-only; the first commit wins)."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from vidfeat import __version__
from vidfeat.errors import StoreError, ValueRangeError
from vidfeat.store.parts import PartArrays, get_format
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
    emulated by numpy and 10x slower, so float16 input is checked on its exponent bits."""
    if values.dtype == np.float16:
        if values.size and int(np.max(values.view(np.uint16) & 0x7FFF)) >= 0x7C00:
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


class _RowSlabs:
    """The part's rows, appended into a few large preallocated slabs in the stored dtype. The
    append is the one copy a write needs anyway (the cast to float16), and the writers then
    hand each slab to the disk in one call: writing thousands of small per-video arrays was 2x
    slower than writing the same bytes in big pieces."""

    SLAB_BYTES = 32 << 20

    def __init__(self, dim: int, dtype: np.dtype[Any]) -> None:
        self.dim, self.dtype = dim, dtype
        self.slab_rows = max(1, self.SLAB_BYTES // (dim * dtype.itemsize))
        self._slabs: list[np.ndarray] = []
        self._fill = 0  # rows used in the last slab

    def append(self, values: np.ndarray) -> None:
        done = 0
        while done < len(values):
            if not self._slabs or self._fill == len(self._slabs[-1]):
                self._slabs.append(np.empty((self.slab_rows, self.dim), self.dtype))
                self._fill = 0
            take = min(len(values) - done, self.slab_rows - self._fill)
            np.copyto(self._slabs[-1][self._fill : self._fill + take], values[done : done + take])
            self._fill += take
            done += take

    def blocks(self) -> tuple[np.ndarray, ...]:
        if not self._slabs:
            return ()
        return (*self._slabs[:-1], self._slabs[-1][: self._fill])


class PartWriter:
    """``with fs.writer(part_id) as w: w.add_video(...); w.add_failure(...); w.commit()``.

    Leaving the block without committing (an exception) removes the attempt's data."""

    def __init__(self, featureset: FeatureSet, part_id: str) -> None:
        self.featureset = featureset
        self.part_id = check_name("part id", part_id)
        self.attempt = uuid.uuid4().hex[:12]
        fmt = get_format(featureset.spec.part_format)
        self._format = fmt
        self.rel_path = f"parts/{part_id}-{self.attempt}{fmt.suffix}"
        self._videos: list[VideoRecord] = []
        self._ids: set[str] = set()
        self._values = _RowSlabs(featureset.spec.feature_dim, np.dtype(featureset.spec.dtype))
        self._pts: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self._failures: list[FailureRecord] = []
        self._done = False

    def add_video(
        self, record: VideoRecord, values: np.ndarray, pts: np.ndarray, frame_index: np.ndarray
    ) -> None:
        spec = self.featureset.spec
        values = np.asarray(values)
        n = values.shape[0]
        if values.ndim != 2 or values.shape[1] != spec.feature_dim:
            raise StoreError(
                f"Video {record.video_id!r}: values have shape {values.shape}, "
                f"expected (rows, {spec.feature_dim})."
            )
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
        self._values.append(values)
        self._pts.append(np.asarray(pts, np.float64))
        self._frames.append(np.asarray(frame_index, np.int64))

    def add_failure(self, failure: FailureRecord) -> None:
        self._failures.append(failure)

    def _arrays(self) -> PartArrays:
        spec = self.featureset.spec
        counts = [v.n_rows for v in self._videos]
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        if self._pts:
            pts = np.concatenate(self._pts)
            frames = np.concatenate(self._frames)
        else:
            pts, frames = np.zeros(0, np.float64), np.zeros(0, np.int64)
        dtype = np.dtype(spec.dtype)
        return PartArrays(self._values.blocks(), spec.feature_dim, dtype, offsets, pts, frames)

    def commit(self) -> CommitResult:
        if self._done:
            raise StoreError(f"Part {self.part_id} was already committed or aborted.")
        self._done = True
        fs = self.featureset
        arrays = self._arrays()
        rel = f"{fs.prefix}/{self.rel_path}"
        target = fs.fs.staging_path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._format.write(target, arrays, fs.spec.compression)
            fs.fs.publish(rel, target)  # uploads on object stores; the part is still invisible
        except BaseException:
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(
                missing_ok=True
            )
            fs.fs.remove(rel)
            raise
        record = CommitRecord(
            part_id=self.part_id,
            attempt=self.attempt,
            path=self.rel_path,
            part_format=fs.spec.part_format,
            n_rows=int(arrays.offsets[-1]),
            committed_at=time.time(),
            videos=tuple(self._videos),
            failures=tuple(self._failures),
            host=f"{socket.gethostname()}:{os.getpid()}",
            vidfeat_version=__version__,
        )
        won = fs.publish_commit(record)
        if not won:  # another attempt committed this part first: ours is garbage
            fs.fs.remove(f"{fs.prefix}/{self.rel_path}")
        return CommitResult(
            self.part_id,
            self.attempt,
            won,
            len(self._videos),
            record.n_rows,
            len(self._failures),
        )

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self.featureset.fs.remove(f"{self.featureset.prefix}/{self.rel_path}")

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
