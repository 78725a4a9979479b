"""Zarr v3 parts: a group of four arrays, each stored as exactly one shard.

Uncompressed parts (the default) are written by vidfeat in the exact layout zarr-python's
sharding codec produces: the inner chunks back to back (for row chunks, simply the rows in C
order, the last chunk padded with the fill value 0), then the index of (offset, nbytes) pairs
as little-endian uint64 and its crc32c. The values stream into the shard as they come, so a
part is never held whole in memory; this was 5-10x faster than zarr-python's per-chunk
pipeline, and plain zarr and xarray read the result (tests/store/test_plain_readers.py).
Compressed parts (zstd) are written through zarr-python.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.store.fileio import preallocate, pwrite_all, write_new_file, zeros
from vidfeat.store.parts import (
    Extents,
    PartFormat,
    PartReader,
    PartSink,
    no_write,
    row_bytes_of,
    rows_per_chunk,
)


class _ZarrSink(PartSink):
    def __init__(self, path: Path, dim: int, dtype: np.dtype[Any], compression: str | None) -> None:
        path.mkdir(exist_ok=False)
        self.path, self.dim, self.compression = path, dim, compression
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self._fd: int | None = None  # the values shard, opened on the first rows
        self._nbytes = 0
        self._kept: list[np.ndarray] = []  # compressed parts: rows until finish

    def prepare(self, rows: np.ndarray) -> Callable[[], None]:
        rows = np.ascontiguousarray(rows, self.dtype)
        if self.compression is not None:
            self._kept.append(rows.copy())
            return no_write
        if self._fd is None:
            (self.path / "values").mkdir()
            shard = _shard_path(self.path / "values", 2)
            self._fd = os.open(shard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        fd, offset = self._fd, self._nbytes
        self._nbytes += rows.nbytes

        def write() -> None:
            preallocate(fd, offset, rows.nbytes)
            pwrite_all(fd, rows, offset)

        return write

    def finish(self, offsets: np.ndarray, pts: np.ndarray, frame_index: np.ndarray) -> None:
        n_rows = int(offsets[-1])
        if self.compression is not None:
            values = (
                np.concatenate(self._kept) if self._kept else np.zeros((0, self.dim), self.dtype)
            )
            _write_with_zarr(self.path, self.compression, values, offsets, pts, frame_index)
            return
        assert self._nbytes == n_rows * self.dim * self.dtype.itemsize, "rows/offsets mismatch"
        _write_json(self.path / "zarr.json", _group_meta())
        shape = (n_rows, self.dim)
        chunk, n_chunks = _chunking(shape, self.dtype)
        if self._fd is None:  # no rows: the array has metadata only
            (self.path / "values").mkdir()
        _write_json(
            self.path / "values" / "zarr.json",
            _array_meta("values", shape, self.dtype, chunk, n_chunks),
        )
        if self._fd is not None:
            # The last chunk's padding is left as a hole (it reads as the fill value 0).
            index_at = n_chunks * chunk * row_bytes_of(shape, self.dtype)
            pwrite_all(self._fd, _shard_index(shape, self.dtype, chunk, n_chunks), index_at)
        for name, data in (("offsets", offsets), ("pts", pts), ("frame_index", frame_index)):
            _write_small_array(self.path / name, name, data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_small_array(array_dir: Path, name: str, data: np.ndarray) -> None:
    """An uncompressed one-shard array written in one go."""
    data = np.ascontiguousarray(data, data.dtype.newbyteorder("<"))
    chunk, n_chunks = _chunking(data.shape, data.dtype)
    array_dir.mkdir()
    _write_json(array_dir / "zarr.json", _array_meta(name, data.shape, data.dtype, chunk, n_chunks))
    if data.shape[0]:
        padding = zeros((n_chunks * chunk - data.shape[0]) * row_bytes_of(data.shape, data.dtype))
        index = _shard_index(data.shape, data.dtype, chunk, n_chunks)
        write_new_file(_shard_path(array_dir, data.ndim), data, padding, index)


# Chunk keys "c.0.0" (zarr's default encoding with the "." separator) put each shard right in
# its array's folder: 5 fewer directories per part than "c/0/0". Readers accept both.
SEPARATOR = "."


def _shard_path(array_dir: Path, ndim: int, separator: str = SEPARATOR) -> Path:
    return array_dir / separator.join(["c", *("0" * ndim)])


def _shard_index(shape: tuple[int, ...], dtype: np.dtype[Any], chunk: int, n_chunks: int) -> bytes:
    """What follows the chunks (the last one padded with the fill value 0) in a one-shard
    array: the index of (offset, nbytes) per inner chunk as little-endian uint64, and its
    crc32c."""
    import google_crc32c

    chunk_bytes = chunk * row_bytes_of(shape, dtype)
    index = np.empty((n_chunks, 2), "<u8")
    index[:, 0] = np.arange(n_chunks, dtype=np.uint64) * chunk_bytes
    index[:, 1] = chunk_bytes
    index_bytes = index.tobytes()
    return index_bytes + np.array([google_crc32c.value(index_bytes)], "<u4").tobytes()


def _write_with_zarr(
    path: Path,
    compression: str,
    values: np.ndarray,
    offsets: np.ndarray,
    pts: np.ndarray,
    frame_index: np.ndarray,
) -> None:
    import zarr
    from zarr.codecs import ZstdCodec

    assert compression == "zstd"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)  # the sink made the folder
    group.attrs["vidfeat_part"] = 1
    arrays = {"values": values, "offsets": offsets, "pts": pts, "frame_index": frame_index}
    for name, data in arrays.items():
        chunk, n_chunks = _chunking(data.shape, data.dtype)
        arr = group.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype.newbyteorder("<"),
            chunks=(chunk, *data.shape[1:]),
            shards=(chunk * n_chunks, *data.shape[1:]),  # one shard per array
            compressors=ZstdCodec(level=1) if name == "values" else None,
            fill_value=0,
            dimension_names=_dimension_names(name, data.ndim),
        )
        if data.shape[0]:
            arr[...] = data


def _chunking(shape: tuple[int, ...], dtype: np.dtype[Any]) -> tuple[int, int]:
    chunk = rows_per_chunk(row_bytes_of(shape, dtype), shape[0])
    return chunk, -(-shape[0] // chunk) or 1


def _dimension_names(name: str, ndim: int) -> tuple[str, ...]:
    return ("video_edge",) if name == "offsets" else ("row", "feature")[:ndim]


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    write_new_file(path, json.dumps(doc).encode())  # no indent: json's C encoder is faster


def _group_meta() -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": {"vidfeat_part": 1}}


def _array_meta(
    name: str, shape: tuple[int, ...], dtype: np.dtype[Any], chunk: int, n_chunks: int
) -> dict[str, Any]:
    """zarr.json of a one-shard array with uncompressed inner chunks of ``chunk`` rows."""
    rest = list(shape[1:])
    little = {"name": "bytes", "configuration": {"endian": "little"}}
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": np.dtype(dtype).name,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [chunk * n_chunks, *rest]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": SEPARATOR}},
        "fill_value": 0.0 if dtype.kind == "f" else 0,
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [chunk, *rest],
                    "codecs": [little],
                    "index_codecs": [little, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }
        ],
        "attributes": {},
        "dimension_names": list(_dimension_names(name, len(shape))),
        "storage_transformers": [],
    }


def _zarr_extents(array_dir: Path) -> Extents | None:
    """Byte extents of an uncompressed, single-shard array written as vidfeat writes them."""
    try:
        meta = json.loads((array_dir / "zarr.json").read_text())
        (codec,) = meta["codecs"]
        cfg = codec["configuration"]
        shape = meta["shape"]
        shard_rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        chunk_shape = cfg["chunk_shape"]
        ok = (
            codec["name"] == "sharding_indexed"
            and cfg["codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}]
            and cfg.get("index_location", "end") == "end"
            and cfg["index_codecs"][0] == {"name": "bytes", "configuration": {"endian": "little"}}
            and list(chunk_shape[1:]) == list(shape[1:])
            and shard_rows >= shape[0] > 0
            and meta["chunk_key_encoding"]["name"] == "default"
        )
        separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
    except (OSError, KeyError, ValueError, TypeError):
        return None
    if not ok or separator not in ("/", "."):
        return None
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    shard = _shard_path(array_dir, len(shape), separator)
    n_chunks = shard_rows // chunk_shape[0]
    index_bytes = 16 * n_chunks + (4 if len(cfg["index_codecs"]) > 1 else 0)
    try:
        with open(shard, "rb") as f:
            f.seek(-index_bytes, os.SEEK_END)
            index = np.frombuffer(f.read(16 * n_chunks), "<u8").reshape(-1, 2)
    except OSError:
        return None
    row_bytes = row_bytes_of(tuple(shape), dtype)
    if (index[:, 1] != chunk_shape[0] * row_bytes).any():
        return None  # a missing (fill-value) chunk or an unexpected encoding
    return Extents(
        shard, chunk_shape[0], tuple(int(x) for x in index[:, 0]), tuple(shape[1:]), dtype
    )


class _ZarrReader(PartReader):
    def __init__(self, path: Path) -> None:
        import zarr

        try:
            self.group = zarr.open_group(str(path), mode="r", zarr_format=3)
            values = self.group["values"]
            assert isinstance(values, zarr.Array)
        except (FileNotFoundError, KeyError, AssertionError) as e:
            raise StoreError(f"Part {path} is missing or incomplete: {e}") from None
        self.path = path
        self.n_rows, self.dim = values.shape
        self.dtype = np.dtype(values.dtype)
        self._extents = {name: _zarr_extents(path / name) for name in ("values", "pts")}

    def _array(self, name: str) -> Any:
        return self.group[name]


class ZarrFormat(PartFormat):
    name = "zarr"
    suffix = ".zarr"
    compressions = (None, "zstd")
    sink = _ZarrSink
    reader = _ZarrReader
