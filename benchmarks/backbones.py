"""Backbone throughput: images/s per backbone and batch size on the current device, plus peak
memory (CUDA: max allocated; CPU: peak RSS growth of this process).

    python benchmarks/backbones.py [--backbones efficientnet_lite0,resnet18] [--batches 1,8,32]
        [--device auto] [--precision auto|float32|bfloat16]
    python benchmarks/backbones.py --bf16 [--backbones ...]
    python benchmarks/backbones.py --engines [--rounds 3] [--seconds 3] [--compile]

--engines: for efficientnet_lite0, resnet50, convnext_tiny and timm's vit_small (random weights
but the first), images/s of eager torch and OpenVINO, each in float32 and bfloat16, at the CPU's
batch size, rounds interleaved, with the ratio to eager float32 and the cosine of each to it,
the share of values equal after the store's float16 rounding and the largest difference in
float16 steps at the features' scale (and the same for torch against itself at batch 1):
targets OpenVINO float32 >= 1.8x eager for efficientnet_lite0, >= 1.5x for resnet50.

--bf16: for each backbone, images/s in float32 and in bfloat16 autocast on this device at batch
16, the speed-up, and the cosine similarity of the bf16 features to the float32 ones on
camera-like frames (vidfeat.synth.camera_like): mean and worst over 64 frames. Whether the CPU
has bf16 matrix units (AMX, AVX512-BF16) is printed; without them bf16 is emulated.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import verdict

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


def compare_engines(
    names: list[str], seconds: float, rounds: int, compile_too: bool = False
) -> bool:
    """images/s and cosine to eager float32 of each engine x precision, at the CPU's auto
    batch size, rounds interleaved (medians), with the ratio to eager in the same run."""
    from vidfeat.models.batch_size import CPU_BATCH
    from vidfeat.synth import camera_like

    targets = {"efficientnet_lite0": 1.8, "resnet50": 1.5}
    frames = np.stack(list(camera_like(256, 320, 64, seed=1)))
    ok = True
    print(
        f"CPU bf16 units: {cpu_bf16_units()}; batch {CPU_BATCH}, {torch.get_num_threads()} threads"
    )
    for name in names:
        weights = "DEFAULT" if name in ("efficientnet_lite0", "tiny") else "none"
        made = {}
        for engine, precision in (
            ("torch", "float32"),
            ("torch", "bfloat16"),
            ("openvino", "float32"),
            ("openvino", "bfloat16"),
        ):
            start = time.perf_counter()
            made[engine, precision] = create_backbone(
                name, weights=weights, device="cpu", precision=precision, engine=engine
            )
            made[engine, precision].load_s = time.perf_counter() - start  # type: ignore[attr-defined]
        eager = made["torch", "float32"]
        s = eager.input_size
        y0, x0 = (256 - s) // 2, (320 - s) // 2
        x = np.ascontiguousarray(frames[:, y0 : y0 + s, x0 : x0 + s])
        ref = np.concatenate([eager(x[i : i + CPU_BATCH]) for i in range(0, 64, CPU_BATCH)])
        rates: dict[tuple[str, str], list[float]] = {k: [] for k in made}
        for _ in range(rounds):
            for key, b in made.items():
                rates[key].append(rate(b, x[:CPU_BATCH], seconds))
        base = statistics.median(rates["torch", "float32"])
        for key, b in made.items():
            got = np.concatenate([b(x[i : i + CPU_BATCH]) for i in range(0, 64, CPU_BATCH)])
            cos = torch.nn.functional.cosine_similarity(
                torch.from_numpy(got), torch.from_numpy(ref), dim=1
            )
            same16 = float((got.astype(np.float16) == ref.astype(np.float16)).mean())
            steps = _f16_steps(got, ref)
            r = statistics.median(rates[key])
            line = (
                f"{name:18s} {key[0]:8s} {key[1]:8s} {r:7.1f} img/s = {r / base:4.2f}x eager  "
                f"cosine min {cos.min():.6f}  float16-equal {same16:.4f} (max {steps:.2g} step)  "
                f"load {b.load_s:.1f} s ({b.engine_note or b.engine})"  # type: ignore[attr-defined]
            )
            if key == ("openvino", "float32") and name in targets:
                want = targets[name]
                line += f"  [>= {want}x: {verdict(r / base, want)}]"
                ok &= r / base >= want
            print(line)
        if compile_too:
            module = torch.compile(eager.module)
            compiled = create_backbone(name, weights=weights, device="cpu", engine="torch")
            compiled.module = module  # type: ignore[assignment]
            start = time.perf_counter()
            compiled(x[:CPU_BATCH])  # the compilation happens on the first call
            first = time.perf_counter() - start
            r = statistics.median(rate(compiled, x[:CPU_BATCH], seconds) for _ in range(rounds))
            print(
                f"{name:18s} torch.compile float32 {r:7.1f} img/s = {r / base:4.2f}x eager  "
                f"first call (compilation) {first:.1f} s"
            )
        # torch against itself (batch 1 vs batch 16): how far float32 rows move with no
        # engine change at all, the yardstick for "the same values at float16"
        one = np.concatenate([eager(x[i : i + 1]) for i in range(16)])
        print(
            f"{name:18s} torch    float32 batch 1 vs {CPU_BATCH}: float16-equal "
            f"{float((one.astype(np.float16) == ref[:16].astype(np.float16)).mean()):.4f} "
            f"(max {_f16_steps(one, ref[:16]):.2g} step)"
        )
    return ok


def _f16_steps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference between the two arrays as the store rounds them (float16), in float16
    steps at the scale of the features (the step at the largest value): 0 = the same stored
    values, 1 = a value at a rounding edge went the other way."""
    step = float(np.spacing(np.float16(np.abs(b).max())))
    diff = np.abs(a.astype(np.float16).astype(np.float32) - b.astype(np.float16))
    return float(diff.max()) / step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="efficientnet_lite0,resnet18,tiny")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 against float32")
    ap.add_argument("--engines", action="store_true", help="torch against OpenVINO, CPU")
    ap.add_argument("--rounds", type=int, default=3, help="with --engines: interleaved rounds")
    ap.add_argument("--compile", action="store_true", help="with --engines: torch.compile too")
    args = ap.parse_args()
    if args.engines:
        names = args.backbones.split(",")
        if args.backbones == ap.get_default("backbones"):
            names = [
                "efficientnet_lite0",
                "resnet50",
                "convnext_tiny",
                "timm:vit_small_patch16_224",
            ]
        ok = compare_engines(names, args.seconds, args.rounds, args.compile)
        print("all targets met" if ok else "some targets missed")
        return
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
