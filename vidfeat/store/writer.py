"""Writing one part: stream the videos' rows into files under a unique attempt name
(``rows.py``), then publish them by creating the commit record (create-only; the first commit
wins)."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from vidfeat import __version__
from vidfeat.errors import StoreError, ValueRangeError
from vidfeat.store.fs import StagedCreate
from vidfeat.store.parts import PartSink, get_format
from vidfeat.store.records import CommitRecord, FailureRecord, VideoRecord
from vidfeat.store.rows import RowStream
from vidfeat.store.spec import check_name

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
        self._videos_json: list[str] = []  # encoded as added, while rows are being written
        self._ids: set[str] = set()
        self._dtype = np.dtype(featureset.spec.dtype)
        self._rows = RowStream(featureset.spec.feature_dim, self._dtype, self._open_sink)
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
        if record.video_id in self._ids:
            raise StoreError(f"Video {record.video_id!r} added twice to part {self.part_id}.")
        encoded = record.encode()  # here, while the helper thread writes rows
        try:
            self._rows.add(record.video_id, values)
        except ValueRangeError:
            raise  # this video is refused; the part goes on
        except BaseException:
            self.abort()  # a failed write (disk full, …) leaves nothing behind
            raise
        self._videos.append(record)
        self._videos_json.append(encoded)
        self._ids.add(record.video_id)
        self._pts.append(np.array(pts, np.float64))  # copies: callers may reuse theirs
        self._frames.append(np.array(frame_index, np.int64))

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

    def _finish(self) -> None:
        """Complete the part's files: the small arrays and metadata, written on this thread
        while the helper thread writes the last rows (``rows.finish``, called before)."""
        sink = self._open_sink()  # a part of failures only has had no rows yet
        counts = [v.n_rows for v in self._videos]
        offsets = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        pts = np.concatenate(self._pts) if self._pts else np.zeros(0, np.float64)
        frames = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)
        sink.finish(offsets, pts, frames)
        self._rows.wait()
        sink.close()
        self._rows.release()

    def commit(self) -> CommitResult:
        if self._done:
            raise StoreError(f"Part {self.part_id} was already committed or aborted.")
        fs = self.featureset
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
        staging: Future[StagedCreate] | None = None
        try:
            self._rows.finish()
            # The commit record is staged (written and fsynced, still invisible) by the helper
            # thread after the last rows, while this thread completes the part's files.
            staging = self._rows.after(lambda: fs.stage_commit(record, self._videos_json))
            self._finish()
            staged = staging.result()
            assert self._target is not None
            fs.fs.publish(self._rel, self._target)  # uploads on object stores; still invisible
        except BaseException:
            self.abort()  # also waits for the helper thread
            if staging is not None and not staging.cancelled() and staging.exception() is None:
                staging.result().discard()
            raise
        self._done = True
        won = fs.publish_commit(staged)
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
        self._rows.release()
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
