"""Training sees the span evaluation sees: segment-based sampling (a random row in each of T
equal segments in training, the segment centres in evaluation), the contiguous crop only when
asked for, and the same rule in the trainer, the PyTorch dataset and ``FeatureSet.sequences``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidfeat.errors import ConfigError
from vidfeat.store import open_store
from vidfeat.store.exchange import Rows, import_rows
from vidfeat.trainer.data import sequence_positions
from vidfeat.trainer.loop import train


def test_train_and_eval_positions_cover_the_same_span() -> None:
    """For many (length, T): every training position of slot t lies in segment t, the
    evaluation position (the centre) too, and the segments tile the clip: every row can be
    drawn and nothing outside it. Clips shorter than T take the same rows both ways."""
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        seq_len = int(rng.integers(1, 40))
        lengths = torch.from_numpy(rng.integers(0, 300, size=8))
        evals, eval_mask = sequence_positions(lengths, seq_len, train=False)
        draws = torch.stack(
            [sequence_positions(lengths, seq_len, True, gen)[0] for _ in range(64)]
        )  # (64, B, T)
        train_mask = sequence_positions(lengths, seq_len, True, gen)[1]
        assert torch.equal(train_mask, eval_mask)
        for b, n in enumerate(lengths.tolist()):
            if n < seq_len:  # rows in order, then padding, in both
                assert (draws[:, b] == torch.arange(seq_len)).all()
                assert torch.equal(evals[b], torch.arange(seq_len))
                continue
            t = torch.arange(seq_len, dtype=torch.float64)
            lo, hi = (t * n / seq_len).floor(), ((t + 1) * n / seq_len).ceil() - 1
            assert ((draws[:, b] >= lo) & (draws[:, b] <= hi)).all()
            assert ((evals[b] >= lo) & (evals[b] <= hi)).all()
            assert lo[0] == 0 and hi[-1] == n - 1  # the segments span the whole clip
            assert (lo[1:] <= hi[:-1] + 1).all()  # with no gap between them
    # Every row of a clip is drawn in training, given enough draws; the crop sees 16 of 64.
    lengths = torch.tensor([64])
    seen = torch.cat([sequence_positions(lengths, 16, True, gen)[0][0] for _ in range(200)])
    assert set(seen.tolist()) == set(range(64))
    crop = torch.stack([sequence_positions(lengths, 16, True, gen, "crop")[0][0] for _ in range(9)])
    assert ((crop.max(1).values - crop.min(1).values) == 15).all()
    with pytest.raises(ConfigError, match="Invalid sampling"):
        sequence_positions(lengths, 16, True, gen, "middle")


def order_rows(rows: int, seed: int = 0) -> Rows:
    """Four classes told apart only by the order of their rows (ramp up, ramp down, tent, V:
    the same mean), 16 videos a class, a quarter of each class validating."""
    rng = np.random.default_rng(seed)
    t = (np.arange(rows) + 0.5) / rows
    shapes = [t, 1 - t, 1 - np.abs(2 * t - 1), np.abs(2 * t - 1)]
    values, ids, labels, splits = [], [], [], []
    for c, shape in enumerate(shapes):
        for v in range(16):
            x = rng.normal(scale=0.15, size=(rows, 8)).astype(np.float32)
            x[:, 0] += 2 * shape
            x[:, 1] -= 2 * shape
            values.append(x)
            ids.append(f"c{c}/v{v:02d}")
            labels.append(f"c{c}")
            splits.append("val" if v % 4 == 0 else "train")
    offsets = np.arange(0, len(ids) * rows + 1, rows)
    return Rows(np.concatenate(values), offsets, ids, labels, splits)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def order_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    store = str(tmp_path_factory.mktemp("order") / "store")
    for rows in (16, 64):
        import_rows(open_store(store), f"order{rows}", order_rows(rows), source="order task")
    return store


def test_64_rows_at_seq_len_16_reach_the_16_row_accuracy(order_store: str, tmp_path: Path) -> None:
    """The same order task stored with 64 rows a video and trained at T = 16 reaches what the
    16-row set reaches; the contiguous crop (kept as an option) sees a quarter of each clip in
    training and the whole clip in evaluation, and falls behind."""
    common = {"store": order_store, "head": "gru", "hidden": 32, "epochs": 40, "lr": 1e-2}
    common |= {"batch_size": 16}
    top1 = {}
    for name, sampling in (("order16", "segment"), ("order64", "segment"), ("order64", "crop")):
        run = train(featureset=name, sampling=sampling, runs_dir=str(tmp_path), **common)
        top1[name, sampling] = run.metrics["top1"]
    print(top1)
    assert top1["order16", "segment"] >= 0.9
    assert top1["order64", "segment"] >= top1["order16", "segment"] - 1 / 16  # one clip slack
    assert top1["order64", "crop"] < top1["order64", "segment"]


def test_the_dataset_samples_as_the_trainer(order_store: str) -> None:
    from vidfeat.torch import FeatureSequenceDataset

    fset = open_store(order_store, "r").get_featureset("order64")
    val = FeatureSequenceDataset(fset, 16, split="val", train=False)
    x, mask, _ = val[0]
    seqs = fset.sequences(16, [val.video_ids[0]])  # the segment centres
    assert torch.equal(x, torch.from_numpy(seqs.values[0]).float()) and mask.all()
    train_set = FeatureSequenceDataset(fset, 16, split="train", train=True)
    torch.manual_seed(0)
    rows = fset.read(train_set.video_ids[0])[0]
    x, _, _ = train_set[0]
    # Every drawn row is a row of its segment: 4 rows a segment at 64 rows / T = 16.
    for t in range(16):
        segment = torch.from_numpy(rows[4 * t : 4 * t + 4].astype(np.float32))
        assert (segment == x[t]).all(1).any()
    with pytest.raises(ConfigError, match="Invalid sampling"):
        FeatureSequenceDataset(fset, 16, sampling="middle")


def test_a_manifest_split_column_is_used_or_refused_never_replaced() -> None:
    """training.md: train/val/test are read as they are; anything else is one clear error,
    never a silent random split."""
    import dataclasses

    from vidfeat.config import TrainConfig
    from vidfeat.errors import TrainError
    from vidfeat.trainer.data import FeatureData, with_split

    def data(splits: list[str]) -> FeatureData:
        n = len(splits)
        return FeatureData(
            values=None,  # type: ignore[arg-type]
            offsets=torch.arange(n + 1),
            video_ids=[f"v{i}" for i in range(n)],
            labels=torch.tensor([i % 2 for i in range(n)]),
            classes=["a", "b"],
            train_idx=np.zeros(0, np.int64),
            val_idx=np.zeros(0, np.int64),
            featureset="f",
            config_hash="h",
            manifest_splits=splits,
        )

    cfg = TrainConfig(store="s", featureset="f")
    split = with_split(data(["train", "val", "train", "test"]), cfg)
    assert split.split_source == "manifest"
    assert split.train_idx.tolist() == [0, 2] and split.val_idx.tolist() == [1, 3]
    with pytest.raises(TrainError, match=r"has 'validation': vidfeat reads only train, val, test"):
        with_split(data(["train", "validation", "train", "val"]), cfg)
    with pytest.raises(
        TrainError, match=r"1 of 4 videos have no split in the manifest \(e.g. 'v2'\)"
    ):
        with_split(data(["train", "val", "", "val"]), cfg)
    unsplit = with_split(data([""] * 10), dataclasses.replace(cfg, val_fraction=0.2))
    assert unsplit.split_source.startswith("random")
