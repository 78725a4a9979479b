"""A part's rows on their way to disk: checked, cast to the stored dtype, and handed to the
part's sink one whole shard at a time.

Each video's rows are copied into a buffer of one shard (about 16 MiB) in the stored dtype; a
full buffer is written by the sink on the caller's thread. The copy is needed anyway (float32
engine output becomes float16 here) and lets callers reuse their arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vidfeat.errors import ValueRangeError
from vidfeat.store.spec import FLOAT16_MAX, FLOAT16_ROUNDS_TO_INF


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
    """On the bits, with two max reductions and no temporary (numpy emulates float16
    arithmetic, which is slow; docs/performance.md, "Store"): as uint16, +inf/NaN are
    0x7C00-0x7FFF and -inf/NaN 0xFC00-0xFFFF; seen as int16, the first range is the top of the
    positive values."""
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


class RowBuffer:
    """``add`` the videos' rows; ``flush`` what is left at the end. ``write`` is called with
    every full buffer (``rows`` rows) and with the rest at ``flush``."""

    def __init__(
        self, dim: int, dtype: np.dtype[Any], rows: int, write: Callable[[np.ndarray], None]
    ) -> None:
        self.rows = np.empty((rows, dim), dtype)
        self.fill = 0
        self._write = write

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
                self.flush()
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
                self.flush()

    def flush(self) -> None:
        if self.fill:
            self._write(self.rows[: self.fill])
            self.fill = 0
