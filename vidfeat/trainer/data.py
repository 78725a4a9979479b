"""Features from the store → rows, labels, splits and fixed-length sequences.

The rows of a feature set are one ``RowSource`` (vidfeat.trainer.rows): loaded once into one
(rows, D) tensor in the stored dtype, or read on demand from the parts when the set does not
fit in memory. Batches are gathered from it by row index (``take``), so there is no per-clip
Python work either way.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from vidfeat.config import TEMPORAL_SAMPLING, TrainConfig, check_choice
from vidfeat.errors import TrainError
from vidfeat.store import open_store
from vidfeat.store.featureset import uniform_positions
from vidfeat.trainer.rows import (
    PCA_SAMPLE_ROWS,
    DiskRows,
    RowSource,
    background,
    gather_rows,
    open_rows,
)


@dataclass(slots=True)
class FeatureData:
    values: RowSource  # rows in the stored dtype (float16 by default), cast per batch
    offsets: torch.Tensor  # (n+1,) int64
    video_ids: list[str]
    labels: torch.Tensor  # (n,) int64
    classes: list[str]
    train_idx: np.ndarray
    val_idx: np.ndarray
    featureset: str
    config_hash: str
    manifest_splits: list[str]  # per video, as extracted ("" when the manifest had none)
    featureset_meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # spec, backbone
    split_source: str = ""  # what made the validation split (the leaderboard shows it)

    @property
    def dim(self) -> int:
        return self.values.dim

    @property
    def on_disk(self) -> bool:
        """Whether rows are read from the parts on demand (not loaded)."""
        source = getattr(self.values, "source", self.values)
        return isinstance(source, DiskRows)

    def lengths(self, clips: torch.Tensor) -> torch.Tensor:
        return self.offsets[clips + 1] - self.offsets[clips]


def _read_labels_csv(path: str) -> dict[str, str]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise TrainError(f"Cannot read --labels {path}: {e}") from None
    if not rows or not {"video_id", "label"} <= set(rows[0]):
        raise TrainError(f"--labels {path} needs columns video_id,label.")
    return {r["video_id"]: r["label"] for r in rows}


def _split_from_file(path: str, ids: list[str], split: str) -> dict[str, str]:
    """UCF101 trainlist/testlist files (lines 'Class/v_X_g08_c01.avi [label]') or a CSV of
    video_id,split. Returns video_id → 'train' | 'val'."""
    p = Path(path)
    if not p.exists():
        raise TrainError(f"--split-file {path} does not exist.")
    if p.suffix == ".csv":
        with p.open(newline="") as f:
            return {
                r["video_id"]: ("train" if r["split"] == "train" else "val")
                for r in csv.DictReader(f)
            }
    # UCF101 style: a trainlist names the training videos; everything else is validation.
    listed = {line.split()[0] for line in p.read_text().splitlines() if line.strip()}
    listed_names = {PurePosixPath(x).name for x in listed}
    is_train_list = "test" not in p.name.lower()
    out = {}
    for vid in ids:
        hit = vid in listed or PurePosixPath(vid).name in listed_names
        out[vid] = "train" if hit == is_train_list else "val"
    return out


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int, groups: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split; with groups, whole groups go to one side."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if groups is None:
            members = rng.permutation(members)
            n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
            val += members[:n_val].tolist()
        else:
            keys = sorted({groups[i] for i in members})
            keys = [keys[i] for i in rng.permutation(len(keys))]
            n_val = max(1, round(len(keys) * val_fraction)) if len(keys) > 1 else 0
            chosen = set(keys[:n_val])
            val += [int(i) for i in members if groups[i] in chosen]
    val_arr = np.array(sorted(val), dtype=np.int64)
    train_arr = np.setdiff1d(np.arange(len(labels)), val_arr)
    return train_arr, val_arr


def load_data(cfg: TrainConfig) -> FeatureData:
    """The labelled videos of ``cfg.featureset``, their rows from memory or from disk as
    ``cfg.rows_from`` decides (a set that cannot fit in memory is refused or read from disk before
    anything is loaded), and the split."""
    fset = open_store(cfg.store, mode="r").get_featureset(cfg.featureset)
    stored = fset.row_reader()  # the catalog only: ids, labels, splits, row counts
    ids = stored.video_ids
    labels_by_id = (
        _read_labels_csv(cfg.labels) if cfg.labels else dict(zip(ids, stored.labels, strict=True))
    )
    keep = [i for i, v in enumerate(ids) if labels_by_id.get(v) not in (None, "")]
    if not keep:
        raise TrainError(
            f"No video in feature set {cfg.featureset!r} has a label. Extract with --label-from "
            "parent or a manifest with a label column, or pass --labels CSV (video_id,label)."
        )
    classes = sorted({str(labels_by_id[ids[i]]) for i in keep})
    if len(classes) < 2:
        raise TrainError(
            f"Only one class ({classes[0]!r}) in the labelled videos: nothing to learn."
        )
    class_of = {c: k for k, c in enumerate(classes)}
    kept_ids = [ids[i] for i in keep]
    # Only the labelled videos' rows are read, in one contiguous tensor in the stored dtype
    # (half the memory, no full-size cast before the first step), or not at all (disk).
    reader = stored if len(keep) == len(ids) else fset.row_reader(kept_ids)
    values = open_rows(fset, kept_ids, reader, cfg.rows_from)
    offsets = torch.from_numpy(reader.offsets)
    labels = np.array([class_of[str(labels_by_id[v])] for v in kept_ids], np.int64)
    splits = [stored.splits[i] or "" for i in keep]
    data = FeatureData(
        values,
        offsets,
        kept_ids,
        torch.from_numpy(labels),
        classes,
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        fset.name,
        fset.spec.config_hash(),
        splits,
        {k: fset.meta[k] for k in ("spec", "backbone_config") if k in fset.meta},
    )
    return with_split(data, cfg)


MANIFEST_SPLITS = ("train", "val", "test")


def _check_manifest_splits(ids: list[str], splits: list[str]) -> None:
    """A manifest's split column is used as it is, or refused: never replaced by another split
    without a word."""
    unknown = sorted({s for s in splits if s and s not in MANIFEST_SPLITS})
    if unknown:
        raise TrainError(
            f"The manifest's split column has {', '.join(repr(s) for s in unknown[:5])}: vidfeat "
            f"reads only {', '.join(MANIFEST_SPLITS)} (val and test validate). Fix the column, or "
            "give --split-file."
        )
    missing = [v for v, s in zip(ids, splits, strict=True) if not s]
    if missing:
        raise TrainError(
            f"{len(missing)} of {len(ids)} videos have no split in the manifest (e.g. "
            f"{missing[0]!r}): give every video one, or --split-file."
        )


def with_split(data: FeatureData, cfg: TrainConfig) -> FeatureData:
    """``data`` with the train/val split ``cfg`` asks for: --split-file, else the manifest's
    split column, else a seeded stratified split (groups kept whole with --group-pattern).
    Cheap, so a sweep loads the features once and re-splits per config."""
    ids, splits = data.video_ids, data.manifest_splits
    if cfg.split_file:
        by_id = _split_from_file(cfg.split_file, ids, cfg.split)
        val_mask = np.array([by_id.get(v, "train") != "train" for v in ids])
        train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        source = f"{Path(cfg.split_file).name} (split {cfg.split})"
    elif any(splits):
        _check_manifest_splits(ids, splits)
        val_mask = np.array([s != "train" for s in splits])
        train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
        source = "manifest"
    else:
        source = f"random {cfg.val_fraction:g} seed {cfg.seed}"
        source += f" groups {cfg.group_pattern}" if cfg.group_pattern else ""
        groups = None
        if cfg.group_pattern:
            pattern = re.compile(cfg.group_pattern)
            groups = [(m.group(0) if (m := pattern.search(v)) else v) for v in ids]
        train_idx, val_idx = stratified_split(
            data.labels.numpy(), cfg.val_fraction, cfg.seed, groups
        )
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise TrainError(
            f"Split left {len(train_idx)} training and {len(val_idx)} validation clips."
        )
    return dataclasses.replace(data, train_idx=train_idx, val_idx=val_idx, split_source=source)


def fit_pca(data: FeatureData, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA on the training split's rows only (a seeded sample of PCA_SAMPLE_ROWS of them
    when they are more) → (mean, components (D, k))."""
    train_rows = gather_rows(data.values, data.offsets, data.train_idx, PCA_SAMPLE_ROWS, seed)
    if k > min(train_rows.shape):
        raise TrainError(
            f"--pca {k} exceeds the training data's rank limit {min(train_rows.shape)}."
        )
    mean = train_rows.mean(0)
    _, _, v = torch.linalg.svd(train_rows - mean, full_matrices=False)
    return mean, v[:k].T.contiguous()


def sequence_index(
    data: FeatureData,
    clips: torch.Tensor,
    seq_len: int,
    train: bool,
    generator: torch.Generator | None = None,
    sampling: str = "segment",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) row indices and validity mask of clips of ``data`` (``sequence_positions``)."""
    starts = data.offsets[clips]
    lengths = data.lengths(clips)
    pos, mask = sequence_positions(lengths, seq_len, train, generator, sampling)
    rows = starts.unsqueeze(1) + pos.clamp_max((lengths - 1).clamp_min(0).unsqueeze(1))
    return rows, mask


def sequence_positions(
    lengths: torch.Tensor,
    seq_len: int,
    train: bool,
    generator: torch.Generator | None = None,
    sampling: str = "segment",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) positions within each clip of ``lengths`` rows, and the validity mask.

    A clip of L >= T rows is cut into T equal segments [t*L/T, (t+1)*L/T). Evaluation (and
    prediction, and ``FeatureSet.sequences``) takes each segment's centre row; training
    (``sampling="segment"``, as TSN and mmaction2 do) takes a random row of each segment, so
    it sees the span evaluation sees. ``sampling="crop"``: training takes a random run of T
    neighbouring rows instead. A clip shorter than T gives its rows in order, then padding
    (masked), in training and evaluation alike."""
    check_choice("sampling", sampling, TEMPORAL_SAMPLING)
    t = torch.arange(seq_len)
    if not train:  # the store's own uniform sampling, so FeatureSet.sequences sees the same rows
        pos = torch.from_numpy(uniform_positions(lengths.numpy(), seq_len)[0])
    elif sampling == "crop":
        slack = (lengths - seq_len).clamp_min(0)
        offset = (
            (torch.rand(len(lengths), generator=generator) * (slack + 1).float()).floor().long()
        )
        pos = offset.unsqueeze(1) + t
    else:
        u = torch.rand(len(lengths), seq_len, generator=generator, dtype=torch.float64)
        span = lengths.unsqueeze(1).to(torch.float64)
        pos = ((t + u) * span / seq_len).floor().long()
        pos = torch.minimum(pos, (lengths - 1).unsqueeze(1))
        pos = torch.where(lengths.unsqueeze(1) >= seq_len, pos, t)
    return pos, pos < lengths.unsqueeze(1)


def batch(
    data: FeatureData,
    clips: torch.Tensor,
    seq_len: int,
    train: bool,
    generator: torch.Generator | None = None,
    sampling: str = "segment",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rows, mask = sequence_index(data, clips, seq_len, train, generator, sampling)
    x = data.values.take(rows).float() * mask.unsqueeze(-1)
    return x, mask, data.labels[clips]


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # clips, x, mask, y


def batches(
    data: FeatureData,
    clips: torch.Tensor,
    batch_size: int,
    seq_len: int,
    train: bool,
    generator: torch.Generator | None = None,
    sampling: str = "segment",
) -> Iterator[Batch]:
    """``clips`` in batches of ``batch_size`` (in this order), each with its rows, assembled
    a batch ahead in a background thread: from disk the reads overlap the model's step, and
    in memory it measured 5-8x faster here than assembling them between the steps on the
    main thread (benchmarks/train.py --scale, a 2-core machine shared with other work)."""

    def make() -> Iterator[Batch]:
        for i in range(0, len(clips), batch_size):
            chosen = clips[i : i + batch_size]
            yield (chosen, *batch(data, chosen, seq_len, train, generator, sampling))

    return background(make())
