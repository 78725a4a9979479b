"""Training as a recipe: setup → train_one_epoch → evaluate → save."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vidfeat.config import TrainConfig, build
from vidfeat.errors import ConfigError, TrainError
from vidfeat.models.backbone import resolve_device
from vidfeat.models.heads import build_head
from vidfeat.options import check_dataclass_values
from vidfeat.runtime import tune_malloc
from vidfeat.trainer.data import FeatureData, batches, fit_pca, load_data
from vidfeat.trainer.metrics import classification_metrics
from vidfeat.trainer.rows import project
from vidfeat.trainer.runs import (
    absolute_store,
    append_index,
    new_run_dir,
    save_figures,
    write_history,
    write_metrics,
)
from vidfeat.trainer.tracking import Tracker, trackers


@dataclass(slots=True)
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    best_epoch: int
    seconds: float
    interrupted: bool = False  # Ctrl-C: the best epoch before it was saved


def _head(cfg: TrainConfig, in_dim: int, classes: int) -> nn.Module:
    return build_head(
        cfg.head,
        in_dim,
        classes,
        cfg.hidden,
        cfg.layers,
        cfg.dropout,
        cfg.layer_norm,
        cfg.bidirectional,
        cfg.attention_heads,
    )


def project_data(
    data: FeatureData, cfg: TrainConfig
) -> tuple[FeatureData, dict[str, torch.Tensor]]:
    """``data`` through the PCA ``cfg.pca`` asks for (fitted on its training split)."""
    if not cfg.pca:
        return data, {}
    mean, comps = fit_pca(data, cfg.pca, cfg.seed)
    projected = dataclasses.replace(data, values=project(data.values, mean, comps))
    return projected, {"pca_mean": mean, "pca_components": comps}


@torch.no_grad()
def evaluate(
    model: nn.Module, data: FeatureData, clips: np.ndarray, cfg: TrainConfig, device: torch.device
) -> tuple[torch.Tensor, float]:
    """Logits of ``clips`` (the evaluation rows: segment centres) and their mean loss."""
    return evaluate_many([model], data, clips, cfg, device)[0]


@torch.no_grad()
def evaluate_many(
    models: list[nn.Module],
    data: FeatureData,
    clips: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
) -> list[tuple[torch.Tensor, float]]:
    """``evaluate`` of several heads on one read of the clips' rows."""
    for model in models:
        model.eval()
    logits: list[list[torch.Tensor]] = [[] for _ in models]
    idx = torch.from_numpy(clips)
    for _, x, mask, _ in batches(data, idx, 256, cfg.seq_len, train=False):
        x, mask = x.to(device), mask.to(device)
        for out, model in zip(logits, models, strict=True):
            out.append(model(x, mask).float().cpu())
    labels = data.labels[idx]
    results = []
    for out in logits:
        joined = torch.cat(out)
        results.append((joined, nn.functional.cross_entropy(joined, labels).item()))
    return results


@dataclass(slots=True)
class Setup:
    """Everything one training run holds: the data, the head, and how it learns."""

    data: FeatureData
    pca_state: dict[str, torch.Tensor]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: nn.Module
    generator: torch.Generator
    device: torch.device


def setup(cfg: TrainConfig, data: FeatureData | None = None) -> Setup:
    tune_malloc()  # see vidfeat/runtime.py
    device = resolve_device(cfg.device)
    # No torch.use_deterministic_algorithms: the CPU kernels used here are deterministic for
    # a given thread count already (a test checks it), and the call imports torch._dynamo,
    # which costs 1.5 s per run.
    data = data if data is not None else load_data(cfg)
    data, pca_state = project_data(data, cfg)
    return setup_head(cfg, data, pca_state, device)


def setup_head(
    cfg: TrainConfig, data: FeatureData, pca_state: dict[str, torch.Tensor], device: torch.device
) -> Setup:
    """The head of ``cfg`` on prepared (split, projected) data: seeded weights, optimizer,
    schedule, loss, and the generator of the batch order and sampled rows."""
    torch.manual_seed(cfg.seed)
    n_classes = len(data.classes)
    model = _head(cfg, data.dim, n_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(data.train_idx) / cfg.batch_size))
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    weight = None
    if cfg.class_weights:
        counts = torch.bincount(
            data.labels[torch.from_numpy(data.train_idx)], minlength=n_classes
        ).float()
        weight = (counts.sum() / counts.clamp_min(1) / n_classes).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    generator = torch.Generator().manual_seed(cfg.seed)
    return Setup(data, pca_state, model, optimizer, scheduler, loss_fn, generator, device)


def epoch_order(s: Setup) -> torch.Tensor:
    """The training clips in this epoch's random order."""
    train_idx = torch.from_numpy(s.data.train_idx)
    return train_idx[torch.randperm(len(train_idx), generator=s.generator)]


def train_step(
    s: Setup, cfg: TrainConfig, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor
) -> float | None:
    """One optimisation step of ``s``'s head on a batch already on its device: the loss, or
    None where the head skips the batch (BatchNorm needs two samples)."""
    if len(y) < 2 and cfg.head == "seed":
        return None
    amp = s.device.type == "cuda"
    with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = s.loss_fn(s.model(x, mask).float(), y)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(s.model.parameters(), cfg.grad_clip)
    s.optimizer.step()
    s.scheduler.step()
    return float(loss.item())


def train_one_epoch(s: Setup, cfg: TrainConfig) -> float:
    """One pass over the training clips in a random order; the mean training loss."""
    s.model.train()
    order = epoch_order(s)
    running, seen = 0.0, 0
    for clips, x, mask, y in batches(
        s.data, order, cfg.batch_size, cfg.seq_len, True, s.generator, cfg.sampling
    ):
        loss = train_step(s, cfg, x.to(s.device), mask.to(s.device), y.to(s.device))
        if loss is not None:
            running += loss * len(clips)
            seen += len(clips)
    return running / max(seen, 1)


def _val_metrics(s: Setup, cfg: TrainConfig) -> tuple[dict[str, Any], float]:
    logits, loss = evaluate(s.model, s.data, s.data.val_idx, cfg, s.device)
    labels = s.data.labels[torch.from_numpy(s.data.val_idx)]
    return classification_metrics(logits, labels, s.data.classes), loss


def train(
    cfg: TrainConfig | None = None,
    /,
    data: FeatureData | None = None,
    verbose: bool = False,
    **options: Any,
) -> RunResult:
    """Train a head on a feature set: setup → (train_one_epoch → evaluate) per epoch, early
    stopping on validation top-1 → save the best epoch's head into a new run directory under
    ``cfg.runs_dir`` (checkpoint, config, metrics, history; then the figures, whose failure
    is a one-line warning, never a lost run) and add it to the runs index. Instead of a
    config, the options of ``vidfeat train`` as keyword arguments::

        train(store="store", featureset="demo", head="gru", hidden=64, epochs=10)

    ``data``: features already loaded (a sweep loads once); default: read ``cfg.featureset``
    from ``cfg.store``. Returns a ``RunResult`` (run directory, metrics, best epoch). Ctrl-C
    after an epoch saves the best so far (``interrupted``). Raises ``TrainError`` /
    ``ConfigError``."""
    if cfg is None:
        check_dataclass_values(TrainConfig, options, "train()")
        cfg = build(TrainConfig, options)
    elif options:
        raise ConfigError(f"Give a config or options, not both ({', '.join(options)}).")
    start = time.perf_counter()
    tracked = trackers(cfg)  # a missing tracking library fails before the work
    s = setup(cfg, data)
    # Made before the epochs: an unwritable --runs-dir fails now, not after the training.
    run_dir = new_run_dir(cfg.runs_dir, cfg.head, cfg.name)
    try:
        for t in tracked:
            t.start(cfg, s.data, run_dir)
        history, best, interrupted = _epochs(s, cfg, tracked, verbose)
        s.model.load_state_dict(best[2])
        val, _ = _val_metrics(s, cfg)
    except BaseException:
        abandon(run_dir, tracked)
        raise
    return finish(s, cfg, run_dir, tracked, history, best, interrupted, val, start)


def abandon(run_dir: Path, tracked: list[Tracker]) -> None:
    """A run that failed before it was saved: no half run directory."""
    for t in tracked:
        t.finish(run_dir, {}, "FAILED")
    shutil.rmtree(run_dir, ignore_errors=True)


def finish(
    s: Setup,
    cfg: TrainConfig,
    run_dir: Path,
    tracked: list[Tracker],
    history: list[dict[str, float]],
    best: Best,
    interrupted: bool,
    val: dict[str, Any],
    start: float,
) -> RunResult:
    """Save a trained head (its best weights loaded, ``val`` their metrics): checkpoint,
    config, metrics, history, then the figures, the trackers and the runs index."""
    metrics = val | {
        "best_epoch": best[1],
        "epochs_run": len(history),
        "train_clips": len(s.data.train_idx),
        "val_clips": len(s.data.val_idx),
        "interrupted": interrupted,
    }
    try:
        save_run(run_dir, cfg, s.data, s.model, s.pca_state, metrics, history)
    except BaseException:
        abandon(run_dir, tracked)
        raise
    # The run is saved (checkpoint, metrics, history): from here on nothing may lose it.
    save_figures(run_dir, history, metrics)  # a figure that fails is a one-line warning
    for t in tracked:
        t.finish(run_dir, metrics, "KILLED" if interrupted else "FINISHED")
    seconds = time.perf_counter() - start
    append_index(cfg.runs_dir, _index_row(run_dir, cfg, s.data, metrics, seconds))
    return RunResult(run_dir, metrics, best[1], seconds, interrupted)


Best = tuple[float, int, dict[str, torch.Tensor]]  # val top-1, epoch, the head's weights


def _epochs(
    s: Setup, cfg: TrainConfig, tracked: list[Tracker], verbose: bool
) -> tuple[list[dict[str, float]], Best, bool]:
    """The epochs, early stopping on validation top-1: history, the best epoch, and whether
    Ctrl-C ended them (after at least one epoch; before it, KeyboardInterrupt propagates)."""
    history: list[dict[str, float]] = []
    best: Best = (-1.0, 0, {})
    try:
        for epoch in range(1, cfg.epochs + 1):
            train_loss = train_one_epoch(s, cfg)
            val, val_loss = _val_metrics(s, cfg)
            best, stop = end_epoch(s, cfg, epoch, train_loss, val, val_loss, history, best)
            for t in tracked:
                t.epoch(epoch, history[-1])
            if verbose:
                print(
                    f"epoch {epoch:3d}  train {train_loss:.4f}  "
                    f"val {val_loss:.4f}  top1 {val['top1']:.3f}"
                )
            if stop:
                break
    except KeyboardInterrupt:
        if not best[2]:
            raise  # no epoch finished: nothing worth a run directory
        return history, best, True  # keep what the finished epochs learned
    return history, best, False


def end_epoch(
    s: Setup,
    cfg: TrainConfig,
    epoch: int,
    train_loss: float,
    val: dict[str, Any],
    val_loss: float,
    history: list[dict[str, float]],
    best: Best,
) -> tuple[Best, bool]:
    """The epoch into ``history``, the best epoch so far, and whether to stop early."""
    history.append(
        {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_top1": val["top1"],
            "lr": float(s.scheduler.get_last_lr()[0]),
        }
    )
    if val["top1"] > best[0]:
        state = {k: v.detach().cpu().clone() for k, v in s.model.state_dict().items()}
        return (val["top1"], epoch, state), False
    return best, bool(cfg.patience and epoch - best[1] >= cfg.patience)


def _index_row(
    run_dir: Path, cfg: TrainConfig, data: FeatureData, metrics: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """The run's line in the runs leaderboard (runs/index.jsonl)."""
    return {
        "run": str(run_dir),
        "head": cfg.head,
        "featureset": data.featureset,
        "hidden": cfg.hidden,
        "lr": cfg.lr,
        "seq_len": cfg.seq_len,
        "val_top1": metrics["top1"],
        "val_top5": metrics["top5"],
        "macro_f1": metrics["macro_f1"],
        "best_epoch": metrics["best_epoch"],
        "seconds": round(seconds, 2),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "split": data.split_source,
        "interrupted": metrics["interrupted"],
    }


def save_run(
    run_dir: Path,
    cfg: TrainConfig,
    data: FeatureData,
    model: nn.Module,
    pca_state: dict[str, torch.Tensor],
    metrics: dict[str, Any],
    history: list[dict[str, float]],
) -> None:
    config = cfg.to_dict() | {
        "store": absolute_store(cfg.store),  # evaluate works from any folder
        "featureset_config_hash": data.config_hash,
        "classes": data.classes,
        "in_dim": data.dim,
        **data.featureset_meta,  # spec + backbone config: predict needs only the run
    }
    # Plain tensors and JSON-able metadata only: loads with torch.load(weights_only=True).
    torch.save(
        {"state_dict": model.state_dict(), **pca_state, "config": json.dumps(config)},
        run_dir / "model.pt",
    )
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    write_metrics(run_dir, metrics)
    write_history(run_dir, history)


def load_run(
    run_dir: str | Path, device: str = "cpu"
) -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor]]:
    path = Path(run_dir)
    if not (path / "model.pt").exists():
        raise TrainError(f"{path} is not a run directory (no model.pt).")
    ckpt = torch.load(path / "model.pt", map_location=device, weights_only=True)
    config = json.loads(ckpt["config"])
    fields = {k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**fields)
    model = _head(cfg, config["pca"] or config["in_dim"], len(config["classes"]))
    model.load_state_dict(ckpt["state_dict"])
    pca = {k: ckpt[k] for k in ("pca_mean", "pca_components") if k in ckpt}
    return model.eval(), config, pca
