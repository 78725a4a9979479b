"""HDF5 parts: one file with four datasets.

``values`` is chunked along rows (chunks of about 1 MiB, ``maxshape=(None, D)``) and grows as
the writer streams rows in. Uncompressed chunks are allocated by HDF5 as the dataset grows and
their bytes written by vidfeat at the chunks' file addresses (plain little-endian rows, exactly
what HDF5 would write); compressed ones (``lzf``, ``gzip``) go through h5py. The three small
arrays are contiguous, written at the end. Objects of 64 KiB and more (the chunks) are aligned
to 4 KiB in the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.store.fileio import preallocate, pwrite_all, zeros
from vidfeat.store.parts import (
    PAGE_BYTES,
    Extents,
    PartFormat,
    PartReader,
    PartSink,
    no_write,
    row_bytes_of,
    rows_per_chunk,
)

ALIGN_ABOVE = 64 * 1024


class _Hdf5Sink(PartSink):
    def __init__(self, path: Path, dim: int, dtype: np.dtype[Any], compression: str | None) -> None:
        import h5py

        self.path, self.dim, self.dtype, self.compression = path, dim, np.dtype(dtype), compression
        # Objects from 64 KiB (the chunks) start on page boundaries, so chunk writes are whole
        # pages: 7% faster part writes here.
        self.file: Any = h5py.File(
            path, "w-", alignment_threshold=ALIGN_ABOVE, alignment_interval=PAGE_BYTES
        )
        self.file.attrs["vidfeat_part"] = 1
        # Uncompressed chunks are written by vidfeat through a second descriptor (below).
        self._fd: int | None = os.open(path, os.O_WRONLY)
        self._values: Any = None  # created with the first rows, when the chunk size is known
        self._chunk_rows = 0
        self.n_rows = 0

    def _create_values(self, chunk_rows: int) -> Any:
        self._chunk_rows = chunk_rows
        if self.compression is not None:
            return self.file.create_dataset(
                "values",
                shape=(0, self.dim),
                maxshape=(None, self.dim),
                chunks=(chunk_rows, self.dim),
                dtype=self.dtype,
                compression=self.compression,
            ).id
        import h5py

        # Chunks are allocated as soon as the dataset grows (ALLOC_TIME_EARLY) and never
        # filled by HDF5 (FILL_TIME_NEVER): vidfeat writes their bytes itself, at the addresses
        # HDF5 gives them. Going through H5Dwrite_chunk instead cost 40 µs per 1 MiB chunk.
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((chunk_rows, self.dim))
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple((0, self.dim), (h5py.h5s.UNLIMITED, self.dim))
        return h5py.h5d.create(
            self.file.id, b"values", h5py.h5t.py_create(self.dtype), space, dcpl=dcpl
        )

    def prepare(self, rows: np.ndarray) -> Callable[[], None]:
        """HDF5 allocates the chunks here (set_extent), on the caller's thread; the job only
        writes their bytes. (On the writing thread the HDF5 calls waited for the GIL and took
        2.5x as long.)"""
        if not len(rows):
            return no_write
        if self._values is None:
            # Full-size chunks, unless the whole part is smaller than one.
            self._values = self._create_values(rows_per_chunk(rows[0].nbytes, len(rows)))
        dsid = self._values
        start = self.n_rows
        self.n_rows += len(rows)
        dsid.set_extent((self.n_rows, self.dim))
        if self.compression is not None:
            values, stop = self.file["values"], self.n_rows
            contiguous = np.ascontiguousarray(rows)
            return lambda: values.write_direct(contiguous, dest_sel=np.s_[start:stop])
        chunk = self._chunk_rows
        n_chunks = -(-len(rows) // chunk)
        data = np.ascontiguousarray(rows).reshape(-1).view(np.uint8)
        chunk_bytes = chunk * rows[0].nbytes
        addrs = [
            dsid.get_chunk_info_by_coord((start + k * chunk, 0)).byte_offset
            for k in range(n_chunks)
        ]
        # (file offset, bytes); chunks allocated one after another go in one call
        writes: list[tuple[int, Any]] = []
        k = 0
        while k < n_chunks:
            run = 1
            while k + run < n_chunks and addrs[k + run] == addrs[k] + run * chunk_bytes:
                run += 1
            writes.append((addrs[k], data[k * chunk_bytes : (k + run) * chunk_bytes]))
            k += run
        pad = n_chunks * chunk_bytes - len(data)  # the part's last chunk: fill value 0
        if pad:
            writes.append((addrs[-1] + chunk_bytes - pad, zeros(pad)))
        fd = self._fd
        assert fd is not None

        def write() -> None:
            for offset, piece in writes:
                preallocate(fd, offset, len(piece))
                pwrite_all(fd, piece, offset)

        return write

    def finish(self, offsets: np.ndarray, pts: np.ndarray, frame_index: np.ndarray) -> None:
        if self._values is None:
            self._values = self._create_values(1)
        assert self.n_rows == int(offsets[-1]), "rows/offsets mismatch"
        for name, data in (("offsets", offsets), ("pts", pts), ("frame_index", frame_index)):
            if len(data):
                self.file.create_dataset(name, data=data)  # contiguous
            else:  # HDF5 has no empty contiguous datasets with a size; chunked it is
                self.file.create_dataset(
                    name, shape=(0,), maxshape=(None,), chunks=(1,), dtype=data.dtype
                )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self._values = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Hdf5Reader(PartReader):
    def __init__(self, path: Path) -> None:
        import h5py

        try:
            self.file = h5py.File(path, "r")
            values = self.file["values"]
        except (FileNotFoundError, OSError, KeyError) as e:
            raise StoreError(f"Part {path} is missing or unreadable: {e}") from None
        self.path = path
        self.n_rows, self.dim = values.shape
        self.dtype = np.dtype(values.dtype)
        self._extents = {name: self._extents_of(name) for name in ("values", "pts")}

    def _extents_of(self, name: str) -> Extents | None:
        ds = self.file[name]
        if ds.compression is not None or ds.shape[0] == 0 or ds.dtype.byteorder == ">":
            return None
        if ds.chunks is None:  # contiguous: one extent
            offset = ds.id.get_offset()
            if offset is None:
                return None
            n = ds.shape[0]
            return Extents(self.path, n, (int(offset),), tuple(ds.shape[1:]), np.dtype(ds.dtype))
        if list(ds.chunks[1:]) != list(ds.shape[1:]):
            return None
        n = ds.id.get_num_chunks()
        infos = sorted((ds.id.get_chunk_info(i) for i in range(n)), key=lambda s: s.chunk_offset)
        chunk_bytes = ds.chunks[0] * row_bytes_of(ds.shape, np.dtype(ds.dtype))
        if len(infos) != -(-ds.shape[0] // ds.chunks[0]) or any(
            s.size != chunk_bytes or s.filter_mask for s in infos
        ):
            return None
        return Extents(
            self.path,
            ds.chunks[0],
            tuple(int(s.byte_offset) for s in infos),
            tuple(ds.shape[1:]),
            np.dtype(ds.dtype),
        )

    def _array(self, name: str) -> Any:
        return self.file[name]

    def close(self) -> None:
        self.file.close()


class Hdf5Format(PartFormat):
    name = "hdf5"
    suffix = ".h5"
    compressions = (None, "lzf", "gzip")
    sink = _Hdf5Sink
    reader = _Hdf5Reader
