"""Random access to stored rows without loading them: the out-of-core reader of a feature set.

Rows are numbered as ``FeatureSet.load`` numbers them (video i owns offsets[i]:offsets[i+1]),
so a reader and a loaded array answer the same row indices with the same values. A read sorts
the asked rows by where they lie, merges neighbours into one read, and reads each part straight
from its files where its commit record has the byte layout (through the format's library
otherwise); the page cache is the only cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.store.parts import ChunkMap, PartReader


@dataclass
class RowReader:
    """``take(rows)``: the rows (any shape of int64 indices) → (*shape, D) in the stored dtype."""

    offsets: np.ndarray  # (n+1,) int64
    video_ids: list[str]
    labels: list[str | None]
    splits: list[str | None]
    dim: int
    dtype: np.dtype[Any]
    part_paths: list[str]  # the parts, indexed by part_of
    part_of: np.ndarray  # (n,) the part of video i
    row_start: np.ndarray  # (n,) video i's first row within its part
    direct: Callable[[str], ChunkMap | None]  # a part's values map, where its layout is known
    library: Callable[[str], PartReader]  # a part opened through its format's library
    describe: str = ""  # "feature set 'x' of store y", for errors

    def __post_init__(self) -> None:
        self._maps: dict[int, ChunkMap | None] = {}
        self._base = np.zeros(len(self.part_paths) + 1, np.int64)  # storage row of a part's row 0
        if len(self.part_of):
            stops = self.row_start + np.diff(self.offsets)
            ends = np.zeros(len(self.part_paths), np.int64)
            np.maximum.at(ends, self.part_of, stops)
            np.cumsum(ends, out=self._base[1:])

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def nbytes(self) -> int:
        """Bytes of every row in memory (what ``load`` would allocate for them)."""
        return int(self.offsets[-1]) * self.dim * self.dtype.itemsize

    def take(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        flat = rows.reshape(-1)
        if len(flat) and (flat.min() < 0 or flat.max() >= self.offsets[-1]):
            raise IndexError(f"Row index out of range [0, {int(self.offsets[-1])}).")
        if not len(flat):
            return np.zeros((*rows.shape, self.dim), self.dtype)
        video = np.searchsorted(self.offsets, flat, side="right") - 1
        part = self.part_of[video]
        stored = self._base[part] + self.row_start[video] + flat - self.offsets[video]
        unique, inverse = np.unique(stored, return_inverse=True)  # in storage order
        buf = np.empty((len(unique), self.dim), self.dtype)
        upart = np.searchsorted(self._base, unique, side="right") - 1
        local = unique - self._base[upart]
        new_run = np.ones(len(unique), bool)
        new_run[1:] = (upart[1:] != upart[:-1]) | (local[1:] != local[:-1] + 1)
        first = np.flatnonzero(new_run)
        last = np.r_[first[1:], len(unique)]
        by_part: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for a, b in zip(first.tolist(), last.tolist(), strict=True):
            lo = int(local[a])
            by_part.setdefault(int(upart[a]), []).append((lo, lo + b - a, buf[a:b]))
        for p, pieces in by_part.items():
            self._read(p, pieces)
        return buf[inverse].reshape(*rows.shape, self.dim)

    def _read(self, p: int, pieces: list[tuple[int, int, np.ndarray]]) -> None:
        path = self.part_paths[p]
        try:
            if p not in self._maps:
                self._maps[p] = self.direct(path)
            chunks = self._maps[p]
            if chunks is not None:
                chunks.read_many(pieces)
                return
            reader = self.library(path)
            for lo, hi, out in pieces:
                reader.read_values(lo, hi, out)
        except Exception as e:  # missing, truncated or garbled: all say the same
            raise StoreError(
                f"Part {path} of {self.describe} cannot be read ({type(e).__name__}: {e}). "
                "Run `vidfeat verify` on the store to list every damaged part."
            ) from None
