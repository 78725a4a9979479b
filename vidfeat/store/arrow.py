"""Arrow arrays from numpy and Python values through ``from_buffers``: ``pa.array`` imports
pandas on first use (when it is installed), a cost every fresh reader would pay
(docs/performance.md, "Catalog")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa


def from_numpy(a: np.ndarray) -> pa.Array:
    """A 1-d numpy bool or number array as an arrow array (no nulls)."""
    if a.dtype == np.bool_:
        bits = np.packbits(a, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(a), [None, pa.py_buffer(bits)])
    a = np.ascontiguousarray(a)
    return pa.Array.from_buffers(pa.from_numpy_dtype(a.dtype), len(a), [None, pa.py_buffer(a)])


def from_values(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    """Python values (None is null for strings) as an arrow array of ``type_``."""
    if pa.types.is_string(type_):
        return strings(values)
    if pa.types.is_boolean(type_):
        return from_numpy(np.array(values, np.bool_))
    return from_numpy(np.array(values, numpy_dtype(type_)))


def numpy_dtype(type_: pa.DataType) -> np.dtype[Any]:
    """The numpy dtype of a numeric arrow type (``to_pandas_dtype`` imports pandas in some
    pyarrow versions)."""
    if pa.types.is_boolean(type_):
        return np.dtype(np.bool_)
    for is_kind, prefix in (
        (pa.types.is_floating, "float"),
        (pa.types.is_signed_integer, "int"),
        (pa.types.is_unsigned_integer, "uint"),
    ):
        if is_kind(type_):
            return np.dtype(f"{prefix}{type_.bit_width}")
    raise TypeError(f"no numpy dtype for arrow type {type_}")


def strings(values: Sequence[str | None]) -> pa.Array:
    n = len(values)
    valid = np.fromiter((v is not None for v in values), np.bool_, n)
    nulls = n - int(valid.sum())
    texts = [v or "" for v in values] if nulls else values
    joined = "".join(texts)  # type: ignore[arg-type]
    if joined.isascii():  # the usual case: one encode for all, lengths from the str
        data = joined.encode("ascii")
        lengths = np.fromiter(map(len, texts), np.int64, n)  # type: ignore[arg-type]
    else:
        encoded = [t.encode() for t in texts]  # type: ignore[union-attr]
        data = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), np.int64, n)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data), bitmap, nulls)


def to_numpy(column: pa.Array | pa.ChunkedArray, fill: int | None = None) -> np.ndarray:
    """An arrow column as numpy (a view for numbers; strings as objects). Nulls are an error,
    or become ``fill`` in a number column."""
    if isinstance(column, pa.ChunkedArray):
        if column.num_chunks == 0:  # combine_chunks() of no chunks imports pandas
            return np.zeros(0, numpy_dtype(column.type))
        arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        arr = column
    if pa.types.is_string(arr.type) or pa.types.is_dictionary(arr.type):
        return np.array(arr.to_pylist(), dtype=object)
    if arr.null_count and fill is not None:
        out = to_numpy(
            pa.Array.from_buffers(arr.type, len(arr), [None, *arr.buffers()[1:]], 0, arr.offset)
        ).copy()
        out[~to_numpy(arr.is_valid())] = fill
        return out
    if arr.null_count:
        raise ValueError(f"to_numpy: {arr.null_count} nulls in a {arr.type} column")
    n, buf = len(arr), arr.buffers()[1]
    if pa.types.is_boolean(arr.type):
        if buf is None:
            return np.zeros(0, np.bool_)
        bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")
        return bits[arr.offset : arr.offset + n].astype(np.bool_)
    dtype = numpy_dtype(arr.type)
    if buf is None:
        return np.zeros(0, dtype)
    return np.frombuffer(buf, dtype)[arr.offset : arr.offset + n]


def to_list(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """``to_pylist()``, but a dictionary column is expanded from its few distinct values
    (to_pylist builds one Python string per row of it; docs/performance.md, "Catalog")."""
    if not pa.types.is_dictionary(column.type):
        values: list[Any] = column.to_pylist()
        return values
    if isinstance(column, pa.ChunkedArray):
        column = column.unify_dictionaries() if column.num_chunks > 1 else column
        arrays = column.chunks
    else:
        arrays = [column]
    out: list[Any] = []
    for arr in arrays:
        distinct = np.array([*arr.dictionary.to_pylist(), None], dtype=object)
        out += distinct[to_numpy(arr.indices, fill=-1)].tolist()
    return out
