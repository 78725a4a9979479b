"""Trainer throughput: clips/s end to end from the store against pure compute, and what a
sweep pays for loading.

    python benchmarks/train.py [--videos 2000] [--rows 32] [--dim 1280] [--epochs 10] [--jobs 1]

1. `train()` of an LSTM head on a feature set in a store, timed whole: loading the features,
   building every batch (random rows of T segments, masks), validation each epoch, and writing
   the run directory. Against it: the same head, optimizer and number of steps on batches that are
   already (B, T, D) tensors in memory. Target: ratio >= 0.8.
2. A sweep of 8 configs: the time to load the features (paid once) against the total.

    python benchmarks/train.py --scale [--memory-gib G] [--rows 16] [--dim 2048] [--repeats 2]

3. Out of core. A feature set of 1.5 x G GiB (G: the memory the set must not fit in, default
   the machine's available memory) is built through the store API and deleted after. Each
   measurement runs in a fresh process, which reports its own peak RSS: one training epoch with
   rows read from the parts (--rows-from disk, the page cache of the parts dropped first) on
   the whole set, against the in-memory path (--rows-from memory) and the disk path on a
   quarter of it that fits, round by round (--repeats), medians compared. What `auto` picks
   under G, and the refusal that --rows-from memory gives for the whole set, are printed.
   Targets: peak RSS <= 8 GB, epoch time per clip within 1.3x of the in-memory path.

    python benchmarks/train.py --sweep16 [--videos 13320] [--rows 16] [--dim 1280] [--epochs 2]

4. Many heads at once: a 16-config sweep (head x hidden x lr x dropout) on a UCF101-scale set,
   every config sharing one batch stream, against the same 16 configs as single `train()` runs
   back to back (each reading the set as a user's run does), in the same process. Prints both
   wall times, the ratio (target <= 0.5) and how many configs gave identical metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
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


def make_large_featureset(root: Path, videos: int, rows: int, dim: int, classes: int) -> str:
    """``make_featureset`` for sets of many GiB: rows cut from one random pool (the values do
    not matter for speed; generating them would dominate the build)."""
    fset = open_store(root).create_featureset("bench", bench_spec(dim, frames=rows))
    pool = np.random.default_rng(0).standard_normal((8192 + rows, dim), dtype=np.float32)
    pool = pool.astype(np.float16)
    pts, frame_index = np.arange(rows, dtype=np.float64), np.arange(rows)
    per_part = 1000
    for p in range(0, videos, per_part):
        with fset.writer(f"p{p:07d}") as w:
            for v in range(p, min(videos, p + per_part)):
                at = (v * 7919) % 8192
                rec = VideoRecord(f"v{v:07d}", "/x", 1, 1, rows, label=f"c{v % classes}")
                w.add_video(rec, pool[at : at + rows], pts, frame_index)
            w.commit()
    return "bench"


def drop_page_cache(path: Path) -> None:
    """Evict ``path``'s files from the page cache (written back first), so the next read
    comes from the disk, as it does for a set larger than memory."""
    os.sync()
    for f in path.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child_epoch(options: dict) -> None:
    """In a fresh process: set up a run (loading or opening the rows) and time one training
    epoch; print seconds, clips and this process's peak RSS as JSON."""
    from vidfeat.trainer.loop import setup, train_one_epoch

    warm_up()
    cfg = TrainConfig(**options)
    start = time.perf_counter()
    s = setup(cfg)
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    train_one_epoch(s, cfg)
    epoch_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"setup_s": setup_s, "epoch_s": epoch_s, "clips": len(s.data.train_idx)}
    print(json.dumps(out | {"peak_rss": peak, "on_disk": s.data.on_disk}))


def run_child(options: dict) -> dict:
    res = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(options)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise SystemExit(f"child failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def scale(args: argparse.Namespace) -> None:
    from vidfeat.errors import TrainError
    from vidfeat.trainer.rows import GiB, available_memory, choose_source

    bound = int(args.memory_gib * GiB) if args.memory_gib else available_memory()
    row_bytes = args.rows * args.dim * 2
    videos = -(-int(1.5 * bound) // row_bytes)
    root = Path(tempfile.mkdtemp(prefix="vidfeat-bench-scale-"))
    try:
        start = time.perf_counter()
        name = make_large_featureset(root / "store", videos, args.rows, args.dim, args.classes)
        size = videos * row_bytes
        print(
            f"set: {videos} videos x {args.rows} rows x {args.dim} float16 = {size / GiB:.2f} GiB "
            f"= {size / bound:.2f} x the memory bound {bound / GiB:.2f} GiB "
            f"({'--memory-gib' if args.memory_gib else 'available memory'}); "
            f"built through the store API in {time.perf_counter() - start:.0f} s"
        )
        quarter = videos // 4
        labels = root / "quarter.csv"
        labels.write_text(
            "video_id,label\n" + "".join(f"v{v:07d},c{v % args.classes}\n" for v in range(quarter))
        )
        for what, n in (("whole set", size), ("quarter", quarter * row_bytes)):
            print(f"  auto under the bound, {what}: {choose_source('auto', n, name, bound)}")
        print("  (the quarter is trained with --rows-from memory, which the machine fits)")
        try:
            choose_source("memory", size, name, bound)
        except TrainError as e:
            print(f"  --rows-from memory, whole set: refused before loading: {e}")
        base = {
            "store": str(root / "store"),
            "featureset": name,
            "head": args.head,
            "hidden": args.hidden,
            "seq_len": args.rows,
            "device": "cpu",
            "runs_dir": str(root / "runs"),
        }
        quarter_opts = base | {"labels": str(labels)}
        runs = {
            "disk, whole set (cold page cache)": base | {"rows_from": "disk"},
            "memory, quarter": quarter_opts | {"rows_from": "memory"},
            "disk, quarter": quarter_opts | {"rows_from": "disk"},
        }
        # Round by round (the machine is shared: a candidate and its bound see the same load);
        # each round's whole-set run starts with the parts evicted from the page cache.
        rounds: dict[str, list[dict]] = {what: [] for what in runs}
        for _ in range(args.repeats):
            drop_page_cache(root / "store")
            for what, options in runs.items():
                rounds[what].append(run_child(options))
        per_clip = {
            what: statistics.median(r["epoch_s"] / r["clips"] for r in rs)
            for what, rs in rounds.items()
        }
        for what, rs in rounds.items():
            epochs = ", ".join(f"{r['epoch_s']:.1f}" for r in rs)
            peak = max(r["peak_rss"] for r in rs)
            print(
                f"  {what:34s} {rs[0]['clips']:6d} clips  epoch {epochs} s  median "
                f"{1 / per_clip[what]:5.0f} clips/s  peak RSS {peak / GiB:5.2f} GiB"
            )
        for what in ("disk, whole set (cold page cache)", "disk, quarter"):
            ratio = per_clip[what] / per_clip["memory, quarter"]
            print(
                f"  epoch time per clip, {what} / memory: {ratio:.2f} "
                f"[target <= 1.3: {verdict(ratio, 1.3, higher_is_better=False)}]"
            )
        peak = max(r["peak_rss"] for r in rounds["disk, whole set (cold page cache)"])
        memory_peak = max(r["peak_rss"] for r in rounds["memory, quarter"])
        print(
            f"  peak RSS training the whole set from disk {peak / 1e9:.2f} GB "
            f"[target <= 8 GB: {verdict(peak / 1e9, 8, higher_is_better=False)}]; "
            f"in memory (the quarter): {memory_peak / 1e9:.2f} GB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sweep16(args: argparse.Namespace) -> None:
    import dataclasses

    root = Path(tempfile.mkdtemp(prefix="vidfeat-bench-sweep-"))
    try:
        name = make_large_featureset(root / "store", args.videos, args.rows, args.dim, 101)
        base = TrainConfig(
            store=str(root / "store"),
            featureset=name,
            epochs=args.epochs,
            seq_len=args.rows,
            device="cpu",
            runs_dir=str(root / "runs"),
        )
        grid = parse_grid(["head=meanpool,gru", "hidden=32,64", "lr=1e-3,3e-3", "dropout=0.1,0.3"])
        print(
            f"data: {args.videos} videos x {args.rows} rows x {args.dim} float16, 101 classes, "
            f"{len(grid)} configs (head x hidden x lr x dropout), {args.epochs} epochs, "
            f"{torch.get_num_threads()} torch threads"
        )
        warm_up()
        start = time.perf_counter()
        singles = [
            train(dataclasses.replace(base, runs_dir=str(root / "single"), **g)) for g in grid
        ]
        single_s = time.perf_counter() - start
        swept = sweep(dataclasses.replace(base, runs_dir=str(root / "together")), grid)
        together_s = swept.total_seconds
        by_config = {tuple(sorted(o.items())): r.metrics for o, r in swept.results}
        pairs = zip(grid, singles, strict=True)
        same = sum(by_config[tuple(sorted(g.items()))] == r.metrics for g, r in pairs)
        ratio = together_s / single_s
        print(
            f"16 single runs back to back {single_s:7.1f} s (each loading the set)\n"
            f"sweep, heads together      {together_s:7.1f} s (load {swept.load_seconds:.1f} s "
            f"once, one pass over the data per epoch)\n"
            f"ratio {ratio:.2f} [target <= 0.5: {verdict(ratio, 0.5, higher_is_better=False)}]; "
            f"identical metrics in {same} of {len(grid)} configs (all share seed 0)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


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
    ap.add_argument("--scale", action="store_true", help="the out-of-core measurement")
    ap.add_argument(
        "--memory-gib", type=float, default=0, help="--scale: the memory bound (default: available)"
    )
    ap.add_argument("--head", default="lstm", help="--scale: the head")
    ap.add_argument("--hidden", type=int, default=256, help="--scale: its hidden size")
    ap.add_argument("--repeats", type=int, default=2, help="--scale: rounds of measurements")
    ap.add_argument("--sweep16", action="store_true", help="many heads at once vs singles")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_epoch(json.loads(args.child))
        return
    if args.scale:
        scale(args)
        return
    if args.sweep16:
        sweep16(args)
        return

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
