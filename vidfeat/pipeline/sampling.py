"""Which frames become rows: pure arithmetic on the frame timestamps, no decoding.

Input: the presentation times (seconds, ascending) of every frame of a video, from the demux
pass, and the time the last frame stops being shown. Output: indices into that array.
Timestamp-based, so it is correct on variable-frame-rate video: a target time t selects the
frame on screen at t (the last frame with pts <= t).

A video with fewer distinct frames than asked gives what it has: duplicate picks are merged, so
``--frames 16`` on a 10-frame clip yields 10 rows, never repeated rows. Trainers pad and mask.
"""

from __future__ import annotations

import numpy as np

from vidfeat.config import SamplingConfig


def frames_at(times: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each time in ``times`` (first frame before it starts)."""
    # 1 µs of slack: a target that lands on a frame's start must pick that frame despite
    # floating-point rounding of either side.
    idx = np.searchsorted(pts, np.asarray(times) + 1e-6, side="right") - 1
    return np.clip(idx, 0, len(pts) - 1)


def select_frames(pts: np.ndarray, end: float, cfg: SamplingConfig) -> np.ndarray:
    """Sorted, unique frame indices to keep."""
    n = len(pts)
    if n == 0:
        return np.zeros(0, np.int64)
    start = float(pts[0])
    span = max(float(end) - start, 0.0)
    if cfg.mode == "all":
        chosen = np.arange(n)
    elif cfg.mode == "stride":
        chosen = np.arange(0, n, cfg.stride)
    elif cfg.mode == "frames":
        # Centres of N equal segments: symmetric, and never the very first/last instant.
        times = start + (np.arange(cfg.frames) + 0.5) * (span / cfg.frames)
        chosen = frames_at(times, pts)
    elif cfg.mode == "fps":
        count = max(1, int(np.ceil(span * cfg.fps - 1e-9)))  # every k/F before the end
        chosen = frames_at(start + np.arange(count) / cfg.fps, pts)
    else:  # guarded by SamplingConfig
        raise AssertionError(cfg.mode)
    chosen = np.unique(chosen.astype(np.int64))
    if cfg.max_frames is not None and len(chosen) > cfg.max_frames:
        keep = np.linspace(0, len(chosen) - 1, cfg.max_frames).round().astype(np.int64)
        chosen = chosen[np.unique(keep)]
    return chosen


def resize_dims(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(w, h) after resizing the shorter side to ``shorter``, keeping the aspect ratio. The
    longer side is truncated, as torchvision's Resize (and so timm's eval transform) does."""
    if width <= height:
        return shorter, max(shorter, int(shorter * height / width))
    return max(shorter, int(shorter * width / height)), shorter


def center_crop_box(width: int, height: int, crop: int) -> tuple[int, int]:
    """(x0, y0) of a centred crop×crop box, rounded as torchvision's CenterCrop rounds."""
    return round((width - crop) / 2.0), round((height - crop) / 2.0)
