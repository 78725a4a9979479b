"""The store's Python API as a notebook uses it: a read-only open that never writes, labels,
splits, fixed-length sequences the trainer would see, xarray, and who made a feature set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidfeat.errors import StoreError
from vidfeat.store import open_store
from vidfeat.store.featureset import uniform_positions
from vidfeat.trainer.data import sequence_positions

from .helpers import new_featureset, video_values, write_part


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    fset = new_featureset(open_store(tmp_path / "store"), name="demo")
    write_part(fset, "p0", {"a.mp4": 5, "b.mp4": 2}, label="x")
    write_part(fset, "p1", {"c.mp4": 9}, label="y")
    return tmp_path / "store"


def test_mode_r_never_creates_and_never_writes(store_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    with pytest.raises(StoreError, match=f"No vidfeat store at {missing}.*check the path"):
        open_store(missing, mode="r")
    assert not missing.exists()
    before = tree(store_dir)
    st = open_store(store_dir, mode="r")
    fset = st.get_featureset("demo")
    assert fset.video_ids() == ["a.mp4", "b.mp4", "c.mp4"]
    for attempt in (
        lambda: fset.writer("p2"),
        lambda: fset.compact(),
        lambda: st.create_featureset("other", fset.spec),
        lambda: st.upgrade(),
    ):
        with pytest.raises(StoreError, match="open read-only"):
            attempt()
    from vidfeat.store import gc_store, remove_featureset

    with pytest.raises(StoreError, match="open read-only"):
        gc_store(st, 0.0)
    with pytest.raises(StoreError, match="open read-only"):
        remove_featureset(st, "demo")
    assert gc_store(st, 0.0, dry_run=True) == []  # looking is fine
    assert tree(store_dir) == before
    with pytest.raises(StoreError, match="No vidfeat store"):
        open_store(missing, mode="r+")
    open_store(store_dir, mode="r+").get_featureset("demo").compact()  # r+ writes


def test_labels_splits_sequences_and_xarray(store_dir: Path) -> None:
    fset = open_store(store_dir, mode="r").get_featureset("demo")
    assert fset.labels() == {"a.mp4": "x", "b.mp4": "x", "c.mp4": "y"}
    assert fset.splits() == {"a.mp4": None, "b.mp4": None, "c.mp4": None}
    seqs = fset.sequences(4, ["c.mp4", "b.mp4"])
    assert seqs.values.shape == (2, 4, 8) and seqs.video_ids == ["c.mp4", "b.mp4"]
    assert seqs.mask.tolist() == [[True] * 4, [True, True, False, False]]
    c, b = video_values("c.mp4", 9), video_values("b.mp4", 2)
    pos = sequence_positions(torch.tensor([9]), 4, train=False)[0][0].numpy()  # the trainer's
    np.testing.assert_array_equal(seqs.values[0], c[pos])
    np.testing.assert_array_equal(seqs.values[1, :2], b)
    assert not seqs.values[1, 2:].any()  # padding is zeros
    da = fset.to_xarray(["a.mp4", "c.mp4"])
    assert da.dims == ("row", "feature") and da.shape == (14, 8)
    assert list(da.sel(row=da.video_id == "c.mp4").pts.values) == list(np.arange(9) / 25.0)
    np.testing.assert_array_equal(
        da.sel(row=da.video_id == "a.mp4").values, video_values("a.mp4", 5)
    )


def test_uniform_positions_take_the_centre_of_equal_spans() -> None:
    pos, mask = uniform_positions(np.array([16, 17, 3, 0]), 4)
    assert pos[0].tolist() == [2, 6, 10, 14]  # floor((t + 0.5) * 16 / 4)
    assert pos[1].tolist() == [2, 6, 10, 14]  # floor of 2.125, 6.375, 10.625, 14.875
    assert pos[2].tolist() == [0, 1, 2, 3] and mask[2].tolist() == [True, True, True, False]
    assert not mask[3].any()
