"""A part's rows on their way to disk: checked, cast to the stored dtype, and written in big
pieces by a helper thread while the next piece fills.

Each video's rows are copied into a buffer of a few MiB (whole chunks) in the stored dtype;
a full buffer goes to the part's sink on a helper thread and filling goes on in a second
buffer. So the disk write (a copy into the page cache) overlaps with the copy, the check and
the caller's own work: 5-15% faster part writes here than on the caller's thread. The
copy is needed anyway (float32 engine output becomes float16 here) and cheap (the buffers stay
in the CPU's cache). Writing straight from the caller's arrays was slower (a syscall per
video), and keeping references to them until a big write would break callers that reuse
their arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import numpy as np

from vidfeat.errors import ValueRangeError
from vidfeat.store.parts import PartSink, flush_rows
from vidfeat.store.spec import FLOAT16_MAX, FLOAT16_ROUNDS_TO_INF

T = TypeVar("T")


def check_values(video_id: str, values: np.ndarray, dtype: np.dtype[Any]) -> None:
    """No NaN or inf, and values that fit ``dtype`` (float32 values that would round to inf
    in float16, |x| >= 65520, are refused)."""
    if not values.size:
        return
    if values.dtype == np.float16:
        if _float16_has_nan_or_inf(values):
            raise ValueRangeError(f"Video {video_id!r}: features contain NaN or inf.")
        return
    lo, hi = float(values.min()), float(values.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueRangeError(f"Video {video_id!r}: features contain NaN or inf.")
    if dtype == np.float16 and max(-lo, hi) >= FLOAT16_ROUNDS_TO_INF:
        raise ValueRangeError(
            f"Video {video_id!r}: feature values up to {max(-lo, hi):g} do not fit float16 "
            f"(max {FLOAT16_MAX:g}). Use --dtype float32."
        )


def _float16_has_nan_or_inf(values: np.ndarray) -> bool:
    """On the bits, with two max reductions and no temporary (float16 arithmetic is emulated by
    numpy and 10x slower): as uint16, +inf/NaN are 0x7C00-0x7FFF and -inf/NaN 0xFC00-0xFFFF;
    seen as int16, the first range is the top of the positive values."""
    bits = values.view(np.uint16)
    return int(bits.view(np.int16).max()) >= 0x7C00 or int(bits.max()) >= 0xFC00


def _has_nan_or_inf(rows: np.ndarray) -> bool:
    """For rows already in the stored dtype (a float16 overflow has become inf there)."""
    if not rows.size:
        return False
    if rows.dtype == np.float16:
        return _float16_has_nan_or_inf(rows)
    return not (np.isfinite(rows.min()) and np.isfinite(rows.max()))


def _copy_cast(dest: np.ndarray, values: np.ndarray) -> None:
    if values.dtype == dest.dtype:
        dest[...] = values
        return
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow becomes inf: refused
        dest[...] = values


class RowStream:
    """``add`` the videos' rows; ``finish`` hands over what is left, ``wait`` until it is
    written; ``release`` always, last.

    ``open_sink`` gives the part's sink; it is called on the caller's thread before the first
    write, so that the helper thread only writes (rows, and the jobs given to ``after``). An
    error of a write in the background is raised by the next ``add`` or by ``wait``."""

    _spare: ClassVar[dict[tuple[int, int, str], list[np.ndarray]]] = {}
    _spare_lock: ClassVar[threading.Lock] = threading.Lock()
    KEEP_SPARE = 4  # buffers per shape and dtype kept for the next parts of this process

    def __init__(self, dim: int, dtype: np.dtype[Any], open_sink: Callable[[], PartSink]) -> None:
        self._key = (flush_rows(dim, dtype), dim, dtype.str)
        self._open_sink = open_sink
        self.rows = self._take_buffer()
        self.fill = 0
        self._other: np.ndarray | None = None  # the buffer being written, or free
        self._writing: list[Future[Any]] = []  # in order; the last rows may add one
        self._pool: ThreadPoolExecutor | None = None

    def _take_buffer(self) -> np.ndarray:
        # A buffer left by an earlier part of this process: a fresh one costs 0.7 ms of page
        # faults, 5% of a 50 MiB part's write.
        with self._spare_lock:
            spare = self._spare.get(self._key)
            rows = spare.pop() if spare else None
        return rows if rows is not None else np.empty(self._key[:2], np.dtype(self._key[2]))

    def add(self, video_id: str, values: np.ndarray) -> None:
        """Copy one video's rows in, refusing NaN/inf (ValueRangeError) with nothing kept."""
        n, free = len(values), len(self.rows) - self.fill
        if n <= free:
            # Checked after the copy, on the rows in the stored dtype while they sit in the
            # CPU's cache: one pass over the caller's memory instead of two. They only count
            # once ``fill`` moves past them.
            dest = self.rows[self.fill : self.fill + n]
            _copy_cast(dest, values)
            if _has_nan_or_inf(dest):
                check_values(video_id, values, self.rows.dtype)  # raises, saying why
                raise ValueRangeError(f"Video {video_id!r}: features contain NaN or inf.")
            self.fill += n
            if self.fill == len(self.rows):
                self._write_full()
            return
        # The video spans a write, and written rows cannot be taken back: check it first.
        check_values(video_id, values, self.rows.dtype)
        done = 0
        while done < n:
            take = min(n - done, len(self.rows) - self.fill)
            _copy_cast(self.rows[self.fill : self.fill + take], values[done : done + take])
            self.fill += take
            done += take
            if self.fill == len(self.rows):
                self._write_full()

    def _write_full(self) -> None:
        """Hand the full buffer to the helper thread and go on filling the other one."""
        sink = self._open_sink()
        job = sink.prepare(self.rows)  # bookkeeping here, while the helper still writes
        self.wait()  # the other buffer is free once its write is done
        full = self.rows
        self.rows = self._other if self._other is not None else self._take_buffer()
        self._other = full
        self._submit(job)
        self.fill = 0

    def _submit(self, job: Callable[[], T]) -> Future[T]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidfeat-part-write")
        future = self._pool.submit(job)
        self._writing.append(future)
        return future

    def after(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` on the helper thread once the rows handed over so far are written
        (``wait`` waits for it too and raises its error), or right here if this part has not
        needed a helper thread (it raises then)."""
        if self._pool is None:
            done: Future[T] = Future()
            done.set_result(job())
            return done
        return self._submit(job)

    def finish(self) -> None:
        """Hand the last rows to the helper thread as well, without waiting: the caller
        completes the part's other files meanwhile, then calls ``wait``. A part smaller than
        one buffer is written right here: a thread is not worth starting for it."""
        if self.fill:
            job = self._open_sink().prepare(self.rows[: self.fill])
            if self._pool is None:
                job()
            else:
                self._submit(job)
            self.fill = 0  # (nothing may be added after finish)

    def wait(self) -> None:
        """Wait until every job handed over is done; raises the error of a failed write."""
        writing, self._writing = self._writing, []
        for future in writing:
            future.result()

    def release(self) -> None:
        """Wait for any write in flight (its error, if any, is dropped: the caller is
        finishing or abandoning the part) and keep the buffers for the next part."""
        for future in self._writing:
            future.exception()
        self._writing = []
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        buffers = [b for b in (self.rows, self._other) if b is not None and len(b)]
        self.rows, self._other, self.fill = self.rows[:0], None, 0
        with self._spare_lock:
            spare = self._spare.setdefault(self._key, [])
            spare.extend(buffers[: max(0, self.KEEP_SPARE - len(spare))])
