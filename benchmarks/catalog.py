"""Catalog scaling: ls, info, done(), cold read, load, verify and rerun planning at 10k, 100k
(and with --million 1M) videos, after a snapshot with a few newer commits on top.

    python benchmarks/catalog.py [--sizes 10000 100000] [--million] [--s3] [--dir PATH]

Stores are built through the store API: 16 rows x 64 dims a video (float16), parts of 50 videos
as the planner makes them, one tiny file per video on disk so that a rerun's discovery and skip
step run for real. Each operation runs in a fresh process (cold catalog; the page cache is warm,
as on a rerun) and prints its wall time and peak RSS; the growth exponent between sizes is
log(t2/t1) / log(n2/n1) (1.0 = linear). load() is compared with np.load of the same bytes in
the same state. Targets at 1M videos: ls and info <= 1 s, cold read <= 0.3 s, done() <= 2 s,
catalog memory <= 200 bytes a video, load() <= 1.5x np.load, planning <= 15 s. --s3 counts the
requests of a catalog read on a moto server at 10k videos (target <= 10 plus one per newer
commit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_spec, verdict

ROWS, DIM, PER_PART, NEWER_PARTS = 16, 64, 50, 3
OPS = ("ls", "info", "done", "read", "load", "np.load", "verify", "plan")


def video_path(root: Path, i: int) -> Path:
    # 400 classes of consecutive videos: sorted ids run part by part, as the planner groups a
    # sorted discovery (to_dask and load are also tested with ids that interleave parts).
    return root / f"class{i // 2500:03d}" / f"v_{i:08d}.mp4"


def write_parts(store_url: str, root: str, first_part: int, n_parts: int) -> None:
    from vidfeat.store import VideoRecord, open_store

    fset = open_store(store_url).get_featureset("bench")
    rows = np.random.default_rng(first_part).standard_normal((ROWS, DIM)).astype(np.float16)
    pts, frames = np.arange(ROWS) / 25.0, np.arange(ROWS)
    for p in range(first_part, first_part + n_parts):
        with fset.writer(f"p{p:07d}") as w:
            for i in range(p * PER_PART, (p + 1) * PER_PART):
                path = video_path(Path(root), i)
                st = path.stat()
                vid = str(path.relative_to(root))
                rec = VideoRecord(vid, str(path), st.st_size, st.st_mtime_ns, ROWS, "0" * 64)
                rec = VideoRecord(**{**rec.to_json(), "label": path.parent.name})
                w.add_video(rec, rows, pts, frames)
            w.commit()


def build(base: Path, n: int, workers: int) -> tuple[str, Path]:
    from vidfeat.store import open_store

    root, url = base / "videos", str(base / "store")
    for i in range(n + NEWER_PARTS * PER_PART):
        path = video_path(root, i)
        if i % 2500 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    open_store(url).create_featureset("bench", bench_spec(DIM, ROWS, "hdf5"))
    parts = n // PER_PART
    chunks = [(s, min(parts, s + 200) - s) for s in range(0, parts, 200)]
    with ProcessPoolExecutor(workers) as pool:
        list(
            pool.map(
                write_parts,
                [url] * len(chunks),
                [str(root)] * len(chunks),
                *zip(*chunks, strict=True),
            )
        )
    fset = open_store(url).get_featureset("bench")
    t = time.perf_counter()
    fset.compact()
    print(f"  compact: {time.perf_counter() - t:.2f} s", flush=True)
    write_parts(url, str(root), parts, NEWER_PARTS)  # newer than the snapshot
    return url, root


def child(op: str, url: str, root: str, out: str) -> None:
    """One operation in this fresh process: prints JSON with wall, peak RSS, catalog bytes."""
    import vidfeat.store as vs
    from vidfeat.pipeline.discovery import discover
    from vidfeat.pipeline.resume import plan_videos

    def rss_mib() -> float:
        # VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork + exec.
        with open("/proc/self/status") as f:
            hwm = next(line for line in f if line.startswith("VmHWM:"))
        return int(hwm.split()[1]) / 1024

    import pyarrow as pa

    base_arrow = pa.total_allocated_bytes()
    t = time.perf_counter()
    extra: dict[str, Any] = {}
    if op == "np.load":
        np.load(out)
    else:
        store = vs.open_store(url, mode="r")
        fset = store.get_featureset("bench")
        if op == "ls":
            vs.summarize(fset)
        elif op == "info":
            vs.summarize(fset)
            fset.catalog().failures()
        elif op == "done":
            done = fset.done()
            # What the catalog holds: its arrow columns (the snapshot's file is memory-mapped).
            extra["catalog_bytes"] = pa.total_allocated_bytes() - base_arrow
            extra["n"] = len(done)
        elif op == "read":
            fset.read("class000/v_00000123.mp4")
        elif op == "load":
            loaded = fset.load()
            extra["wall"] = time.perf_counter() - t
            if not Path(out).exists():
                np.save(out, loaded.values)  # the same bytes, for np.load (not timed)
        elif op == "verify":
            assert vs.verify_featureset(fset) == []
        elif op == "plan":
            plan = plan_videos(discover([root]), fset.catalog(), False, False)
            assert not plan.pending and not plan.conflicts, (len(plan.pending), plan.conflicts)
            extra["skipped"] = plan.skipped
    wall = time.perf_counter() - t
    print(json.dumps({"wall": wall, "rss_mib": rss_mib(), **extra}))  # extra's wall wins


def run_op(op: str, url: str, root: Path, npy: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", op, url, str(root), str(npy)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{op} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def s3_requests(base: Path) -> None:
    """Catalog read on a moto S3 server at 10k videos: requests counted at s3fs's API calls."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server_py = Path(__file__).resolve().parents[1] / "tests" / "s3_server.py"
    server = subprocess.Popen(
        [sys.executable, str(server_py), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        os.environ |= {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "VIDFEAT_CACHE": str(base / "cache"),
        }
        import s3fs

        s3fs.S3FileSystem().mkdir("bench")
        _s3_store_and_count(base)
    finally:
        server.terminate()


def _s3_store_and_count(base: Path) -> None:
    import s3fs

    from vidfeat.store import open_store

    root = base / "s3-videos"
    for i in range(10_000 + NEWER_PARTS * PER_PART):
        path = video_path(root, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    url = "s3://bench/store"
    open_store(url).create_featureset("bench", bench_spec(DIM, ROWS, "hdf5"))
    write_parts(url, str(root), 0, 10_000 // PER_PART)
    open_store(url).get_featureset("bench").compact()
    write_parts(url, str(root), 10_000 // PER_PART, NEWER_PARTS)
    calls: list[str] = []
    real = s3fs.S3FileSystem._call_s3

    async def counted(self: Any, method: str, *args: Any, **kw: Any) -> Any:
        calls.append(method)
        return await real(self, method, *args, **kw)

    s3fs.S3FileSystem._call_s3 = counted  # type: ignore[method-assign]
    fset = open_store(url, mode="r").get_featureset("bench")
    before = len(calls)
    t = time.perf_counter()
    fset.catalog().stats()
    wall = time.perf_counter() - t
    used = calls[before:]
    print(
        f"S3 10k videos, snapshot + {NEWER_PARTS} newer commits: catalog read in {len(used)} "
        f"requests ({', '.join(f'{m} x{used.count(m)}' for m in sorted(set(used)))}), "
        f"{wall:.2f} s; target <= {10 + NEWER_PARTS}: "
        f"{verdict(len(used), 10 + NEWER_PARTS, higher_is_better=False)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--million", action="store_true", help="add 1M videos (about 15 min)")
    ap.add_argument("--s3", action="store_true", help="count requests on a moto S3 server")
    ap.add_argument("--dir", default=None, help="where to build the stores (default: temp)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    sizes = sorted(set(args.sizes + ([1_000_000] if args.million else [])))
    base = Path(args.dir or tempfile.mkdtemp(prefix="vidfeat-catalog-"))
    results: dict[int, dict[str, dict[str, Any]]] = {}
    try:
        for n in sizes:
            print(f"building {n} videos …", flush=True)
            t = time.perf_counter()
            url, root = build(base / str(n), n, workers=max(1, (os.cpu_count() or 1)))
            print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
            npy = base / str(n) / "values.npy"
            results[n] = {}
            for op in OPS:
                results[n][op] = r = run_op(op, url, root, npy)
                print(f"  {op:8s} {r['wall']:7.3f} s  peak RSS {r['rss_mib']:7.0f} MiB", flush=True)
            shutil.rmtree(base / str(n) / "videos", ignore_errors=True)
        report(results)
        if args.s3:
            s3_requests(base)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


def report(results: dict[int, dict[str, dict[str, Any]]]) -> None:
    sizes = sorted(results)
    print("\nop        " + "".join(f"{n:>14,d}" for n in sizes) + "   growth")
    for op in OPS:
        walls = [results[n][op]["wall"] for n in sizes]
        growth = ""
        if len(sizes) > 1:
            growth = f"{math.log(walls[-1] / walls[0]) / math.log(sizes[-1] / sizes[0]):.2f}"
        print(f"{op:10s}" + "".join(f"{w:12.3f} s" for w in walls) + f"   {growth}")
    n = sizes[-1]
    r = results[n]
    per_video = r["done"]["catalog_bytes"] / (n + NEWER_PARTS * PER_PART)
    load_ratio = r["load"]["wall"] / r["np.load"]["wall"]
    targets = [
        ("ls", r["ls"]["wall"], 1.0),
        ("info", r["info"]["wall"], 1.0),
        ("cold read", r["read"]["wall"], 0.3),
        ("done()", r["done"]["wall"], 2.0),
        ("catalog bytes/video", per_video, 200.0),
        ("load / np.load", load_ratio, 1.5),
        ("rerun planning", r["plan"]["wall"], 15.0),
    ]
    print(f"\nat {n:,d} videos (targets are set for 1,000,000):")
    for name, value, target in targets:
        print(
            f"  {name:20s} {value:9.3f}  target <= {target:g}: "
            f"{verdict(value, target, higher_is_better=False)}"
        )


if __name__ == "__main__":
    main()
