"""A feature set as a PyTorch ``Dataset`` of fixed-length sequences, for your own training loop.

    from torch.utils.data import DataLoader
    from vidfeat.torch import FeatureSequenceDataset

    train = FeatureSequenceDataset(fset, seq_len=16, split="train", train=True)
    val = FeatureSequenceDataset(fset, seq_len=16, split="val", train=False)
    for x, mask, y in DataLoader(train, batch_size=32, shuffle=True, num_workers=2): ...

Sequences are sampled exactly as ``vidfeat train`` samples them (vidfeat.trainer.data): each
video is cut into T equal segments, training takes a random row of each (``sampling="crop"``:
a random run of T neighbouring rows instead), evaluation the segment centres; shorter videos
are padded and masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from vidfeat.config import TEMPORAL_SAMPLING, TRAIN_DATA, check_choice
from vidfeat.errors import TrainError
from vidfeat.store import FeatureSet
from vidfeat.trainer.data import sequence_positions
from vidfeat.trainer.rows import open_rows


class FeatureSequenceDataset(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """Item i: ``(x (T, D) float32, mask (T,) bool, label index)`` of the i-th labelled video.

    ``split``: only videos whose manifest split is this (``"train"``, ``"val"``, ``"test"``);
    ``video_ids``: only these. ``classes``: the label order (default: every label in the
    feature set, sorted, so datasets of different splits agree). ``sampling``: the training
    rows of a video, ``segment`` or ``crop`` (as ``vidfeat train --sampling``). ``rows_from``:
    ``memory`` (default) reads the rows once, here, and DataLoader workers share them;
    ``disk`` reads each item's rows from the parts (sets larger than memory); ``auto`` picks
    memory when they fit (``vidfeat train --rows-from``)."""

    def __init__(
        self,
        featureset: FeatureSet,
        seq_len: int = 16,
        split: str | None = None,
        train: bool = True,
        video_ids: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        sampling: str = "segment",
        rows_from: str = "memory",
    ) -> None:
        check_choice("sampling", sampling, TEMPORAL_SAMPLING)
        check_choice("rows_from", rows_from, TRAIN_DATA)
        labels = featureset.labels()
        splits = featureset.splits()
        chosen = [
            v
            for v in (video_ids if video_ids is not None else labels)
            if labels.get(v) not in (None, "") and (split is None or splits.get(v) == split)
        ]
        if not chosen:
            where = f" with split {split!r}" if split else ""
            raise TrainError(f"No labelled video{where} in feature set {featureset.name!r}.")
        self.classes = list(classes or sorted({str(x) for x in labels.values() if x}))
        class_of = {c: k for k, c in enumerate(self.classes)}
        reader = featureset.row_reader(chosen)
        self.video_ids = reader.video_ids
        self.seq_len, self.train, self.sampling = seq_len, train, sampling
        self.rows = open_rows(featureset, chosen, reader, rows_from)  # stored dtype; cast per item
        self.offsets = torch.from_numpy(reader.offsets)
        try:
            self.targets = [class_of[str(x)] for x in reader.labels]
        except KeyError as e:
            raise TrainError(f"Label {e.args[0]!r} is not in classes {self.classes}.") from None

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        n = stop - start
        pos, mask = sequence_positions(
            torch.tensor([n]), self.seq_len, self.train, sampling=self.sampling
        )
        rows = start + pos[0].clamp_max(max(n - 1, 0))
        x = self.rows.take(rows).float() * mask[0].unsqueeze(-1)
        return x, mask[0], self.targets[i]

    @property
    def labels(self) -> np.ndarray:
        """Label index of every item (e.g. for a weighted sampler)."""
        return np.array(self.targets, np.int64)
