"""Many heads at once: a sweep trains the configs that share a batch stream on one pass over
the data, and every head's run is the run it gets alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vidfeat.config import TrainConfig
from vidfeat.store import open_store
from vidfeat.store.exchange import import_rows
from vidfeat.trainer import data as data_module
from vidfeat.trainer.data import load_data
from vidfeat.trainer.loop import train
from vidfeat.trainer.multi import group_configs, train_together
from vidfeat.trainer.sweep import parse_grid, sweep

from .test_figures import many_class_rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("multi") / "store")
    import_rows(open_store(path), "set", many_class_rows(6, per_class=8, rows=6), source="test")
    return path


def test_heads_trained_together_match_their_single_runs(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = TrainConfig(store=store, featureset="set", epochs=4, hidden=16, patience=2)
    grid = parse_grid(["head=gru,seed,transformer,meanpool", "dropout=0.0,0.5", "lr=3e-3"])
    configs = [dataclasses.replace(base, runs_dir=str(tmp_path / "t"), **g) for g in grid]
    configs.append(dataclasses.replace(configs[0], epochs=2))  # fewer epochs, same stream
    data = load_data(base)
    reads: list[int] = []
    real_batch = data_module.batch
    monkeypatch.setattr(
        data_module, "batch", lambda *a, **k: reads.append(1) or real_batch(*a, **k)
    )
    together = train_together(configs, data)
    together_reads = len(reads)
    alone = [
        train(dataclasses.replace(c, runs_dir=str(tmp_path / "a")), data=data) for c in configs
    ]
    assert together_reads * 4 < len(reads) - together_reads  # one pass, not one per head
    for t, a in zip(together, alone, strict=True):
        assert t.metrics == a.metrics | {"interrupted": False}
        assert (t.run_dir / "history.csv").read_text() == (a.run_dir / "history.csv").read_text()
        assert (t.run_dir / "model.pt").exists() and (t.run_dir / "confusion.png").exists()
    assert len((tmp_path / "t" / "index.jsonl").read_text().splitlines()) == len(configs)


def test_sweep_groups_by_stream_and_matches_serial_single_runs(store: str, tmp_path: Path) -> None:
    base = TrainConfig(store=store, featureset="set", epochs=2, hidden=8)
    grid = parse_grid(["head=gru,meanpool", "seed=0,1", "seq_len=4"])
    configs = [dataclasses.replace(base, **g) for g in grid]
    assert group_configs(configs) == [[0, 2], [1, 3]]  # one group a seed
    a = sweep(dataclasses.replace(base, runs_dir=str(tmp_path / "a")), grid)
    b = sweep(dataclasses.replace(base, runs_dir=str(tmp_path / "b")), grid, together=False)

    def by_config(results: list) -> dict:
        return {tuple(sorted(o.items())): r.metrics for o, r in results}

    assert by_config(a.results) == by_config(b.results)
