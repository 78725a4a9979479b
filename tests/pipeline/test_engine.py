"""The worker's part task, with decoding and the model replaced: what it writes and records."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from tests.store.helpers import DIM, make_spec
from vidfeat.config import BackboneConfig, SamplingConfig
from vidfeat.errors import WorkerRefused
from vidfeat.pipeline import engine
from vidfeat.pipeline.decode import VideoIndex
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.pipeline.tasks import PartTarget
from vidfeat.store import open_store, verify_store


def test_nan_features_fail_one_video_and_the_part_still_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "store")
    fset = store.create_featureset("fs", make_spec())
    index = VideoIndex(
        pts=np.arange(4),
        seek_pts=np.arange(4),
        seek_dts=np.arange(4),
        time_base=Fraction(1, 25),
        end_s=0.16,
        width=64,
        height=64,
        codec="h264",
        fps=25.0,
        rotation=0,
    )

    def fake_run_videos(videos: tuple[VideoInput, ...], *args: Any) -> tuple[list[Any], Any]:
        results = []
        for v in videos:
            feats = np.full((4, DIM), 0.5, np.float32)
            if v.video_id == "nan.mp4":
                feats[1, 2] = np.nan
            if v.video_id == "huge.mp4":
                feats[3, 0] = 1e9  # beyond float16
            frames = [np.arange(4)]
            results.append(
                engine.VideoResult(v, index, [[feats]], frames, [np.arange(4) / 25], "", None, True)
            )
        return results, engine.RunStats(
            frames=12, targets=12, frames_by_backbone=[12], model_s_by_backbone=[0.0]
        )

    monkeypatch.setattr(engine, "run_videos", fake_run_videos)
    described = {"backbone": "tiny", "weights_id": "sha256:test", "feature_dim": DIM}
    backbone = SimpleNamespace(
        device=torch.device("cpu"), describe=lambda: described, engine="torch"
    )
    monkeypatch.setattr(engine, "get_backbone", lambda cfg: backbone)
    videos = tuple(
        VideoInput(name, f"/videos/{name}", size=1, mtime_ns=1)
        for name in ("ok.mp4", "nan.mp4", "huge.mp4")
    )
    ids = tuple(v.video_id for v in videos)
    task = engine.PartTask(
        str(tmp_path / "store"),
        "p0",
        videos,
        (PartTarget("fs", "p0", BackboneConfig("tiny"), ids),),
        SamplingConfig(frames=4),
    )
    (summary,) = engine.run_part(task)

    assert summary.won and summary.videos == 1
    kinds = {f.video_id: f.kind for f in summary.failures}
    assert kinds == {"nan.mp4": "invalid_features", "huge.mp4": "invalid_features"}
    catalog = fset.catalog(refresh=True)
    assert catalog.video_ids() == ["ok.mp4"]
    huge = catalog.failure("huge.mp4")
    assert huge is not None and huge.kind == "invalid_features"
    assert "--dtype float32" in huge.message
    np.testing.assert_array_equal(fset.read("ok.mp4")[0], np.full((4, DIM), 0.5, np.float16))
    assert verify_store(store) == []


def test_a_backbone_other_than_the_specs_refuses_the_part_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose backbone is not the one the feature set's spec describes (another file
    under the same weights name) raises before decoding, naming the differing fields, and
    leaves no part, attempt or commit behind (docs/cluster.md, identity on a cluster)."""
    cfg = BackboneConfig("tiny")
    described = engine.get_backbone(cfg).describe()
    other = described | {"weights_id": "sha256:" + "0" * 64, "mean": (0.4, 0.5, 0.5)}
    sampling = SamplingConfig(frames=4)
    store = open_store(tmp_path / "store")
    spec = make_spec(**other, sampling=sampling.identity())
    fset = store.create_featureset("fs", spec)

    def no_decoding(*args: Any) -> None:
        raise AssertionError("a refused part must not decode")

    monkeypatch.setattr(engine, "run_videos", no_decoding)
    video = VideoInput("a.mp4", "/videos/a.mp4", size=1, mtime_ns=1)
    target = PartTarget("fs", "p0", cfg, ("a.mp4",))
    task = engine.PartTask(str(tmp_path / "store"), "p0", (video,), (target,), sampling)
    with pytest.raises(WorkerRefused, match=r"weights_id: spec 'sha256:0+', this worker") as e:
        engine.run_part(task)
    assert "mean: spec" in str(e.value) and "'fs'" in str(e.value)
    assert "std" not in str(e.value)  # only what differs
    assert fset.commits() == []
    assert not list((tmp_path / "store").rglob("parts/*"))


def test_a_long_sparse_video_shared_by_two_decoders_gives_the_rows_of_one(
    make_video: Any,
) -> None:
    """A part with one long video and two decoders splits it at a keyframe
    (vidfeat/pipeline/segments.py): the same frames, pts, features and sha256 as one decoder
    decoding it through, in frame order."""
    from vidfeat.models.factory import create_backbone
    from vidfeat.pipeline.sampling import select_frames

    path = make_video(n=1000, gop=100)  # 40 s at 25 fps, a keyframe every 4 s
    video = VideoInput("long.mp4", str(path), size=path.stat().st_size, mtime_ns=1)
    backbone = create_backbone("tiny", device="cpu")
    fps1 = SamplingConfig(mode="fps", fps=1.0)
    split, split_stats = engine.run_videos([video], backbone, fps1, 16, decode_threads=2)
    alone, alone_stats = engine.run_videos([video], backbone, fps1, 16, decode_threads=1)

    assert (split_stats.segments, alone_stats.segments) == (2, 1)
    assert split[0].error is None and split[0].done and split[0].index is not None
    _, pts, frame_index = split[0].rows()
    expected = select_frames(split[0].index.seconds, split[0].index.end_s, fps1)
    np.testing.assert_array_equal(frame_index, expected)
    for got, want in zip(split[0].rows(), alone[0].rows(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert split[0].sha256 == alone[0].sha256 != ""
    assert np.all(np.diff(pts) > 0)
