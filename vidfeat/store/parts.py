"""Part formats: one part = the rows of a few videos, written once, read many times.

Both formats hold four arrays (see docs/store-format.md):
    values (ΣT, D), offsets (n+1,), pts (ΣT,), frame_index (ΣT,)

Writing streams: the part writer hands ``values`` to a ``PartSink`` a few MiB at a time (whole
chunks), and the small arrays at the end. Uncompressed values are written by vidfeat itself in
the exact layout the libraries produce (zarr's shard format; HDF5 chunks at the addresses HDF5
allocates for them), so plain zarr, h5py and xarray read them (tests/store/
test_plain_readers.py). Reading has a fast path: for uncompressed parts the byte extent of
every row range is known from the shard index (zarr) or chunk table (HDF5), so rows are read
with ``os.preadv`` straight into the caller's buffer. Compressed parts go through the libraries.
"""

from __future__ import annotations

import functools
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidfeat.errors import ConfigError, StoreError

CHUNK_BYTES = 1 << 20  # inner chunks of about 1 MiB
PAGE_BYTES = 4096
ARRAYS = ("values", "offsets", "pts", "frame_index")
FLUSH_CHUNKS = 4  # the writer hands values to the sink in pieces of 4 chunks (about 4 MiB)


def rows_per_chunk(row_bytes: int, n_rows: int) -> int:
    """Rows per chunk: about CHUNK_BYTES, and no more than the array has. Where the row size
    allows, a whole number of pages: chunks then start on page boundaries in a shard, and the
    page cache takes whole-page writes (6% faster writes here than chunks of 409 rows of 2560
    bytes)."""
    row_bytes = max(row_bytes, 1)
    rows = max(1, CHUNK_BYTES // row_bytes)
    pages_step = PAGE_BYTES // math.gcd(row_bytes, PAGE_BYTES)  # rows that fill whole pages
    if rows >= pages_step:
        rows -= rows % pages_step
    return min(max(n_rows, 1), rows)


def flush_rows(dim: int, dtype: np.dtype[Any]) -> int:
    """Rows per piece handed to a sink: a whole number of full chunks."""
    return FLUSH_CHUNKS * rows_per_chunk(dim * dtype.itemsize, 1 << 62)


@dataclass(frozen=True, slots=True)
class Extents:
    """Where rows live in one file: chunk k holds rows [k*rows, …) at file offset starts[k]."""

    file: Path
    chunk_rows: int
    starts: tuple[int, ...]
    row_shape: tuple[int, ...]
    dtype: np.dtype[Any]

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        row_bytes = out.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64))
        flat = out.reshape(-1).view(np.uint8) if out.size else out.view(np.uint8)
        fd = os.open(self.file, os.O_RDONLY)
        try:
            row = start
            while row < stop:
                k, within = divmod(row, self.chunk_rows)
                take = min(stop, (k + 1) * self.chunk_rows) - row
                # Consecutive chunks that sit back to back on disk become one read.
                while (
                    row + take < stop
                    and k + 1 < len(self.starts)
                    and self.starts[k + 1] == self.starts[k] + self.chunk_rows * row_bytes
                ):
                    k += 1
                    take = min(stop, (k + 1) * self.chunk_rows) - row
                dst = memoryview(flat.data)[
                    (row - start) * row_bytes : (row - start + take) * row_bytes
                ]
                src = self.starts[row // self.chunk_rows] + within * row_bytes
                _pread_all(fd, dst, src)
                row += take
        finally:
            os.close(fd)


def _pread_all(fd: int, buf: memoryview, offset: int) -> None:
    while len(buf):
        n = os.preadv(fd, [buf], offset)
        if n <= 0:
            raise StoreError(f"Unexpected end of file while reading part data (fd {fd}).")
        buf = buf[n:]
        offset += n


class PartReader(ABC):
    """Reads a part: straight from the file's bytes where ``_extents`` knows them
    (uncompressed parts), through the format's library otherwise (``_array``)."""

    n_rows: int
    dim: int
    dtype: np.dtype[Any]
    _extents: dict[str, Extents | None]  # "values" and "pts"

    @abstractmethod
    def _array(self, name: str) -> Any:
        """The library's array ``name`` (zarr array, h5py dataset), sliceable by rows."""

    def read_values(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            out = np.empty((stop - start, self.dim), self.dtype)
        ext = self._extents["values"]
        if ext is not None and ext.dtype == out.dtype:
            ext.read(start, stop, out)
        elif stop > start:
            out[...] = self._array("values")[start:stop]
        return out

    def read_1d(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """pts, frame_index or offsets, rows [start, stop)."""
        ext = self._extents.get(name)
        if ext is not None and stop is not None:
            out = np.empty(stop - start, ext.dtype)
            ext.read(start, stop, out)
            return out
        return np.asarray(self._array(name)[start:stop])

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def no_write() -> None:
    """The job of rows that need no write now (compressed zarr parts write at finish)."""


class PartSink(ABC):
    """One part being written. ``values`` rows stream in through ``prepare``; ``finish`` adds
    the small arrays and completes the files; ``close`` releases handles (after finish and
    every job, or when the attempt is abandoned; the caller then removes the files)."""

    @abstractmethod
    def prepare(self, rows: np.ndarray) -> Callable[[], None]:
        """Book C-contiguous ``rows`` (stored dtype) into the part, on the caller's thread, and
        return the job that writes their bytes. Jobs may run on another thread, one at a
        time and in order, also while the next ``prepare`` or ``finish`` runs (those never
        touch the bytes a job writes); ``rows`` must stay untouched until its job is done.
        Every call but the last holds a multiple of the full chunk size,
        ``rows_per_chunk(row_bytes, <many>)`` rows."""

    @abstractmethod
    def finish(self, offsets: np.ndarray, pts: np.ndarray, frame_index: np.ndarray) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class PartFormat:
    """A part format: its name, file suffix, compressions, and the classes that write
    (``sink``: path, dim, dtype, compression) and read (``reader``: path) its parts."""

    name: str
    suffix: str
    compressions: tuple[str | None, ...]
    sink: Callable[[Path, int, np.dtype[Any], str | None], PartSink]
    reader: Callable[[Path], PartReader]

    def check_compression(self, compression: str | None) -> None:
        if compression not in self.compressions:
            allowed = ", ".join(str(c) for c in self.compressions)
            raise ConfigError(
                f"Invalid compression {compression!r} for {self.name} parts. Supported: {allowed}."
            )

    def create(
        self, path: Path, dim: int, dtype: np.dtype[Any], compression: str | None = None
    ) -> PartSink:
        """Start writing a part at ``path`` (which must not exist)."""
        self.check_compression(compression)
        return type(self).sink(path, dim, dtype, compression)

    def open(self, path: Path) -> PartReader:
        return type(self).reader(path)


def row_bytes_of(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))


@functools.cache
def _formats() -> dict[str, PartFormat]:
    from vidfeat.store.hdf5_part import Hdf5Format
    from vidfeat.store.zarr_part import ZarrFormat

    return {"zarr": ZarrFormat(), "hdf5": Hdf5Format()}


def get_format(name: str) -> PartFormat:
    try:
        return _formats()[name]
    except KeyError:
        raise ConfigError(
            f"Invalid part format ({name!r}). Supported: {', '.join(_formats())}."
        ) from None
