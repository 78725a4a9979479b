"""Read a store with nothing but json, zarr, h5py and xarray, following docs/store-format.md."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray
import zarr

from vidfeat.store import open_store

from .helpers import new_featureset, video_values, write_part


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
