"""Backbone throughput: images/s per backbone and batch size on the current device, plus peak
memory (CUDA: max allocated; CPU: peak RSS growth of this process).

    python benchmarks/backbones.py [--backbones efficientnet_lite0,resnet18] [--batches 1,8,32]
        [--device auto] [--precision auto|float32|bfloat16]
    python benchmarks/backbones.py --bf16 [--backbones ...]

--bf16: for each backbone, images/s in float32 and in bfloat16 autocast on this device at batch
16, the speed-up, and the cosine similarity of the bf16 features to the float32 ones on
camera-like frames (vidfeat.synth.camera_like): mean and worst over 64 frames. Whether the CPU
has bf16 matrix units (AMX, AVX512-BF16) is printed; without them bf16 is emulated.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from vidfeat.models.factory import create_backbone


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_bf16_units() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = text.split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return "unknown"
    found = [f for f in flags if f.startswith("amx") or f == "avx512_bf16"]
    return ", ".join(found) or "none"


def rate(b: object, x: np.ndarray, seconds: float) -> float:
    b(x)  # type: ignore[operator]  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        b(x)  # type: ignore[operator]
        n += len(x)
    return n / (time.perf_counter() - start)


def compare_bf16(names: list[str], device: str, seconds: float) -> None:
    from vidfeat.synth import camera_like

    print(f"CPU bf16 units: {cpu_bf16_units()}")
    frames = np.stack(list(camera_like(256, 320, 64, seed=1)))
    for name in names:
        weights = "DEFAULT" if name in ("efficientnet_lite0", "tiny") else "none"
        f32 = create_backbone(name, weights=weights, device=device, precision="float32")
        bf16 = create_backbone(name, weights=weights, device=device, precision="bfloat16")
        s = f32.input_size
        y0, x0 = (256 - s) // 2, (320 - s) // 2
        x = np.ascontiguousarray(frames[:, y0 : y0 + s, x0 : x0 + s])
        a = torch.from_numpy(np.concatenate([f32(x[i : i + 16]) for i in range(0, 64, 16)]))
        b = torch.from_numpy(np.concatenate([bf16(x[i : i + 16]) for i in range(0, 64, 16)]))
        cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
        r32, r16 = rate(f32, x[:16], seconds), rate(bf16, x[:16], seconds)
        print(
            f"{name:20s} {f32.device.type} float32 {r32:7.1f} img/s  bfloat16 {r16:7.1f} img/s "
            f"= {r16 / r32:4.2f}x  cosine to float32: mean {cos.mean():.5f} min {cos.min():.5f} "
            f"({weights} weights)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="efficientnet_lite0,resnet18,tiny")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 against float32")
    args = ap.parse_args()
    if args.bf16:
        device = "cpu" if args.device == "auto" else args.device
        compare_bf16(args.backbones.split(","), device, args.seconds)
        return
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
