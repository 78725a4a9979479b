"""Backbone throughput: images/s per backbone and batch size on the current device, plus peak
memory (CUDA: max allocated; CPU: peak RSS growth of this process).

    python benchmarks/backbones.py [--backbones efficientnet_lite0,resnet18] [--batches 1,8,32]
        [--device auto] [--precision auto|float32|bfloat16]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from vidfeat.models.factory import create_backbone


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="efficientnet_lite0,resnet18,tiny")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in args.backbones.split(","):
        weights = "DEFAULT" if name in ("efficientnet_lite0", "tiny") else "none"
        b = create_backbone(name, weights=weights, device=args.device, precision=args.precision)
        size = b.input_size
        for bs in (int(x) for x in args.batches.split(",")):
            x = np.random.default_rng(0).integers(0, 256, (bs, size, size, 3), dtype=np.uint8)
            if b.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rss0 = peak_rss_mib()
            b(x)  # warm-up
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                b(x)
                n += bs
            if b.device.type == "cuda":
                torch.cuda.synchronize()
            rate = n / (time.perf_counter() - start)
            if b.device.type == "cuda":
                mem = f"peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            else:
                mem = f"peak RSS {peak_rss_mib():.0f} MiB (+{peak_rss_mib() - rss0:.0f})"
            print(
                f"{name:20s} {b.device.type:4s} {b.precision:8s} batch {bs:3d}: "
                f"{rate:8.1f} images/s  {mem}"
            )


if __name__ == "__main__":
    main()
