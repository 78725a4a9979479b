"""Small builders shared by the store tests."""

from __future__ import annotations

import zlib

import numpy as np

from vidfeat.store import FeatureSet, FeatureSetSpec, Store, VideoRecord

DIM = 8


def make_spec(part_format: str = "zarr", dtype: str = "float16", **kw: object) -> FeatureSetSpec:
    fields: dict[str, object] = {
        "backbone": "tiny",
        "weights_id": "sha256:test",
        "feature_dim": DIM,
        "input_size": 32,
        "resize_size": 36,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "sampling": {"mode": "frames", "frames": 4, "max_frames": None},
        "dtype": dtype,
        "part_format": part_format,
    }
    fields.update(kw)
    return FeatureSetSpec(**fields)  # type: ignore[arg-type]


def video_values(video_id: str, n: int, dim: int = DIM) -> np.ndarray:
    """Deterministic rows for a video id, so any reader can check what it got back."""
    seed = zlib.crc32(video_id.encode())  # stable across processes, unlike hash()
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float16)


def write_part(
    fset: FeatureSet, part_id: str, videos: dict[str, int], mtime_ns: int = 1, label: str = "a"
) -> object:
    with fset.writer(part_id) as w:
        for vid, n in videos.items():
            rec = VideoRecord(
                vid, f"/videos/{vid}", size=100, mtime_ns=mtime_ns, n_rows=n, label=label
            )
            w.add_video(rec, video_values(vid, n), np.arange(n) / 25.0, np.arange(n))
        return w.commit()


def new_featureset(store: Store, name: str = "fs", part_format: str = "zarr") -> FeatureSet:
    return store.create_featureset(name, make_spec(part_format))
