"""Read a store with nothing but json, zarr, h5py and xarray, following docs/store-format.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray
import zarr

from vidfeat.store import FailureRecord, VideoRecord, formats, open_store, parts, verify_store

from .helpers import DIM, make_spec, new_featureset, video_values, write_part


@pytest.mark.parametrize("part_format", ["zarr", "hdf5"])
def test_plain_libraries_read_every_video(tmp_path: Path, part_format: str) -> None:
    fset = new_featureset(open_store(tmp_path), part_format=part_format)
    write_part(fset, "p0", {"a.mp4": 5, "b.mp4": 2000})
    write_part(fset, "p1", {"c.mp4": 1})

    fs_dir = tmp_path / "featuresets" / "fs"
    spec = json.loads((fs_dir / "featureset.json").read_text())["spec"]
    seen = {}
    for commit_file in sorted(fs_dir.glob("commits/*.json")):
        commit = json.loads(commit_file.read_text())
        part = fs_dir / commit["path"]
        if commit["part_format"] == "zarr":
            group = zarr.open_group(part, mode="r")
            values, offsets = group["values"][:], group["offsets"][:]
            ds = xarray.open_zarr(part, consolidated=False, zarr_format=3)
            assert ds["values"].dims == ("row", "feature")
            np.testing.assert_array_equal(ds["values"].values, values)
            assert ds["pts"].shape == (values.shape[0],)
        else:
            with h5py.File(part, "r") as f:
                values, offsets = f["values"][:], f["offsets"][:]
        assert values.shape[1] == spec["feature_dim"]
        for i, video in enumerate(commit["videos"]):
            seen[video["video_id"]] = values[offsets[i] : offsets[i + 1]]
    assert set(seen) == {"a.mp4", "b.mp4", "c.mp4"}
    for vid, rows in seen.items():
        np.testing.assert_array_equal(rows, video_values(vid, len(rows)))
    assert len(seen["b.mp4"]) == 2000


@pytest.mark.parametrize(
    ("part_format", "compression"),
    [("zarr", None), ("zarr", "zstd"), ("hdf5", None), ("hdf5", "lzf"), ("hdf5", "gzip")],
)
def test_parts_streamed_in_many_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_format: str, compression: str | None
) -> None:
    """Parts much larger than the writer's buffer: the rows reach the files in many pieces
    (16-row chunks, 64-row pieces here), videos straddle the pieces, the last chunk is partial,
    and float32 input is cast on the way. vidfeat and the plain libraries read back the same."""
    monkeypatch.setattr(parts, "CHUNK_BYTES", 16 * DIM * 2)
    monkeypatch.setattr(parts, "SHARD_CHUNKS", 4)
    store = open_store(tmp_path)
    fset = store.create_featureset("fs", make_spec(part_format, compression=compression))
    sizes = {"a": 50, "b": 7, "c": 200, "d": 1, "e": 90}
    with fset.writer("p0") as w:
        for vid, n in sizes.items():
            rows = video_values(vid, n).astype(np.float32)
            w.add_video(VideoRecord(vid, f"/{vid}", 1, 1, n), rows, np.arange(n) / 25, np.arange(n))
        w.add_failure(FailureRecord("bad", "/bad", "truncated", "cut short"))
        w.commit()
    with fset.writer("p1") as w:  # failures only: no rows at all
        w.add_failure(FailureRecord("worse", "/worse", "not_a_video", "text"))
        w.commit()

    assert verify_store(store) == []
    loaded = fset.load()
    assert loaded.values.shape == (sum(sizes.values()), DIM)
    for vid, n in sizes.items():
        values, pts = fset.read(vid)
        np.testing.assert_array_equal(values, video_values(vid, n))
        np.testing.assert_array_equal(pts, np.arange(n) / 25)

    commit = next(c for c in fset.commits() if c.part_id == "p0")
    part = tmp_path / "featuresets" / "fs" / commit.path
    if part_format == "zarr":
        group = zarr.open_group(part, mode="r")
        values = group["values"][:]
        assert group["values"].shards is not None and group["values"].chunks[0] == 16
    else:
        with h5py.File(part, "r") as f:
            values = f["values"][:]
            assert f["values"].chunks == (16, DIM) and f["values"].compression == compression
    np.testing.assert_array_equal(values, loaded.values)
    reader = formats.get_format(part_format).open(part)
    direct = reader.reads_directly("values")  # type: ignore[attr-defined]
    assert direct == (compression is None)  # uncompressed: direct byte reads
    reader.close()


def test_zarr_parts_read_directly_from_the_shards_zarr_python_writes(tmp_path: Path) -> None:
    """Shards at values/c/<k>/0, as zarr-python writes them: the reader follows each array's
    chunk_key_encoding and reads the rows from the shard indexes, as plain zarr does."""
    fset = new_featureset(open_store(tmp_path), part_format="zarr")
    write_part(fset, "p0", {"a.mp4": 30, "b.mp4": 3})
    part = tmp_path / "featuresets" / "fs" / fset.commits()[0].path
    assert (part / "values" / "c" / "0" / "0").is_file()
    reader = formats.get_format("zarr").open(part)
    assert reader.reads_directly("values") and reader.reads_directly("pts")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(reader.read_values(0, 30), video_values("a.mp4", 30))
    fresh = open_store(tmp_path).get_featureset("fs")
    np.testing.assert_array_equal(fresh.read("b.mp4")[0], video_values("b.mp4", 3))
    np.testing.assert_array_equal(
        zarr.open_group(part, mode="r")["values"][30:], fresh.read("b.mp4")[0]
    )


OLD_STORE = Path(__file__).parent / "data" / "store-v1-0.1.0"  # see its README


@pytest.mark.parametrize("name", ["zarr", "zarr-zstd", "hdf5", "hdf5-gzip"])
def test_parts_written_by_vidfeat_0_1_0_still_read(tmp_path: Path, name: str) -> None:
    """Parts from the hand-written shard/chunk writer of 0.1.0 (one shard per array, chunk
    keys "c.0.0", 16-row chunks) read as before, directly where they are uncompressed."""
    shutil.copytree(OLD_STORE, tmp_path / "store")
    store = open_store(tmp_path / "store")
    fset = store.get_featureset(name)
    assert verify_store(store) == []
    sizes = {"a": 40, "b": 30, "c": 5}
    assert fset.video_ids() == list(sizes)
    for vid, n in sizes.items():
        values, pts = fset.read(vid)
        np.testing.assert_array_equal(values, video_values(vid, n))
        np.testing.assert_array_equal(pts, np.arange(n) / 25)
    loaded = fset.load()
    np.testing.assert_array_equal(loaded.values[40:70], video_values("b", 30))
    part = tmp_path / "store" / "featuresets" / name / fset.commits()[0].path
    if name == "zarr":
        assert (part / "values" / "c.0.0").is_file()
    reader = formats.get_format(fset.spec.part_format).open(part)
    direct = reader.reads_directly("values")  # type: ignore[attr-defined]
    assert direct == (fset.spec.compression is None)
