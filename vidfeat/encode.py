"""Writing videos with PyAV (synthetic datasets, test fixtures, benchmarks). With
pipeline/decode.py the only modules that import av (import-linter checks it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range RGB → planar YUV 4:2:0, as PyAV's (H*3/2, W) layout.

    Done in numpy rather than swscale because swscale's SIMD paths round differently with
    buffer alignment, which made "same seed, same bytes" fail now and then."""
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    h, w = y.shape

    def down(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y.reshape(-1), down(u).reshape(-1), down(v).reshape(-1)]
    flat = np.clip(np.rint(np.concatenate(planes)), 0, 255).astype(np.uint8)
    return flat.reshape(h * 3 // 2, w)


def encode_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, object] | None = None,
    gop: int | None = None,
) -> None:
    """Write RGB uint8 frames to ``path`` with PyAV, deterministically (one encoder thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.pix_fmt = pix_fmt
        stream.thread_count = 1
        if options:
            stream.options = options
        if gop is not None:
            stream.codec_context.gop_size = gop
        first = True
        for array in frames:
            if first:
                stream.height, stream.width = array.shape[:2]
                first = False
            if pix_fmt == "yuv420p" and array.shape[0] % 2 == 0 and array.shape[1] % 2 == 0:
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(array), format="yuv420p")
            else:
                frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
