"""HDF5 parts: one file with four datasets, written and read through h5py.

``values`` is chunked along rows (chunks of about 1 MiB, ``maxshape=(None, D)``) and grows by
one buffer of whole chunks at a time; ``lzf`` and ``gzip`` compress it. The three small arrays
are contiguous, written at the end. Uncompressed datasets are read from the file's bytes at the
chunk addresses HDF5 reports (``parts.ChunkMap``), compressed ones through h5py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.store.parts import ChunkMap, PartFormat, PartReader, PartSink, rows_per_chunk


class _Hdf5Sink(PartSink):
    def __init__(self, path: Path, dim: int, dtype: np.dtype[Any], compression: str | None) -> None:
        import h5py

        self.dim, self.dtype, self.compression = dim, np.dtype(dtype), compression
        self.file: Any = h5py.File(path, "w-")
        self.file.attrs["vidfeat_part"] = 1
        self._values: Any = None  # created with the first rows, when the chunk size is known
        self.n_rows = 0

    def _create_values(self, chunk_rows: int) -> Any:
        return self.file.create_dataset(
            "values",
            shape=(0, self.dim),
            maxshape=(None, self.dim),
            chunks=(chunk_rows, self.dim),
            dtype=self.dtype,
            compression=self.compression,
        )

    def write_values(self, rows: np.ndarray) -> None:
        if self._values is None:
            self._values = self._create_values(
                rows_per_chunk(self.dim * self.dtype.itemsize, len(rows))
            )
        stop = self.n_rows + len(rows)
        self._values.resize(stop, axis=0)
        self._values[self.n_rows : stop] = rows
        self.n_rows = stop

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


class _Hdf5Reader(PartReader):
    def __init__(self, path: Path) -> None:
        import h5py

        try:
            self.file = h5py.File(path, "r")
            self._values = self.file["values"]
        except (FileNotFoundError, OSError, KeyError) as e:
            raise StoreError(f"Part {path} is missing or unreadable: {e}") from None
        self.path = path
        self.n_rows, self.dim = self._values.shape
        self.dtype = np.dtype(self._values.dtype)
        self._direct = {name: self._chunk_map(name) for name in ("values", "pts")}

    def _chunk_map(self, name: str) -> ChunkMap | None:
        """Byte locations of an uncompressed little-endian dataset's rows: read from the file at
        these, ``load()`` is faster than through h5py's own reads of chunked data
        (docs/performance.md, "The read path keeps its fast path")."""
        ds = self.file[name]
        dtype = np.dtype(ds.dtype)
        if ds.compression is not None or ds.shape[0] == 0 or dtype.byteorder == ">":
            return None
        row_bytes = dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64))
        if ds.chunks is None:  # contiguous: one piece
            offset = ds.id.get_offset()
            if offset is None:
                return None
            chunk_rows, offsets = ds.shape[0], [int(offset)]
        else:
            chunk_rows = ds.chunks[0]
            infos = sorted(
                (ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())),
                key=lambda info: info.chunk_offset,
            )
            if len(infos) != -(-ds.shape[0] // chunk_rows) or any(
                info.size != chunk_rows * row_bytes or info.filter_mask for info in infos
            ):
                return None
            offsets = [int(info.byte_offset) for info in infos]
        n = len(offsets)
        return ChunkMap(
            chunk_rows, row_bytes, dtype, (self.path,), np.zeros(n, np.int64), np.array(offsets)
        )

    def _array(self, name: str) -> Any:
        return self.file[name]

    def close(self) -> None:
        self.file.close()


class Hdf5Format(PartFormat):
    name = "hdf5"
    suffix = ".h5"
    compressions = (None, "lzf", "gzip")
    library = "h5py"
    sink = _Hdf5Sink
    reader = _Hdf5Reader
