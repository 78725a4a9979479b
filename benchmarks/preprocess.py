"""The resize path: fidelity to the weights' reference transform, and its cost per frame.

For camera-like footage at 240p, 720p and 1080p (vidfeat.synth.camera_like, H.264), each
decoded frame is made into the default backbone's input (shorter side 256, bicubic, centre
crop 224) two ways:
  one-step  swscale resizes during the YUV → RGB conversion (vidfeat before frame-exact decoding)
  two-step  RGB at full size, then swscale resizes the RGB image (vidfeat now:
            vidfeat.pipeline.decode.convert_frame)
and compared with timm's eval transform of the same decoded frame (PIL, antialiased bicubic).
Prints the mean absolute difference per pixel in /255 units (target <= 2) and milliseconds per
frame, with the decode of that frame as the bound the cost is compared against.
"""

from __future__ import annotations

import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from vidfeat.encode import encode_video
from vidfeat.pipeline.decode import Geometry, convert_frame
from vidfeat.pipeline.sampling import center_crop_box, resize_dims
from vidfeat.synth import camera_like

RESIZE, CROP = 256, 224
GEOMETRY = Geometry(RESIZE, CROP, "bicubic")
SIZES = ((240, 320), (720, 1280), (1080, 1920))


def crop(rgb: np.ndarray) -> np.ndarray:
    x0, y0 = center_crop_box(rgb.shape[1], rgb.shape[0], CROP)
    return rgb[y0 : y0 + CROP, x0 : x0 + CROP].astype(np.float64)


def timed(fn: object, frames: list[av.VideoFrame], rounds: int = 5) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    for _ in range(rounds):
        out = [fn(f) for f in frames]  # type: ignore[operator]
    return (time.perf_counter() - start) / (rounds * len(frames)) * 1e3, np.stack(out)


def main() -> None:
    ok = True
    with tempfile.TemporaryDirectory(prefix="vidfeat-bench-preprocess-") as tmp:
        for h, w in SIZES:
            path = Path(tmp) / f"camera_{h}p.mp4"
            encode_video(path, camera_like(h, w, 6, seed=h), 25, "libx264", "yuv420p")
            start = time.perf_counter()
            with av.open(str(path)) as c:
                frames = list(c.decode(video=0))
            decode_ms = (time.perf_counter() - start) / len(frames) * 1e3
            new_w, new_h = resize_dims(w, h, RESIZE)
            reference = np.stack(
                [
                    crop(
                        np.asarray(
                            Image.fromarray(f.to_ndarray(format="rgb24")).resize(
                                (new_w, new_h), Image.BICUBIC
                            )
                        )
                    )
                    for f in frames
                ]
            )

            def one_step(f: av.VideoFrame, new_w: int = new_w, new_h: int = new_h) -> np.ndarray:
                return crop(
                    f.to_ndarray(format="rgb24", width=new_w, height=new_h, interpolation="BICUBIC")
                )

            def two_step(f: av.VideoFrame) -> np.ndarray:  # the pipeline's own conversion
                return convert_frame(f, GEOMETRY, Fraction(1), 0).astype(np.float64)

            one_ms, one = timed(one_step, frames)
            two_ms, two = timed(two_step, frames)
            one_mad = float(np.abs(one - reference).mean())
            two_mad = float(np.abs(two - reference).mean())
            passed = two_mad <= 2.0
            ok &= passed
            print(
                f"{h}p → {new_w}x{new_h} crop {CROP}: decode {decode_ms:5.2f} ms/frame | "
                f"one-step {one_ms:5.2f} ms, {one_mad:4.2f}/255 | two-step {two_ms:5.2f} ms "
                f"= {two_ms / decode_ms:4.2f}x decode, {two_mad:4.2f}/255 "
                f"[<= 2/255: {'PASS' if passed else 'MISS'}]"
            )
    print("all targets met" if ok else "some targets missed")


if __name__ == "__main__":
    main()
