"""The store on S3 (a moto server on 127.0.0.1, see tests/s3_server.py): the same contract as
on a folder, commits created with If-None-Match, and no listing cache hiding fresh commits."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vidfeat.errors import StoreError
from vidfeat.store import gc_store, open_store, verify_store
from vidfeat.store.fs import FsspecFS

from .helpers import make_spec, video_values, write_part
from .test_catalog import commit
from .test_concurrency import _run_all


def fresh(bucket: str) -> str:
    return f"{bucket}/store-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("part_format", ["zarr", "hdf5"])
def test_write_read_verify_on_s3(s3_bucket: str, part_format: str) -> None:
    url = fresh(s3_bucket)
    store = open_store(url)
    fset = store.create_featureset("fs", make_spec(part_format))
    assert write_part(fset, "p0", {"a": 5, "b": 3}).won  # type: ignore[attr-defined]
    assert not write_part(fset, "p0", {"a": 5, "b": 3}).won  # type: ignore[attr-defined]
    reader = open_store(url, mode="r").get_featureset("fs")
    values, pts = reader.read("b")
    np.testing.assert_array_equal(values, video_values("b", 3))
    np.testing.assert_allclose(pts, np.arange(3) / 25.0)
    loaded = reader.load()
    assert loaded.video_ids == ["a", "b"] and loaded.values.shape == (8, 8)
    assert verify_store(open_store(url)) == []
    parts = FsspecFS(url).listdir("featuresets/fs/parts")
    assert len(parts) == 1  # the losing attempt removed its upload


def test_fresh_commits_are_seen_at_once(s3_bucket: str) -> None:
    url = fresh(s3_bucket)
    reader = open_store(url).create_featureset("fs", make_spec())
    assert reader.load().video_ids == []
    writer = open_store(url).get_featureset("fs")  # another client
    write_part(writer, "p1", {"x": 2})
    assert reader.load().video_ids == ["x"]  # no listing cache in between


def test_commit_race_between_processes_on_s3(s3_bucket: str) -> None:
    url = fresh(s3_bucket)
    codes = _run_all([("p0", {"v0": 40, "v1": 10}), ("p0", {"v0": 40, "v1": 10})], url)
    assert sorted(codes) == [0, 3], codes  # exactly one winner
    fset = open_store(url).get_featureset("fs")
    assert fset.load().video_ids == ["v0", "v1"]
    assert len(FsspecFS(url).listdir("featuresets/fs/parts")) == 1
    assert verify_store(open_store(url)) == []


def test_gc_removes_uncommitted_uploads(s3_bucket: str) -> None:
    url = fresh(s3_bucket)
    fset = open_store(url).create_featureset("fs", make_spec())
    write_part(fset, "p0", {"a": 2})
    fs = FsspecFS(url)
    fs.fs.pipe_file(f"{fs.root}/featuresets/fs/parts/p9-deadbeef0000.zarr/zarr.json", b"{}")
    removed = gc_store(open_store(url), older_than_s=0)
    assert removed == ["featuresets/fs/parts/p9-deadbeef0000.zarr"]
    assert fs.listdir("featuresets/fs/parts") == [fset.commits()[0].path.split("/")[-1]]
    assert verify_store(open_store(url)) == []


def test_unsupported_scheme_is_refused() -> None:
    with pytest.raises(StoreError, match="atomic create-only write"):
        open_store("gcs://bucket/store")


def test_a_catalog_read_after_a_snapshot_takes_a_few_requests(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setenv("VIDFEAT_CACHE", str(tmp_path))  # nothing downloaded before
    url = fresh(s3_bucket)
    fset = open_store(url).create_featureset("fs", make_spec())
    for i in range(30):
        commit(fset, f"p{i:02d}", [(f"clips/{i:02d}-{k}.mp4", 1, 1, 2) for k in range(5)])
    assert fset.compact() is not None
    for i in range(30, 33):  # newer than the snapshot
        commit(fset, f"p{i:02d}", [(f"clips/{i:02d}-0.mp4", 1, 1, 2)])
    calls: list[str] = []
    real = s3fs.S3FileSystem._call_s3

    async def counted(self: Any, method: str, *args: Any, **kw: Any) -> Any:
        calls.append(method)
        return await real(self, method, *args, **kw)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    reader = open_store(url, mode="r").get_featureset("fs")
    before = len(calls)
    cat = reader.catalog()
    assert cat.stats().videos == 153 and len(cat.newer) == 3
    assert reader.catalog().get("clips/07-3.mp4") is not None
    used = calls[before:]
    assert len(used) <= 10 + 3, used
    assert "head_object" not in used, used
    # Without the snapshot: one GET per commit record, fetched together, still no HEAD.
    cold = open_store(url, mode="r").get_featureset("fs")
    calls.clear()
    assert len(cold.commits()) == 33
    assert calls.count("get_object") == 33 and "head_object" not in calls, calls
