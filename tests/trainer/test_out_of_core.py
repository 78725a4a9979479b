"""Sets larger than memory: rows read on demand from the parts answer as the loaded rows do,
training from disk gives the in-memory run's results, and a set that cannot fit in memory is
refused (or read from disk) before anything is loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfeat.config import TrainConfig
from vidfeat.errors import TrainError
from vidfeat.store import FeatureSet, open_store
from vidfeat.store.exchange import import_rows
from vidfeat.trainer import rows as rows_module
from vidfeat.trainer.data import load_data
from vidfeat.trainer.loop import train
from vidfeat.trainer.rows import DiskRows, MemoryRows, background, choose_source

from .test_figures import many_class_rows


@pytest.fixture(scope="module", params=["zarr", "hdf5"])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    store = str(tmp_path_factory.mktemp(f"ooc-{request.param}") / "store")
    rows = many_class_rows(12, per_class=6, rows=9, dim=16)
    lengths = np.random.default_rng(1).integers(2, 10, len(rows.video_ids))  # ragged, as extracted
    offsets = np.r_[0, np.cumsum(lengths)]
    ragged = dataclasses.replace(rows, values=rows.values[: offsets[-1]], offsets=offsets)
    import_rows(open_store(store), "set", ragged, source="a test", part_format=request.param)
    return store


def test_the_row_reader_answers_as_the_loaded_rows(stored: str) -> None:
    fset = open_store(stored, "r").get_featureset("set")
    ids = fset.video_ids()[::-1][:50]  # another order than the store's, a subset
    loaded = fset.load(ids, with_pts=False)
    reader = fset.row_reader(ids)
    assert reader.video_ids == loaded.video_ids and (reader.offsets == loaded.offsets).all()
    assert reader.nbytes == loaded.values.nbytes
    rng = np.random.default_rng(0)
    asked = rng.integers(0, len(loaded.values), size=(7, 16))  # duplicates, any order
    assert np.array_equal(reader.take(asked), loaded.values[asked])
    assert reader.take(np.zeros(0, np.int64)).shape == (0, 16)
    with pytest.raises(IndexError):
        reader.take(np.array([len(loaded.values)]))


def test_training_from_disk_gives_the_in_memory_run(stored: str, tmp_path: Path) -> None:
    common = {"store": stored, "featureset": "set", "head": "gru", "hidden": 16, "epochs": 3}
    memory = train(rows_from="memory", runs_dir=str(tmp_path / "m"), **common)
    disk = train(rows_from="disk", runs_dir=str(tmp_path / "d"), **common)
    history = "history.csv"
    assert (memory.run_dir / history).read_text() == (disk.run_dir / history).read_text()
    assert memory.metrics["confusion"] == disk.metrics["confusion"]
    with_pca = [
        train(rows_from=d, pca=8, runs_dir=str(tmp_path / d), **common).metrics
        for d in ("memory", "disk")
    ]
    assert with_pca[0]["top1"] == pytest.approx(with_pca[1]["top1"], abs=1 / 12)


def test_a_set_that_cannot_fit_is_refused_before_loading(
    stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_load(*args: object, **kw: object) -> None:
        raise AssertionError("loaded a set that cannot fit")

    monkeypatch.setattr(rows_module, "available_memory", lambda: 1 << 20)  # 1 MiB free
    monkeypatch.setattr(FeatureSet, "load", no_load)
    cfg = TrainConfig(store=stored, featureset="set", rows_from="memory")
    with pytest.raises(TrainError, match=r"needs 0\.0 GiB in memory .* --rows-from disk"):
        load_data(cfg)
    data = load_data(dataclasses.replace(cfg, rows_from="auto"))  # auto reads it from disk
    assert isinstance(data.values, DiskRows) and data.on_disk
    gib = 1 << 30
    assert choose_source("auto", 10 * gib, "x", available=20 * gib) == "memory"
    assert choose_source("auto", 20 * gib, "x", available=20 * gib) == "disk"
    with pytest.raises(TrainError, match=r"needs 24\.4 GiB in memory \(plus 1\.0 GiB to train\)"):
        choose_source("memory", int(24.4 * gib), "k400", available=22 * gib)


def test_the_dataset_reads_from_disk_as_from_memory(stored: str) -> None:
    from vidfeat.torch import FeatureSequenceDataset

    fset = open_store(stored, "r").get_featureset("set")
    memory = FeatureSequenceDataset(fset, 4, split="val", train=False)
    disk = FeatureSequenceDataset(fset, 4, split="val", train=False, rows_from="disk")
    assert isinstance(memory.rows, MemoryRows) and isinstance(disk.rows, DiskRows)
    for i in range(len(memory)):
        assert torch.equal(memory[i][0], disk[i][0]) and memory[i][2] == disk[i][2]


def test_background_batches_keep_order_raise_and_stop() -> None:
    assert list(background(iter(range(100)), depth=3)) == list(range(100))

    def failing() -> object:
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(background(failing()))
    endless = background(iter(range(10**9)))
    assert next(endless) == 0
    endless.close()  # the thread stops; nothing hangs
