"""Synthetic labelled video datasets whose classes differ only in temporal order.

Every video shows one shape (circle or square) on a grey background. Each frame has a *level*
in [0, 1] that sets the shape's colour (red → blue) and size (small → large), so frozen
ImageNet features can see it. Within a video of T frames the levels are always exactly the
set {0, 1/(T-1), …, 1}: only their *order* differs between classes (rising, falling,
rise-then-fall, …). Every other attribute (background, position, shape, jitter) is drawn from
the same distribution in every class. A per-frame or mean-pooled classifier is therefore at
chance, while a temporal model can be near perfect.

Encoding goes through vidfeat.encode (PyAV); nothing here decodes (pipeline/decode.py does).
"""

from __future__ import annotations

import colorsys
import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidfeat.encode import encode_video
from vidfeat.errors import ConfigError

# Each pattern maps normalised time u in [0, 1] to a score; ranking the scores gives the
# order in which the (fixed) set of levels is shown.
PATTERNS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ramp_up": lambda u: u,
    "ramp_down": lambda u: 1.0 - u,
    "rise_fall": lambda u: 1.0 - np.abs(2.0 * u - 1.0),
    "fall_rise": lambda u: np.abs(2.0 * u - 1.0),
    "saw_up": lambda u: np.where(u < 0.5, 2.0 * u, 2.0 * u - 1.0 + 1e-9),
    "saw_down": lambda u: np.where(u < 0.5, 1.0 - 2.0 * u, 2.0 - 2.0 * u - 1e-9),
    "high_then_low": lambda u: np.where(u < 0.5, u + 0.5, u - 0.5),
    "zigzag": lambda u: np.abs(np.sin(3.0 * np.pi * u)),
}

CONTAINERS = {
    # codec name → (file extension, PyAV encoder, pixel format)
    "h264": ("mp4", "libx264", "yuv420p"),
    "mpeg4": ("avi", "mpeg4", "yuv420p"),
    "vp9": ("webm", "libvpx-vp9", "yuv420p"),
}


@dataclass(frozen=True, slots=True)
class SynthConfig:
    classes: int = 4
    videos_per_class: int = 25
    frames: int = 32
    size: int = 128
    fps: int = 25
    codec: str = "h264"
    seed: int = 0
    val_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= len(PATTERNS):
            raise ConfigError(
                f"Invalid --classes ({self.classes}): must be between 2 and {len(PATTERNS)}."
            )
        if self.codec not in CONTAINERS:
            raise ConfigError(
                f"Invalid --codec ({self.codec!r}). Supported: {', '.join(CONTAINERS)}."
            )
        if self.frames < 2:
            raise ConfigError(f"Invalid --frames ({self.frames}): need at least 2.")
        if self.size < 16 or self.size % 2:
            raise ConfigError(f"Invalid --size ({self.size}): must be even and at least 16.")
        if self.videos_per_class < 1 or self.fps < 1:
            raise ConfigError("--videos-per-class and --fps must be positive.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"Invalid --val-fraction ({self.val_fraction}).")


def level_order(pattern: str, n_frames: int) -> np.ndarray:
    """The level of each frame: a permutation of linspace(0, 1, n_frames)."""
    u = np.linspace(0.0, 1.0, n_frames)
    score = PATTERNS[pattern](u) + 1e-7 * u  # deterministic tie-break
    ranks = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    return ranks / (n_frames - 1)


@dataclass(frozen=True, slots=True)
class _Look:
    """Per-video attributes, drawn from the same distribution in every class."""

    background: float
    cx: float
    cy: float
    square: bool
    jitter: float


def _draw_look(rng: np.random.Generator) -> _Look:
    return _Look(
        background=float(rng.uniform(60, 140)),
        cx=float(rng.uniform(0.3, 0.7)),
        cy=float(rng.uniform(0.3, 0.7)),
        square=bool(rng.random() < 0.5),
        jitter=float(rng.uniform(0.0, 0.04)),
    )


def render_frame(level: float, look: _Look, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB uint8 frame for a level in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb(0.66 * level, 0.9, 0.95)
    radius = (0.10 + 0.25 * level) * size
    cx = (look.cx + rng.normal(0.0, look.jitter)) * size
    cy = (look.cy + rng.normal(0.0, look.jitter)) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if look.square:
        inside = (np.abs(xx - cx) <= radius) & (np.abs(yy - cy) <= radius)
    else:
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    frame = np.empty((size, size, 3), np.uint8)
    frame[...] = np.uint8(look.background)
    frame[inside] = (np.array([r, g, b]) * 255).astype(np.uint8)
    return frame


def _codec_options(codec: str) -> dict[str, object]:
    if codec == "h264":
        # Constant QP, no lookahead, one thread: under load, x264's lookahead and rate
        # control made output bytes differ between runs now and then.
        return {
            "qp": "20",
            "preset": "veryfast",
            "threads": "1",
            "x264-params": "rc-lookahead=0:mbtree=0:lookahead-threads=1:sliced-threads=0:"
            "sync-lookahead=0:scenecut=0",
        }
    if codec == "vp9":
        return {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    return {"qscale": "3"}


def iter_videos(cfg: SynthConfig) -> Iterator[tuple[str, str, int, bool]]:
    """(class name, video name, index in class, is validation) for every video."""
    names = list(PATTERNS)[: cfg.classes]
    n_val = round(cfg.videos_per_class * cfg.val_fraction)
    for cls in names:
        for i in range(cfg.videos_per_class):
            yield cls, f"{cls}_{i:04d}", i, i >= cfg.videos_per_class - n_val


def make_dataset(
    out: str | Path, cfg: SynthConfig, progress: Callable[[], None] | None = None
) -> Path:
    """Write ``out/<class>/<video>.<ext>`` and ``out/manifest.csv``; return the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ext, encoder, pix_fmt = CONTAINERS[cfg.codec]
    class_names = list(PATTERNS)[: cfg.classes]
    rows = []
    for cls, name, i, is_val in iter_videos(cfg):
        class_index = class_names.index(cls)
        # Video i of every class shares one look: classes then differ in frame order only.
        look = _draw_look(np.random.default_rng([cfg.seed, i]))
        rng = np.random.default_rng([cfg.seed, i, class_index])  # per-frame jitter
        levels = level_order(cls, cfg.frames)
        frames = (render_frame(float(lv), look, cfg.size, rng) for lv in levels)
        rel = f"{cls}/{name}.{ext}"
        encode_video(out / rel, frames, cfg.fps, encoder, pix_fmt, _codec_options(cfg.codec))
        rows.append(
            {"video_id": rel, "path": rel, "label": cls, "split": "val" if is_val else "train"}
        )
        if progress:
            progress()
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video_id", "path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def camera_like(h: int, w: int, n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """RGB frames with the statistics of camera footage rather than of synthetic test cards:
    a 1/f-spectrum texture (natural images' power law), hard-edged objects and sensor noise,
    panning, so a downscale meets detail at every frequency."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    planes = []
    for _ in range(3):
        spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
        plane = np.fft.irfft2(spectrum, s=(h, w))
        planes.append((plane - plane.mean()) / plane.std())
    base = np.stack(planes, -1) * 40 + 128
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        img = np.roll(base, (2 * i, 3 * i), (0, 1))
        for _ in range(12):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(h // 30, h // 6)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        yield np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
