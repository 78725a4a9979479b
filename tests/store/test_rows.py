"""The row stream of a part writer: checks, the cast, and the writes on a helper thread."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
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
    """Chunks of 16 rows, so the stream hands 64-row buffers to the sink."""
    monkeypatch.setattr(parts, "CHUNK_BYTES", 16 * DIM * 2)


def helper_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("vidfeat-part-write")]


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


def patch_jobs(
    monkeypatch: pytest.MonkeyPatch, part_format: str, job: Callable[[Callable[[], None]], None]
) -> None:
    """Route every write job of the format's sink through ``job(real_job)``."""
    sink_cls = {"zarr": ZarrFormat, "hdf5": Hdf5Format}[part_format].sink
    real_prepare = sink_cls.prepare  # type: ignore[attr-defined]

    def prepare(self: object, rows: np.ndarray) -> Callable[[], None]:
        real_job = real_prepare(self, rows)
        return lambda: job(real_job)

    monkeypatch.setattr(sink_cls, "prepare", prepare)


def record_job_threads(monkeypatch: pytest.MonkeyPatch, part_format: str) -> list[str]:
    """The names of the threads that run the format's write jobs, in order, from now on."""
    writers: list[str] = []

    def recording(real_job: Callable[[], None]) -> None:
        writers.append(threading.current_thread().name)
        real_job()

    patch_jobs(monkeypatch, part_format, recording)
    return writers


@pytest.mark.parametrize("part_format", FORMATS)
def test_full_buffers_are_written_by_a_helper_thread_that_ends_with_the_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_format: str
) -> None:
    writers = record_job_threads(monkeypatch, part_format)
    fset = open_store(tmp_path).create_featureset("fs", make_spec(part_format))
    with fset.writer("p0") as w:
        for i in range(10):
            add(w, f"v{i}", video_values(f"v{i}", 37))
        w.commit()
    # 370 rows: five full 64-row buffers, then the last 50 rows at commit, all in the
    # background (the commit writes the small arrays meanwhile).
    assert len(writers) == 6
    assert all(name.startswith("vidfeat-part-write") for name in writers)
    assert helper_threads() == []
    for i in range(10):
        np.testing.assert_array_equal(fset.read(f"v{i}")[0], video_values(f"v{i}", 37))


@pytest.mark.parametrize("part_format", FORMATS)
def test_a_part_smaller_than_a_buffer_starts_no_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_format: str
) -> None:
    writers = record_job_threads(monkeypatch, part_format)
    started = threading.Thread.start
    threads: list[str] = []

    def start(self: threading.Thread) -> None:
        threads.append(self.name)
        started(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    fset = open_store(tmp_path).create_featureset("fs", make_spec(part_format))
    with fset.writer("p0") as w:
        add(w, "a", video_values("a", 40))  # under one 64-row buffer
        w.commit()
    assert writers == [threading.current_thread().name]
    assert threads == []
    np.testing.assert_array_equal(fset.read("a")[0], video_values("a", 40))


@pytest.mark.parametrize("part_format", FORMATS)
@pytest.mark.parametrize("failing_write", [2, 6])  # 6: the last rows, written during commit
def test_a_failed_background_write_fails_the_part_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_format: str, failing_write: int
) -> None:
    """Disk full in the helper thread: the error reaches the caller (from a later add_video or
    from commit), the attempt's files are removed and nothing is committed."""
    calls = []

    def failing(real_job: Callable[[], None]) -> None:
        calls.append(threading.current_thread().name)
        if len(calls) == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_job()

    patch_jobs(monkeypatch, part_format, failing)
    store = open_store(tmp_path)
    fset = store.create_featureset("fs", make_spec(part_format))
    # Raised by a later add_video or by commit, whichever meets the failed write first.
    with pytest.raises(OSError, match="No space left"), fset.writer("p0") as w:  # noqa: PT012
        for i in range(10):
            add(w, f"v{i}", video_values(f"v{i}", 37))
        w.commit()
    assert calls[failing_write - 1].startswith("vidfeat-part-write")
    assert fset.commits() == []
    commits = tmp_path / "featuresets" / "fs" / "commits"
    assert not commits.exists() or list(commits.iterdir()) == []  # no staged record left
    assert list((tmp_path / "featuresets" / "fs" / "parts").iterdir()) == []
    assert helper_threads() == []


@pytest.mark.parametrize("part_format", FORMATS)
def test_the_last_chunk_is_padded_with_zeros(tmp_path: Path, part_format: str) -> None:
    """70 rows in 16-row chunks: the fifth chunk holds 6 rows and 10 rows of zeros, on disk as
    the formats define it (zarr: padding, then the index and its crc32c; HDF5: a full chunk)."""
    import h5py
    import zarr

    fset = open_store(tmp_path).create_featureset("fs", make_spec(part_format))
    with fset.writer("p0") as w:
        add(w, "a", video_values("a", 70))
        w.commit()
    part = tmp_path / "featuresets" / "fs" / fset.commits()[0].path
    row_bytes, chunk_bytes = DIM * 2, 16 * DIM * 2
    if part_format == "zarr":
        assert zarr.open_group(part, mode="r")["values"].chunks == (16, DIM)
        raw = (part / "values" / "c.0.0").read_bytes()
        assert len(raw) == 5 * chunk_bytes + 5 * 16 + 4
        assert raw[: 70 * row_bytes] == video_values("a", 70).tobytes()
        assert set(raw[70 * row_bytes : 5 * chunk_bytes]) == {0}
        index = np.frombuffer(raw[5 * chunk_bytes : -4], "<u8").reshape(-1, 2)
        assert index.tolist() == [[k * chunk_bytes, chunk_bytes] for k in range(5)]
    else:
        with h5py.File(part, "r") as f:
            _, last = f["values"].id.read_direct_chunk((64, 0))
        assert last[: 6 * row_bytes] == video_values("a", 70)[64:].tobytes()
        assert set(last[6 * row_bytes :]) == {0} and len(last) == chunk_bytes
