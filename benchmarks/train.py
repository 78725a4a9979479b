"""Trainer throughput: clips/s end to end from the store against pure compute, and what a
sweep pays for loading.

    python benchmarks/train.py [--videos 2000] [--rows 32] [--dim 1280] [--epochs 10] [--jobs 1]

1. `train()` of an LSTM head on a feature set in a store, timed whole: loading the features,
   building every batch (random temporal crops, masks), validation each epoch, and writing the
   run directory. Against it: the same head, optimizer and number of steps on batches that are
   already (B, T, D) tensors in memory. Target: ratio >= 0.8.
2. A sweep of 8 configs: the time to load the features (paid once) against the total.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_spec, verdict

from vidfeat.config import TrainConfig
from vidfeat.models.heads import build_head
from vidfeat.store import VideoRecord, open_store
from vidfeat.trainer.loop import train
from vidfeat.trainer.sweep import parse_grid, sweep


def make_featureset(root: Path, videos: int, rows: int, dim: int, classes: int) -> str:
    """Random float16 features with labels: the trainer's speed does not depend on values."""
    fset = open_store(root).create_featureset("bench", bench_spec(dim, frames=rows))
    rng = np.random.default_rng(0)
    per_part = 200
    for p in range(0, videos, per_part):
        with fset.writer(f"p{p:06d}") as w:
            for v in range(p, min(videos, p + per_part)):
                values = rng.standard_normal((rows, dim), dtype=np.float32).astype(np.float16)
                rec = VideoRecord(f"v{v:06d}", "/x", 1, 1, rows, label=f"c{v % classes}")
                w.add_video(rec, values, np.arange(rows, dtype=np.float64), np.arange(rows))
            w.commit()
    return "bench"


def pure_compute(cfg: TrainConfig, n_train: int, n_val: int, dim: int, classes: int) -> float:
    """Seconds for the same work on ready (B, T, D) batches in memory: the optimisation steps,
    and each epoch's validation forward pass (batches of 256, as the trainer does)."""
    torch.manual_seed(0)
    model = build_head(cfg.head, dim, classes, cfg.hidden, cfg.layers, cfg.dropout, False, False, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = -(-n_train // cfg.batch_size)
    batches = [
        (
            torch.randn(min(cfg.batch_size, n_train - i * cfg.batch_size), cfg.seq_len, dim),
            torch.randint(0, classes, (min(cfg.batch_size, n_train - i * cfg.batch_size),)),
        )
        for i in range(steps)
    ]
    val = [torch.randn(min(256, n_val - i), cfg.seq_len, dim) for i in range(0, n_val, 256)]
    mask = torch.ones(max(cfg.batch_size, 256), cfg.seq_len, dtype=torch.bool)
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        model.train()
        for x, y in batches:
            loss = loss_fn(model(x, mask[: len(x)]), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x in val:
                model(x, mask[: len(x)])
    return time.perf_counter() - start


def warm_up() -> None:
    """Pay the one-off imports before timing (torch.optim pulls in torch._dynamo, the run
    directory pulls in matplotlib: about 2 s per process, once per sweep)."""
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    import matplotlib.pyplot  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=32, help="feature rows per video")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=1, help="sweep jobs")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="vidfeat-bench-train-"))
    try:
        name = make_featureset(root / "store", args.videos, args.rows, args.dim, args.classes)
        cfg = TrainConfig(
            store=str(root / "store"),
            featureset=name,
            head="lstm",
            hidden=256,
            epochs=args.epochs,
            patience=args.epochs,
            device="cpu",
            runs_dir=str(root / "runs"),
        )
        print(
            f"data: {args.videos} videos x {args.rows} rows x {args.dim} float16, "
            f"head lstm(256), seq_len {cfg.seq_len}, batch {cfg.batch_size}, "
            f"{args.epochs} epochs, {torch.get_num_threads()} torch threads"
        )
        warm_up()
        start = time.perf_counter()
        result = train(cfg)
        e2e_s = time.perf_counter() - start
        n_train, n_val = result.metrics["train_clips"], result.metrics["val_clips"]
        compute_s = pure_compute(cfg, n_train, n_val, args.dim, args.classes)
        e2e = n_train * args.epochs / e2e_s
        bound = n_train * args.epochs / compute_s
        ratio = e2e / bound
        print(
            f"train  end to end from the store {e2e:6.0f} clips/s ({e2e_s:.2f} s: load, batching, "
            f"validation, run dir with plots)\n"
            f"       pure compute in memory     {bound:6.0f} clips/s ({compute_s:.2f} s: the same "
            f"steps and validation passes)\n"
            f"       ratio {ratio:.2f} [target >= 0.8: {verdict(ratio, 0.8)}]"
        )

        grid = parse_grid(["head=lstm,gru,meanpool,attention", "hidden=64,128"])
        swept = sweep(
            TrainConfig(
                store=cfg.store,
                featureset=name,
                epochs=2,
                device="cpu",
                runs_dir=str(root / "sweep"),
            ),
            grid,
            jobs=args.jobs,
        )
        share = swept.load_seconds / swept.total_seconds
        print(
            f"sweep  {len(grid)} configs, {args.jobs} job(s): load {swept.load_seconds:.2f} s "
            f"once, total {swept.total_seconds:.2f} s (load = {share:.1%} of the total)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
