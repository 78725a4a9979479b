"""Part formats: one part = the rows of a few videos, written once, read many times.

Both formats hold four arrays (see docs/store-format.md):
    values (ΣT, D), offsets (n+1,), pts (ΣT,), frame_index (ΣT,)

A part is written through the format's library (zarr-python, h5py): ``values`` arrives in whole
shards from the writer's bounded row buffer, the small arrays at the end. The families
(``zarr_part``, ``hdf5_part``) import this module; ``formats`` imports the families.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidfeat.errors import ConfigError, StoreError

CHUNK_BYTES = 1 << 20  # inner chunks of about 1 MiB
SHARD_CHUNKS = 16  # chunks per shard; also the rows the writer buffers (about 16 MiB)
ARRAYS = ("values", "offsets", "pts", "frame_index")


def rows_per_chunk(row_bytes: int, n_rows: int) -> int:
    """Rows per chunk: about CHUNK_BYTES, and no more than the array has."""
    return min(max(n_rows, 1), max(1, CHUNK_BYTES // max(row_bytes, 1)))


def rows_per_write(dim: int, dtype: np.dtype[Any]) -> int:
    """Rows the writer hands to a sink at once: one shard of full chunks."""
    return SHARD_CHUNKS * rows_per_chunk(dim * dtype.itemsize, 1 << 62)


@dataclass(frozen=True, slots=True)
class ChunkMap:
    """Where the rows of an uncompressed array live in its files, for reads straight into the
    caller's buffer: chunk k holds rows [k*chunk_rows, …) at byte ``offsets[k]`` of
    ``files[file_of[k]]`` (offset -1: never written, reads as the fill value 0)."""

    chunk_rows: int
    row_bytes: int
    dtype: np.dtype[Any]
    files: tuple[Path, ...]
    file_of: np.ndarray
    offsets: np.ndarray

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        flat = out.reshape(-1).view(np.uint8)
        fds: dict[int, int] = {}
        try:
            row = start
            while row < stop:
                k, within = divmod(row, self.chunk_rows)
                first = k
                # Chunks that lie back to back in one shard file become one read.
                while (
                    (k + 1) * self.chunk_rows < stop
                    and k + 1 < len(self.offsets)
                    and self.offsets[k] >= 0
                    and self.file_of[k + 1] == self.file_of[k]
                    and self.offsets[k + 1] == self.offsets[k] + self.chunk_rows * self.row_bytes
                ):
                    k += 1
                take = min(stop, (k + 1) * self.chunk_rows) - row
                k = first
                dst = memoryview(flat.data)[
                    (row - start) * self.row_bytes : (row - start + take) * self.row_bytes
                ]
                if self.offsets[k] < 0:
                    dst[:] = bytes(len(dst))
                else:
                    f = int(self.file_of[k])
                    if f not in fds:
                        fds[f] = os.open(self.files[f], os.O_RDONLY)
                    _pread_all(fds[f], dst, int(self.offsets[k]) + within * self.row_bytes)
                row += take
        finally:
            for fd in fds.values():
                os.close(fd)


def _pread_all(fd: int, buf: memoryview, offset: int) -> None:
    while len(buf):
        n = os.preadv(fd, [buf], offset)
        if n <= 0:
            raise StoreError(f"Unexpected end of file while reading part data (fd {fd}).")
        buf = buf[n:]
        offset += n


class PartReader(ABC):
    """Reads rows of a part: straight from the files where ``_direct`` knows where they lie
    (uncompressed ``values`` and ``pts``), through the format's library otherwise."""

    n_rows: int
    dim: int
    dtype: np.dtype[Any]
    _direct: dict[str, ChunkMap | None]

    @abstractmethod
    def _array(self, name: str) -> Any:
        """The library's array ``name`` (zarr array, h5py dataset), sliceable by rows."""

    def reads_directly(self, name: str) -> bool:
        """Whether ``name`` is read from the files' bytes rather than through the library."""
        return self._direct.get(name) is not None

    def read_values(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows [start, stop) of ``values``, into ``out`` when given."""
        if out is None:
            out = np.empty((stop - start, self.dim), self.dtype)
        direct = self._direct.get("values")
        if direct is not None and direct.dtype == out.dtype:
            direct.read(start, stop, out)
        elif stop > start:
            out[...] = self._array("values")[start:stop]
        return out

    def read_1d(self, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """pts, frame_index or offsets, entries [start, stop)."""
        direct = self._direct.get(name)
        if direct is not None and stop is not None:
            out = np.empty(stop - start, direct.dtype)
            direct.read(start, stop, out)
            return out
        return np.asarray(self._array(name)[start:stop])

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class PartSink(ABC):
    """One part being written: ``write_values`` with each buffer of rows (every call but the
    last holds ``rows_per_write`` rows), ``finish`` with the small arrays, ``close`` always
    (the caller removes the files of an abandoned attempt)."""

    @abstractmethod
    def write_values(self, rows: np.ndarray) -> None: ...

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
