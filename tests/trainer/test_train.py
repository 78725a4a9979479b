"""Trainer end to end on synth data through the real default backbone: order matters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.config import ExtractConfig, SamplingConfig, TrainConfig
from vidfeat.errors import ConfigError, TrainError
from vidfeat.pipeline.runner import extract
from vidfeat.predict import evaluate_run
from vidfeat.synth import SynthConfig, make_dataset
from vidfeat.trainer.data import load_data
from vidfeat.trainer.loop import load_run, train
from vidfeat.trainer.sweep import parse_grid


@pytest.fixture(scope="module")
def featureset(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("train")
    manifest = make_dataset(
        root / "videos",
        SynthConfig(classes=4, videos_per_class=8, frames=16, size=64, val_fraction=0.25),
    )
    cfg = ExtractConfig(
        inputs=(str(manifest),),
        store=str(root / "store"),
        sampling=SamplingConfig(frames=16),
        progress=False,
        workers=1,
    )
    report = extract(cfg)
    assert report.videos_done == 32
    return str(root / "store"), report.featureset


@pytest.mark.slow
def test_lstm_learns_order_and_meanpool_cannot(featureset: tuple[str, str], tmp_path: Path) -> None:
    store, name = featureset
    lstm = train(
        TrainConfig(store=store, featureset=name, head="lstm", epochs=40, runs_dir=str(tmp_path))
    )
    meanpool = train(
        TrainConfig(
            store=store, featureset=name, head="meanpool", epochs=40, runs_dir=str(tmp_path)
        )
    )
    print(f"lstm {lstm.metrics['top1']:.3f} meanpool {meanpool.metrics['top1']:.3f}")
    assert lstm.metrics["top1"] >= 0.9
    assert meanpool.metrics["top1"] <= 0.25 + 0.15


@pytest.mark.parametrize("head", ["bilstm", "attention", "gru", "transformer", "seed"])
def test_every_head_trains(featureset: tuple[str, str], tmp_path: Path, head: str) -> None:
    store, name = featureset
    res = train(
        TrainConfig(
            store=store, featureset=name, head=head, epochs=2, hidden=32, runs_dir=str(tmp_path)
        )
    )
    assert 0.0 <= res.metrics["top1"] <= 1.0


def test_run_directory_and_reloaded_checkpoint(featureset: tuple[str, str], tmp_path: Path) -> None:
    store, name = featureset
    res = train(
        TrainConfig(
            store=store, featureset=name, head="lstm", epochs=3, pca=16, runs_dir=str(tmp_path)
        )
    )
    for f in (
        "config.json",
        "metrics.json",
        "history.csv",
        "model.pt",
        "curves.png",
        "confusion.png",
    ):
        assert (res.run_dir / f).exists(), f
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert {"top1", "top5", "macro_f1", "per_class_accuracy", "confusion"} <= set(metrics)
    torch.load(res.run_dir / "model.pt", weights_only=True)
    again = evaluate_run(res.run_dir)
    assert again["top1"] == pytest.approx(res.metrics["top1"])
    assert again["confusion"] == res.metrics["confusion"]
    everything = evaluate_run(res.run_dir, split="all")
    assert everything["n"] == res.metrics["train_clips"] + res.metrics["val_clips"]
    with pytest.raises(TrainError, match="Invalid --split 'test'"):
        evaluate_run(res.run_dir, split="test")
    _, config, pca = load_run(res.run_dir)
    assert config["pca"] == 16 and pca["pca_components"].shape[1] == 16
    assert (tmp_path / "index.jsonl").read_text().count("\n") == 1


def test_seeded_runs_are_deterministic(featureset: tuple[str, str], tmp_path: Path) -> None:
    store, name = featureset
    cfg = TrainConfig(
        store=store, featureset=name, head="gru", epochs=3, hidden=32, runs_dir=str(tmp_path)
    )
    a, b = train(cfg), train(cfg)
    assert (a.run_dir / "history.csv").read_text() == (b.run_dir / "history.csv").read_text()


def test_splits_and_bad_input(featureset: tuple[str, str], tmp_path: Path) -> None:
    store, name = featureset
    data = load_data(TrainConfig(store=store, featureset=name))
    assert len(data.val_idx) == 8  # the manifest's split column: 2 per class
    split = tmp_path / "split.csv"
    split.write_text(
        "video_id,split\n"
        + "".join(f"{v},{'val' if i % 4 == 0 else 'train'}\n" for i, v in enumerate(data.video_ids))
    )
    assert (
        len(load_data(TrainConfig(store=store, featureset=name, split_file=str(split))).val_idx)
        == 8
    )
    one = tmp_path / "labels.csv"
    one.write_text("video_id,label\n" + "".join(f"{v},same\n" for v in data.video_ids))
    with pytest.raises(TrainError, match="Only one class"):
        load_data(TrainConfig(store=store, featureset=name, labels=str(one)))
    with pytest.raises(ConfigError, match=r"--seq-len \(0\)"):
        TrainConfig(store=store, featureset=name, seq_len=0)
    with pytest.raises(Exception, match="No feature set 'nope'"):
        load_data(TrainConfig(store=store, featureset="nope"))


def test_cli_train_sweep_runs(featureset: tuple[str, str], tmp_path: Path) -> None:
    store, name = featureset
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "sweep",
            store,
            name,
            "--grid",
            "head=meanpool,gru hidden=16",
            "--epochs",
            "2",
            "--runs-dir",
            str(tmp_path),
        ],
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["runs", str(tmp_path)])
    assert "meanpool" in out.output and "gru" in out.output
    assert parse_grid(["head=lstm,gru", "lr=1e-3"]) == [
        {"head": "lstm", "lr": 1e-3},
        {"head": "gru", "lr": 1e-3},
    ]


@pytest.mark.slow
def test_parallel_sweep_matches_serial_and_loads_once(
    featureset: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidfeat.trainer import sweep as sweep_module

    store, name = featureset
    loads = []
    real_load = sweep_module.load_data
    monkeypatch.setattr(sweep_module, "load_data", lambda cfg: loads.append(1) or real_load(cfg))
    base = TrainConfig(store=store, featureset=name, epochs=2, hidden=16)
    grid = parse_grid(["head=meanpool,gru", "seed=0,1"])
    serial = sweep_module.sweep(
        dataclasses.replace(base, runs_dir=str(tmp_path / "serial")), grid, jobs=1
    )
    parallel = sweep_module.sweep(
        dataclasses.replace(base, runs_dir=str(tmp_path / "parallel")), grid, jobs=2
    )
    assert len(loads) == 2  # once per sweep, whatever the seeds and jobs

    def by_config(results: list) -> dict:
        return {tuple(sorted(o.items())): r.metrics["top1"] for o, r in results}

    assert by_config(serial.results) == by_config(parallel.results)
    assert 0 < parallel.load_seconds < parallel.total_seconds
    run_dirs = {r.run_dir for _, r in parallel.results}
    assert len(run_dirs) == 4 and all((d / "model.pt").exists() for d in run_dirs)
    assert len((tmp_path / "parallel" / "index.jsonl").read_text().splitlines()) == 4
    with pytest.raises(ConfigError, match="changes which features are loaded"):
        parse_grid(["featureset=a,b"])


def test_cli_train_picks_the_only_featureset(featureset: tuple[str, str], tmp_path: Path) -> None:
    store, name = featureset
    runner = CliRunner()
    args = ["--head", "meanpool", "--epochs", "1", "--runs-dir", str(tmp_path)]
    out = runner.invoke(app, ["train", store, *args])
    assert out.exit_code == 0, out.output
    assert f"feature set: {name} (the only one" in out.output
    empty = tmp_path / "empty-store"
    from vidfeat.store import open_store

    open_store(empty)
    out = runner.invoke(app, ["train", str(empty), *args])
    assert "holds 0 feature sets (none): name one" in str(out.exception)  # main(): error: …


@pytest.mark.slow
def test_a_user_loop_on_the_pytorch_dataset_reaches_the_trainers_accuracy(
    featureset: tuple[str, str], tmp_path: Path
) -> None:
    from torch.nn import functional as F
    from torch.utils.data import DataLoader

    from vidfeat.models.heads import build_head
    from vidfeat.store import open_store
    from vidfeat.torch import FeatureSequenceDataset

    store, name = featureset
    fset = open_store(store, "r").get_featureset(name)
    train_set = FeatureSequenceDataset(fset, 16, split="train", train=True)
    val_set = FeatureSequenceDataset(fset, 16, split="val", train=False)
    assert (len(train_set), len(val_set)) == (24, 8) and train_set.classes == val_set.classes
    x, mask, y = val_set[0]  # the trainer's evaluation rows, as FeatureSet.sequences gives
    seqs = fset.sequences(16, [val_set.video_ids[0]])
    assert torch.equal(x, torch.from_numpy(seqs.values[0]).float()) and mask.all()

    torch.manual_seed(0)
    model = build_head("lstm", x.shape[1], len(train_set.classes), hidden=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(
        train_set, batch_size=8, shuffle=True, num_workers=2, persistent_workers=True
    )
    for _ in range(30):  # the user's own five lines
        for x, mask, y in loader:
            loss = F.cross_entropy(model(x, mask), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        x, mask, y = next(iter(DataLoader(val_set, batch_size=len(val_set))))
        user_top1 = (model(x, mask).argmax(1) == y).float().mean().item()
    trainer = train(store=store, featureset=name, hidden=64, epochs=30, runs_dir=str(tmp_path))
    print(f"user loop top-1 {user_top1:.3f}, vidfeat train top-1 {trainer.metrics['top1']:.3f}")
    assert user_top1 >= trainer.metrics["top1"] - 1 / len(val_set)  # one clip of slack
