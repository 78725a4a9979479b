"""Several heads trained on each batch as it is read: one pass over the data per epoch for a
whole group of sweep configs.

Configs that agree on everything that decides the batches (``STREAM_KEYS``: the seed, the
split, T and its sampling, the batch size, PCA, the device) see the same batch stream, so it is
read, gathered and converted once and every head of the group steps on it. Each head keeps
its own torch RNG state (dropout), optimizer, schedule, early stopping and run directory, so a
head's run is the run ``train`` gives for its config alone: the same weights, history and
metrics, bit for bit on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vidfeat.config import TrainConfig
from vidfeat.models.backbone import resolve_device
from vidfeat.runtime import tune_malloc
from vidfeat.trainer.data import FeatureData, batches, with_split
from vidfeat.trainer.loop import (
    Best,
    RunResult,
    Setup,
    abandon,
    end_epoch,
    epoch_order,
    evaluate_many,
    finish,
    project_data,
    setup_head,
    train_step,
)
from vidfeat.trainer.metrics import classification_metrics
from vidfeat.trainer.runs import new_run_dir
from vidfeat.trainer.tracking import Tracker, trackers

# What decides the batch stream (and the rows' projection): configs that agree on these train
# together. Everything else (head, sizes, optimizer, schedule, epochs, patience) is per head.
STREAM_KEYS = (
    "seed",
    "seq_len",
    "sampling",
    "batch_size",
    "val_fraction",
    "split_file",
    "split",
    "group_pattern",
    "pca",
    "device",
)


def stream_key(cfg: TrainConfig) -> tuple[Any, ...]:
    """Configs with equal keys can share one pass; an MLflow run is process-global, so a
    config logging to MLflow trains alone."""
    solo = (cfg.name, id(cfg)) if cfg.mlflow else None
    return (*(getattr(cfg, k) for k in STREAM_KEYS), solo)


@dataclass(slots=True)
class _Head:
    cfg: TrainConfig
    s: Setup
    run_dir: Path
    tracked: list[Tracker]
    rng: torch.Tensor  # this head's torch RNG state (dropout), swapped in for its steps
    history: list[dict[str, float]] = field(default_factory=list)
    best: Best = (-1.0, 0, {})
    active: bool = True
    saved: bool = False
    running: float = 0.0
    seen: int = 0


def train_together(
    configs: list[TrainConfig],
    data: FeatureData,
    on_result: Callable[[TrainConfig, RunResult], None] | None = None,
) -> list[RunResult]:
    """Train ``configs`` (equal ``stream_key``) on one pass over ``data`` per epoch; results in
    the order of ``configs``. Ctrl-C after an epoch saves every head's best so far, marked
    interrupted (as ``train`` does), then propagates."""
    keys = {stream_key(c) for c in configs}
    if len(keys) != 1:
        raise ValueError("train_together needs configs that share one batch stream.")
    start = time.perf_counter()
    first = configs[0]
    tune_malloc()
    device = resolve_device(first.device)
    data, pca_state = project_data(with_split(data, first), first)
    heads: list[_Head] = []
    try:
        for cfg in configs:
            tracked = trackers(cfg)
            s = setup_head(cfg, data, pca_state, device)
            rng = torch.get_rng_state()
            run_dir = new_run_dir(cfg.runs_dir, cfg.head, cfg.name)
            heads.append(_Head(cfg, s, run_dir, tracked, rng))
            for t in tracked:
                t.start(cfg, data, run_dir)
        # Every head's generator is seeded alike: the first one draws the shared stream.
        stream = heads[0].s.generator
        interrupted = False
        try:
            for epoch in range(1, max(c.epochs for c in configs) + 1):
                for h in heads:
                    h.active = h.active and epoch <= h.cfg.epochs
                if not any(h.active for h in heads):
                    break
                _epoch(heads, data, first, stream, epoch, device)
        except KeyboardInterrupt:
            if not all(h.best[2] for h in heads):
                raise
            interrupted = True
        results = []
        for h in heads:
            h.s.model.load_state_dict(h.best[2])
        finals = evaluate_many([h.s.model for h in heads], data, data.val_idx, first, device)
        val_labels = data.labels[torch.from_numpy(data.val_idx)]
        for h, (logits, _) in zip(heads, finals, strict=True):
            val = classification_metrics(logits, val_labels, data.classes)
            cut = interrupted and h.active
            result = finish(h.s, h.cfg, h.run_dir, h.tracked, h.history, h.best, cut, val, start)
            h.saved = True  # nothing may remove it now
            results.append(result)
            if on_result is not None:
                on_result(h.cfg, result)
    except BaseException:
        for h in heads:
            if not h.saved:
                abandon(h.run_dir, h.tracked)
        raise
    if interrupted:
        raise KeyboardInterrupt
    return results


def _epoch(
    heads: list[_Head],
    data: FeatureData,
    cfg: TrainConfig,
    stream: torch.Generator,
    epoch: int,
    device: torch.device,
) -> None:
    active = [h for h in heads if h.active]
    for h in active:
        h.s.model.train()
        h.running, h.seen = 0.0, 0
    order = epoch_order(heads[0].s)
    for clips, x, mask, y in batches(
        data, order, cfg.batch_size, cfg.seq_len, True, stream, cfg.sampling
    ):
        x, mask, y = x.to(device), mask.to(device), y.to(device)
        for h in active:
            torch.set_rng_state(h.rng)
            loss = train_step(h.s, h.cfg, x, mask, y)
            h.rng = torch.get_rng_state()
            if loss is not None:
                h.running += loss * len(clips)
                h.seen += len(clips)
    scores = evaluate_many([h.s.model for h in active], data, data.val_idx, cfg, device)
    val_labels = data.labels[torch.from_numpy(data.val_idx)]
    for h, (logits, val_loss) in zip(active, scores, strict=True):
        val = classification_metrics(logits, val_labels, data.classes)
        train_loss = h.running / max(h.seen, 1)
        h.best, stop = end_epoch(h.s, h.cfg, epoch, train_loss, val, val_loss, h.history, h.best)
        for t in h.tracked:
            t.epoch(epoch, h.history[-1])
        h.active = not stop


def group_configs(configs: list[TrainConfig]) -> list[list[int]]:
    """Indices of ``configs`` grouped by ``stream_key``, in first-seen order."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(stream_key(cfg), []).append(i)
    return list(groups.values())
