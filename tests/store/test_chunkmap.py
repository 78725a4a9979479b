"""Direct reads: rows scattered into many buffers with few preadv calls, short reads finished,
unwritten chunks read as zeros."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vidfeat.store import parts
from vidfeat.store.parts import ChunkMap


def chunk_file(tmp_path: Path, rows: np.ndarray, chunk_rows: int) -> ChunkMap:
    """Chunks stored in reverse order in one file, with a gap, plus one never written."""
    path = tmp_path / "data"
    n_chunks = -(-len(rows) // chunk_rows) + 1  # the last one is never written
    offsets, blob = [], b""
    for k in reversed(range(n_chunks - 1)):
        offsets.append(len(blob))
        blob += rows[k * chunk_rows : (k + 1) * chunk_rows].tobytes() + b"gap!"
    offsets = [*reversed(offsets), -1]
    path.write_bytes(blob)
    row_bytes = rows.shape[1] * rows.itemsize
    return ChunkMap(
        chunk_rows, row_bytes, rows.dtype, (path,), np.zeros(n_chunks, np.int64), np.array(offsets)
    )


def test_scattered_pieces_read_the_right_rows(tmp_path: Path) -> None:
    rows = np.arange(40 * 3, dtype=np.float32).reshape(40, 3)
    m = chunk_file(tmp_path, rows, chunk_rows=8)
    pieces = [(0, 3), (3, 5), (5, 13), (13, 40), (40, 44)]  # the last rows were never written
    outs = [np.full((b - a, 3), -7, np.float32) for a, b in pieces]
    m.read_many([(a, b, out) for (a, b), out in zip(pieces, outs, strict=True)])
    for (a, b), out in zip(pieces, outs, strict=True):
        want = rows[a:b] if b <= 40 else np.zeros((b - a, 3), np.float32)
        np.testing.assert_array_equal(out, want)


def test_neighbouring_rows_take_one_preadv_and_short_reads_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.arange(16 * 2, dtype=np.float16).reshape(16, 2)
    path = tmp_path / "data"
    path.write_bytes(rows.tobytes())
    m = ChunkMap(16, 4, rows.dtype, (path,), np.zeros(1, np.int64), np.zeros(1, np.int64))
    calls: list[int] = []
    real = os.preadv

    def short(fd: int, buffers: list[memoryview], offset: int) -> int:
        calls.append(len(buffers))
        first = buffers[0]
        return real(fd, [first[: max(1, len(first) // 2)]], offset)  # half of one buffer

    monkeypatch.setattr(parts.os, "preadv", short)
    outs = [np.empty((1, 2), np.float16) for _ in range(16)]  # 16 videos of one row
    m.read_many([(i, i + 1, out) for i, out in enumerate(outs)])
    np.testing.assert_array_equal(np.concatenate(outs), rows)
    assert calls[0] == 16  # one call asked for all 16 buffers
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(parts.os, "preadv", lambda fd, b, o: calls.append(len(b)) or real(fd, b, o))
    m.read_many([(i, i + 1, out) for i, out in enumerate(outs)])
    assert calls == [16]
