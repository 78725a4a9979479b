"""A faithful stand-in for the popular extractor (v-iashin/video_features), run as its own
process by benchmarks/extract.py: the baseline vidfeat's speed is judged against.

    python benchmarks/peer.py (--frames N | --fps F | --all) [--backbone NAME] VIDEO...

What it reproduces of video_features' frame-wise extractors (ResNet and friends):
- ``--fps F`` (``extraction_fps``) and ``--frames N`` (``extraction_total``, as a rate of
  N / duration): the video is first re-encoded with the ffmpeg CLI at that rate
  (``ffmpeg -y -i IN -filter:v fps=F OUT.mp4``, its default libx264 settings) into a temp dir;
  ``--all`` reads the original;
- every frame of that file is read sequentially at full size (OpenCV's ``VideoCapture.read``
  way: each frame decoded and converted to a full-size RGB array; PyAV stands in for OpenCV,
  which is not installed here), turned into a PIL image, resized (shorter side 256, PIL's
  antialiased filter of the weights' recipe), centre-cropped to 224, normalised;
- the model runs at batch size 1 in float32 under ``torch.no_grad()``, with torch's default
  threads, in a process that imports torch and builds the model like any script.
The ffmpeg binary is the one the imageio-ffmpeg wheel ships. The same module and weights as
vidfeat's backbone (vidfeat.models.factory.build_module), so only the pipeline differs.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path


def reencode(path: Path, fps: float, out_dir: Path) -> Path:
    import imageio_ffmpeg

    out = out_dir / f"{path.stem}_new_fps.mp4"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "panic", "-y"]
    command += ["-i", str(path), "-filter:v", f"fps={fps}", str(out)]
    subprocess.run(command, check=True)
    return out


def duration_s(path: Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        return float(container.duration or 0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--frames", type=int)
    mode.add_argument("--fps", type=float)
    mode.add_argument("--all", action="store_true")
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("videos", nargs="+", type=Path)
    args = ap.parse_args()
    start = time.perf_counter()

    import av
    import torch
    from PIL import Image
    from torchvision import transforms

    from vidfeat.models.factory import build_module

    built = build_module(args.backbone)
    model = built.module.eval()
    p = built.preprocess
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[p.interpolation]
    transform = transforms.Compose(
        [
            transforms.Resize(p.resize_size, interpolation=resample),
            transforms.CenterCrop(p.input_size),
            transforms.ToTensor(),
            transforms.Normalize(p.mean, p.std),
        ]
    )
    frames = 0
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        for video in args.videos:
            source = video
            if args.fps or args.frames:
                fps = args.fps or args.frames / max(duration_s(video), 1e-6)
                source = reencode(video, fps, Path(tmp))
            features = []
            with av.open(str(source)) as container:
                for frame in container.decode(video=0):
                    rgb = frame.to_ndarray(format="rgb24")  # VideoCapture.read + BGR→RGB
                    x = transform(Image.fromarray(rgb)).unsqueeze(0)
                    with torch.no_grad():
                        features.append(model(x).numpy())
                    frames += 1
            if source != video:
                source.unlink()
    print(f"{frames} frames in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
