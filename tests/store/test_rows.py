"""The row buffer of a part writer: checks, the cast, and whole-shard writes."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import numpy as np
import pytest

from vidfeat.errors import ValueRangeError
from vidfeat.store import VideoRecord, open_store, parts, verify_store
from vidfeat.store.hdf5_part import Hdf5Format
from vidfeat.store.zarr_part import ZarrFormat

from .helpers import DIM, make_spec, video_values

FORMATS = ["zarr", "hdf5"]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 16 rows."""
    monkeypatch.setattr(parts, "CHUNK_BYTES", 16 * DIM * 2)


def add(w: object, vid: str, rows: np.ndarray) -> None:
    n = len(rows)
    w.add_video(VideoRecord(vid, f"/{vid}", 1, 1, n), rows, np.arange(n) / 25, np.arange(n))  # type: ignore[attr-defined]


@pytest.mark.parametrize("part_format", FORMATS)
@pytest.mark.parametrize("where", ["fits", "spans"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_a_refused_video_leaves_no_rows_wherever_it_falls(
    tmp_path: Path, part_format: str, where: str, dtype: type
) -> None:
    """A video with a NaN in its last row is refused whether it fits the buffer (checked after
    the copy) or spans a write (checked before): the part holds exactly the other videos."""
    fset = open_store(tmp_path).create_featureset("fs", make_spec(part_format))
    bad = video_values("bad", 100 if where == "spans" else 10).astype(dtype)
    bad[-1, -1] = np.nan
    with fset.writer("p0") as w:
        add(w, "a", video_values("a", 50))
        with pytest.raises(ValueRangeError, match=r"'bad'.*NaN or inf"):
            add(w, "bad", bad)
        add(w, "c", video_values("c", 30).astype(dtype))
        w.commit()
    assert fset.video_ids() == ["a", "c"]
    assert fset.load().values.shape == (80, DIM)
    for vid, n in (("a", 50), ("c", 30)):
        np.testing.assert_array_equal(fset.read(vid)[0], video_values(vid, n))
    assert verify_store(open_store(tmp_path)) == []


@pytest.mark.parametrize("where", ["fits", "spans"])
def test_float16_range_is_the_same_on_both_paths(tmp_path: Path, where: str) -> None:
    """float32 values that round to the largest float16 are kept; from 65520 on they would
    become inf, and are refused with the advice to store float32."""
    fset = open_store(tmp_path).create_featureset("fs", make_spec("zarr"))
    n = 100 if where == "spans" else 10
    with fset.writer("p0") as w:
        add(w, "first", video_values("first", 50))
        add(w, "edge", np.full((n, DIM), -65519.0, np.float32))
        with pytest.raises(ValueRangeError, match=r"do not fit float16.*--dtype float32"):
            add(w, "over", np.full((n, DIM), 65520.0, np.float32))
        w.commit()
    assert fset.video_ids() == ["edge", "first"]
    assert (fset.read("edge")[0] == np.float16(-65504)).all()


def record_writes(
    monkeypatch: pytest.MonkeyPatch, part_format: str, fail_at: int = 0
) -> list[tuple[int, str]]:
    """(rows, thread name) of every ``write_values`` of the format's sink from now on; the
    ``fail_at``-th write (1-based) fails as a full disk would."""
    sink_cls = {"zarr": ZarrFormat, "hdf5": Hdf5Format}[part_format].sink
    real = sink_cls.write_values  # type: ignore[attr-defined]
    writes: list[tuple[int, str]] = []

    def write_values(self: object, rows: np.ndarray) -> None:
        writes.append((len(rows), threading.current_thread().name))
        if len(writes) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, rows)

    monkeypatch.setattr(sink_cls, "write_values", write_values)
    return writes


@pytest.mark.parametrize("part_format", FORMATS)
def test_rows_reach_the_sink_in_whole_shards_on_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_format: str
) -> None:
    monkeypatch.setattr(parts, "SHARD_CHUNKS", 4)
    writes = record_writes(monkeypatch, part_format)
    fset = open_store(tmp_path).create_featureset("fs", make_spec(part_format))
    with fset.writer("p0") as w:
        for i in range(10):
            add(w, f"v{i}", video_values(f"v{i}", 37))
        w.commit()
    # 370 rows: five full 64-row buffers (4 chunks of 16), then the last 50 rows at commit.
    assert [n for n, _ in writes] == [64] * 5 + [50]
    assert {name for _, name in writes} == {threading.current_thread().name}
    for i in range(10):
        np.testing.assert_array_equal(fset.read(f"v{i}")[0], video_values(f"v{i}", 37))
    if part_format == "zarr":
        import zarr

        values = zarr.open_group(tmp_path / "featuresets/fs" / fset.commits()[0].path)["values"]
        assert values.chunks == (16, DIM) and values.shards == (64, DIM)


@pytest.mark.parametrize("part_format", FORMATS)
@pytest.mark.parametrize("failing_write", [2, 6])  # 6: the last rows, written during commit
def test_a_failed_write_fails_the_part_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_format: str, failing_write: int
) -> None:
    """Disk full: the error reaches the caller (from add_video or from commit), the attempt's
    files are removed and nothing is committed."""
    monkeypatch.setattr(parts, "SHARD_CHUNKS", 4)
    writes = record_writes(monkeypatch, part_format, fail_at=failing_write)
    store = open_store(tmp_path)
    fset = store.create_featureset("fs", make_spec(part_format))
    with pytest.raises(OSError, match="No space left"), fset.writer("p0") as w:  # noqa: PT012
        for i in range(10):
            add(w, f"v{i}", video_values(f"v{i}", 37))
        w.commit()
    assert len(writes) == failing_write
    assert fset.commits() == []
    commits = tmp_path / "featuresets" / "fs" / "commits"
    assert not commits.exists() or list(commits.iterdir()) == []  # no staged record left
    assert list((tmp_path / "featuresets" / "fs" / "parts").iterdir()) == []
