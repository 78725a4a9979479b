"""Commit records: their JSON is what every reader trusts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.store.helpers import DIM, make_spec, video_values
from vidfeat.errors import StoreError
from vidfeat.store import FailureRecord, VideoRecord, open_store
from vidfeat.store.records import CommitRecord


def sample_record() -> CommitRecord:
    videos = tuple(
        VideoRecord(f"clips/v{i}.mp4", f"/data/clips/v{i}.mp4", 10 + i, 7, 3 + i, label='é "q"')
        for i in range(3)
    )
    failures = (FailureRecord("bad.mp4", "/data/bad.mp4", "decode_error", "moov atom not found"),)
    return CommitRecord(
        "p0", "abc", "parts/p0-abc.zarr", "zarr", 12, 1.5, videos, failures, extra={"k": [1, 2]}
    )


def test_encode_is_the_records_json() -> None:
    record = sample_record()
    assert json.loads(record.encode()) == record.to_json()
    assert CommitRecord.from_json(json.loads(record.encode())) == record


def test_encode_without_videos_or_failures() -> None:
    record = CommitRecord("p0", "abc", "parts/p0-abc.h5", "hdf5", 0, 2.0)
    doc = json.loads(record.encode())
    assert doc["videos"] == [] and doc["failures"] == []
    assert CommitRecord.from_json(doc) == record


def test_a_record_that_is_not_json_is_refused_before_its_rows_are_kept(tmp_path: Path) -> None:
    fset = open_store(tmp_path).create_featureset("fs", make_spec())
    values = video_values("a", 5)
    pts, idx = np.arange(5, dtype=np.float64), np.arange(5)
    with fset.writer("p0") as w:
        bad = VideoRecord("bad", "/x/bad", 1, 1, 5, label=object())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not JSON serializable"):
            w.add_video(bad, np.zeros((5, DIM), np.float16), pts, idx)
        w.add_video(VideoRecord("a", "/x/a", 1, 1, 5), values, pts, idx)
        w.commit()
    assert fset.video_ids() == ["a"]
    np.testing.assert_array_equal(fset.read("a")[0], values)


@pytest.mark.parametrize(
    "layout",
    [
        {"values": {"chunk_rows": 4, "files": ["../x.h5"], "file_of": [0], "offsets": [0]}},
        {"values": {"chunk_rows": 4, "files": ["/etc/passwd"], "file_of": [0], "offsets": [0]}},
        {"values": {"chunk_rows": 0, "files": [""], "file_of": [0], "offsets": [0]}},
        {"values": {"chunk_rows": 4, "files": [""], "file_of": [1], "offsets": [0]}},
        {"frame_index": {"chunk_rows": 4, "files": [""], "file_of": [0], "offsets": [0]}},
    ],
)
def test_a_layout_outside_its_part_is_refused(layout: dict[str, Any]) -> None:
    doc = {
        "part_id": "p0",
        "attempt": "a1",
        "path": "parts/p0-a1.h5",
        "part_format": "hdf5",
        "n_rows": 0,
        "committed_at": 1.0,
        "layout": layout,
    }
    with pytest.raises(StoreError, match="layout of part 'p0' is invalid"):
        CommitRecord.from_json(doc)
