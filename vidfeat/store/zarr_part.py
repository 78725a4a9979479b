"""Zarr v3 parts: a group of four sharded arrays, written through zarr-python.

``values`` grows one whole shard at a time (the writer's row buffer holds one shard), so no
shard is ever read back or rewritten. Reading uncompressed arrays skips zarr-python: the shard
indexes give every inner chunk's byte range, and rows are read with ``os.preadv`` straight into
the caller's buffer, because zarr-python's own read path is far slower than ``np.load`` on
these arrays (docs/performance.md, "The read path keeps its fast path"). Compressed or
unexpected layouts are read through zarr-python.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.store.parts import (
    ChunkMap,
    PartFormat,
    PartReader,
    PartSink,
    rows_per_chunk,
    rows_per_write,
)

MISSING = np.uint64(2**64 - 1)  # a shard index entry of a chunk never written: the fill value
LITTLE_ENDIAN_BYTES = {"name": "bytes", "configuration": {"endian": "little"}}


def _dimension_names(name: str, ndim: int) -> tuple[str, ...]:
    return ("video_edge",) if name == "offsets" else ("row", "feature")[:ndim]


class _ZarrSink(PartSink):
    def __init__(self, path: Path, dim: int, dtype: np.dtype[Any], compression: str | None) -> None:
        import zarr

        self.dim, self.dtype, self.compression = dim, np.dtype(dtype).newbyteorder("<"), compression
        self.group = zarr.open_group(
            str(path), mode="w-", zarr_format=3, attributes={"vidfeat_part": 1}
        )
        self._values: Any = None  # created with the first rows, when the chunk size is known
        self.n_rows = 0

    def _create(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any], chunk: int, shard: int
    ) -> Any:
        from zarr.codecs import ZstdCodec

        compressed = name == "values" and self.compression is not None
        return self.group.create_array(
            name,
            shape=shape,
            dtype=dtype,
            chunks=(chunk, *shape[1:]),
            shards=(-(-shard // chunk) * chunk, *shape[1:]),
            compressors=ZstdCodec(level=1) if compressed else None,
            fill_value=0,
            dimension_names=_dimension_names(name, len(shape)),
            config={"write_empty_chunks": True},  # a regular layout for the direct reader
        )

    def write_values(self, rows: np.ndarray) -> None:
        if self._values is None:  # a shard holds what the writer buffers: whole-shard writes
            row_bytes = self.dim * self.dtype.itemsize
            chunk = rows_per_chunk(row_bytes, len(rows))
            shard = rows_per_write(self.dim, self.dtype)
            self._values = self._create("values", (0, self.dim), self.dtype, chunk, shard)
        stop = self.n_rows + len(rows)
        self._values.resize((stop, self.dim))
        self._values[self.n_rows : stop] = rows
        self.n_rows = stop

    def finish(self, offsets: np.ndarray, pts: np.ndarray, frame_index: np.ndarray) -> None:
        if self._values is None:  # a part of failures only: no rows
            self._create("values", (0, self.dim), self.dtype, 1, 1)
        assert self.n_rows == int(offsets[-1]), "rows/offsets mismatch"
        for name, data in (("offsets", offsets), ("pts", pts), ("frame_index", frame_index)):
            n = max(len(data), 1)  # one shard
            dtype = data.dtype.newbyteorder("<")
            arr = self._create(name, data.shape, dtype, rows_per_chunk(dtype.itemsize, n), n)
            if len(data):
                arr[...] = data


def _chunk_map(array_dir: Path) -> ChunkMap | None:
    """The chunk map of an uncompressed sharded array, or None for anything else."""
    try:
        meta = json.loads((array_dir / "zarr.json").read_text())
        (codec,) = meta["codecs"]
        cfg = codec["configuration"]
        shape = meta["shape"]
        shard_rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        chunk_rows = cfg["chunk_shape"][0]
        index_codecs = cfg["index_codecs"]
        encoding = meta["chunk_key_encoding"]
        separator = encoding.get("configuration", {}).get("separator", "/")
        ok = (
            codec["name"] == "sharding_indexed"
            and cfg["codecs"] == [LITTLE_ENDIAN_BYTES]
            and cfg.get("index_location", "end") == "end"
            and index_codecs[0] == LITTLE_ENDIAN_BYTES
            and all(c["name"] == "crc32c" for c in index_codecs[1:])
            and list(cfg["chunk_shape"][1:]) == list(shape[1:])
            and shard_rows % chunk_rows == 0
            and encoding["name"] == "default"
            and separator in ("/", ".")
            and shape[0] > 0
        )
        dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    except (OSError, KeyError, ValueError, TypeError):
        return None
    if not ok:
        return None
    per_shard = shard_rows // chunk_rows
    n_chunks = -(-shape[0] // chunk_rows)
    row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    files, file_of, offsets = [], [], []
    for s in range(-(-shape[0] // shard_rows)):
        shard = array_dir / separator.join(["c", str(s), *("0" * (len(shape) - 1))])
        try:
            with open(shard, "rb") as f:
                f.seek(-(16 * per_shard + 4 * (len(index_codecs) - 1)), os.SEEK_END)
                index = np.frombuffer(f.read(16 * per_shard), "<u8").reshape(-1, 2)
        except OSError:
            return None
        index = index[: n_chunks - s * per_shard]  # the array's last shard may hold fewer
        written = index[:, 0] != MISSING
        if (index[written, 1] != chunk_rows * row_bytes).any():
            return None  # an encoding this reader does not know
        files.append(shard)
        file_of += [len(files) - 1] * len(index)
        offsets += [int(o) if w else -1 for o, w in zip(index[:, 0], written, strict=True)]
    return ChunkMap(
        chunk_rows,
        row_bytes,
        dtype,
        tuple(files),
        np.array(file_of, np.int64),
        np.array(offsets, np.int64),
    )


class _ZarrReader(PartReader):
    def __init__(self, path: Path) -> None:
        import zarr

        try:
            self.group: Any = zarr.open_group(str(path), mode="r", zarr_format=3)
            values = self.group["values"]
            assert isinstance(values, zarr.Array)
        except (FileNotFoundError, KeyError, AssertionError) as e:
            raise StoreError(f"Part {path} is missing or incomplete: {e}") from None
        self.path = path
        self.n_rows, self.dim = values.shape
        self.dtype = np.dtype(values.dtype)
        self._direct = {name: _chunk_map(path / name) for name in ("values", "pts")}

    def _array(self, name: str) -> Any:
        return self.group[name]


class ZarrFormat(PartFormat):
    name = "zarr"
    suffix = ".zarr"
    compressions = (None, "zstd")
    library = "zarr"
    sink = _ZarrSink
    reader = _ZarrReader
