"""Does a head trained on bfloat16 features (OpenVINO on the CPU) do as well as on float32 ones
of the same videos?

    python benchmarks/bf16_head.py [--classes 8] [--videos 12] [--seeds 3]

Makes synthetic videos (vidfeat.synth: classes that differ only in the order of their frames),
extracts them with the default backbone twice, float32 and bfloat16 (both through OpenVINO,
float32 stored), prints the cosine of the bf16 rows to the float32 rows of the same frames, then
trains the same heads with the same seeds on each and prints validation top-1 side by side.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

import vidfeat
from vidfeat.synth import SynthConfig, make_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--videos", type=int, default=12, help="videos per class")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vidfeat-bf16-"))
    try:
        make_dataset(
            work / "videos",
            SynthConfig(classes=args.classes, videos_per_class=args.videos, frames=32, size=128),
        )
        sets = {}
        for precision in ("float32", "bfloat16"):
            report = vidfeat.extract(
                inputs=[str(work / "videos" / "manifest.csv")],
                store=str(work / "store"),
                name=precision,
                backbone=args.backbone,
                precision=precision,
                engine="openvino",
                dtype="float32",
                frames=16,
                progress=False,
            )
            assert not report.failures, report.failures
            sets[precision] = report.featureset
            print(f"{precision}: {report.engine}")
        store = vidfeat.open_store(str(work / "store"))
        f32, bf16 = (store.get_featureset(sets[p]) for p in ("float32", "bfloat16"))
        pairs = [(f32.read(v)[0], bf16.read(v)[0]) for v in f32.video_ids()]
        a = np.concatenate([x for x, _ in pairs]).astype(np.float64)
        b = np.concatenate([y for _, y in pairs]).astype(np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        print(
            f"{args.backbone}: bf16 rows against float32 rows of the same {len(cos)} frames: "
            f"cosine mean {cos.mean():.5f}, min {cos.min():.5f}"
        )
        print(f"| head | float32 top-1 | bfloat16 top-1 | ({args.seeds} seeds, median) |")
        print("|---|---|---|---|")
        for head in ("lstm", "meanpool"):
            tops = {}
            for precision, name in sets.items():
                runs = [
                    vidfeat.train(
                        store=str(work / "store"),
                        featureset=name,
                        head=head,
                        epochs=15,
                        seed=seed,
                        runs_dir=str(work / "runs"),
                    ).metrics["top1"]
                    for seed in range(args.seeds)
                ]
                tops[precision] = statistics.median(runs)
            print(f"| {head} | {tops['float32']:.3f} | {tops['bfloat16']:.3f} | |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
