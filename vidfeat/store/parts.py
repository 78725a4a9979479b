"""Part formats: one part = the rows of a few videos, written once, read many times.

Both formats hold four arrays (see docs/store-format.md):
    values (ΣT, D), offsets (n+1,), pts (ΣT,), frame_index (ΣT,)

A part is written through the format's library (zarr-python, h5py): ``values`` arrives in whole
shards from the writer's bounded row buffer, the small arrays at the end. The families
(``zarr_part``, ``hdf5_part``) import this module; ``formats`` imports the families.
"""

from __future__ import annotations

import importlib
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
        self.read_many([(start, stop, out)])

    def read_many(self, pieces: list[tuple[int, int, np.ndarray]]) -> None:
        """Rows [lo, hi) into each ``out`` (C-contiguous), pieces in row order. Bytes that lie
        back to back in a file are read with one preadv into all their buffers, so videos that
        are neighbours in the part but not in the output still cost one read, not one each."""
        fds: dict[int, int] = {}
        batch: list[memoryview] = []
        at = (-1, -1)  # (file, byte offset) where the batch continues

        def flush() -> None:
            if batch:
                f, end = at
                _preadv_all(fds[f], batch, end - sum(len(b) for b in batch))
                batch.clear()

        try:
            for lo, hi, out in pieces:
                flat = out.reshape(-1).view(np.uint8).data
                row, pos = lo, 0
                while row < hi:
                    k, within = divmod(row, self.chunk_rows)
                    take = min(hi, (k + 1) * self.chunk_rows) - row
                    view = flat[pos : pos + take * self.row_bytes]
                    if self.offsets[k] < 0:  # never written: the fill value
                        view[:] = bytes(len(view))
                    else:
                        f = int(self.file_of[k])
                        offset = int(self.offsets[k]) + within * self.row_bytes
                        if (f, offset) != at or len(batch) >= _IOV_MAX:
                            flush()
                        if f not in fds:
                            fds[f] = os.open(self.files[f], os.O_RDONLY)
                        batch.append(view)
                        at = (f, offset + len(view))
                    row += take
                    pos += len(view)
            flush()
        finally:
            for fd in fds.values():
                os.close(fd)

    def to_layout(self, root: Path) -> dict[str, Any]:
        """The map as JSON, file names relative to the part's path ``root`` ("" = root)."""
        files = ["" if f == root else f.relative_to(root).as_posix() for f in self.files]
        return {
            "chunk_rows": self.chunk_rows,
            "files": files,
            "file_of": self.file_of.tolist(),
            "offsets": self.offsets.tolist(),
        }

    @classmethod
    def from_layout(
        cls, layout: dict[str, Any], root: Path, dtype: np.dtype[Any], row_bytes: int
    ) -> ChunkMap:
        """The inverse of ``to_layout`` (the layout is checked when its record is read)."""
        files = tuple(root / f if f else root for f in layout["files"])
        file_of = np.array(layout["file_of"], np.int64)
        return cls(
            int(layout["chunk_rows"]),
            row_bytes,
            dtype,
            files,
            file_of,
            np.array(layout["offsets"], np.int64),
        )


_IOV_MAX = 512  # buffers in one preadv (the system allows 1024)


def _preadv_all(fd: int, bufs: list[memoryview], offset: int) -> None:
    """Fill ``bufs`` from consecutive bytes at ``offset`` (short reads continue)."""
    i, done = 0, 0  # done: bytes of bufs[i] already filled
    while i < len(bufs):
        n = os.preadv(fd, [bufs[i][done:], *bufs[i + 1 :]], offset)
        if n <= 0:
            raise StoreError(f"Unexpected end of file while reading part data (fd {fd}).")
        offset += n
        n += done
        while i < len(bufs) and n >= len(bufs[i]):
            n -= len(bufs[i])
            i += 1
        done = n


class PartReader(ABC):
    """Reads rows of a part: straight from the files where ``_direct`` knows where they lie
    (uncompressed ``values`` and ``pts``), through the format's library otherwise."""

    path: Path
    n_rows: int
    dim: int
    dtype: np.dtype[Any]
    _direct: dict[str, ChunkMap | None]

    def layout(self) -> dict[str, Any]:
        """Where the directly readable arrays lie in the part's files: commit records keep it,
        so bulk reads need not open the part through its library."""
        return {n: m.to_layout(self.path) for n, m in self._direct.items() if m is not None}

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
    library: str  # the Python package that reads and writes it
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

    def import_library(self) -> None:
        """Import the library that writes this format now (a worker does it while its
        backbone warms up, not in its first part)."""
        importlib.import_module(self.library)
