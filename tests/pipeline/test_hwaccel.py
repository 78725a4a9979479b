"""``--hwaccel cuda``: the GPU's video engines decode when they can; otherwise each video is
decoded in software and says why. Either way the rows are the software decoder's rows."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.config import SamplingConfig
from vidfeat.encode import encode_video
from vidfeat.models.factory import create_backbone
from vidfeat.pipeline import decode
from vidfeat.pipeline.decode import DecodeReport, Geometry, decode_selected, probe
from vidfeat.pipeline.discovery import discover
from vidfeat.pipeline.engine import run_videos
from vidfeat.pipeline.sampling import select_frames
from vidfeat.store import open_store
from vidfeat.synth import camera_like

GEOMETRY = Geometry(64, 64, "bilinear")
FILES = ("h264_bframes.mp4", "hevc_bframes.ts", "h264_cut.mp4", "vp9_long_gop.webm")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: no fallback")


def decoded(path: Path, hwaccel: str | None) -> tuple[np.ndarray, np.ndarray, DecodeReport]:
    index = probe(str(path))
    rows = select_frames(index.seconds, index.end_s, SamplingConfig(frames=9))
    report = DecodeReport()
    chunks = list(decode_selected(str(path), index, rows, GEOMETRY, report=report, hwaccel=hwaccel))
    frames = np.concatenate([c.frames for c in chunks])
    return frames, np.concatenate([c.frame_index for c in chunks]), report


@no_cuda
@pytest.mark.parametrize("name", FILES)
def test_without_a_device_each_video_is_decoded_in_software_and_says_why(
    files: dict[str, Path], name: str
) -> None:
    soft, soft_rows, soft_report = decoded(files[name], None)
    frames, rows, report = decoded(files[name], "cuda")
    assert np.array_equal(rows, soft_rows) and np.array_equal(frames, soft)
    assert (soft_report.decoder, soft_report.fallback) == ("software", "")
    assert report.decoder == "software"
    assert report.fallback.startswith("cuda fallback: cuda device unavailable: ")
    assert report.describe_decoder() == f"software ({report.fallback})"


def _pretend_hardware(monkeypatch: pytest.MonkeyPatch, fail_after: int | None) -> None:
    """The 'hardware' container is a software one; with ``fail_after``, decoding fails after
    that many frames the way a hardware decoder that gives up does (an FFmpeg error)."""

    def open_hardware(self: Any) -> Any:
        container = decode._open(self.path)
        self.stream = decode._video_stream(container, self.path)
        self.report.decoder = self.hwaccel
        return container

    real_next = decode._ExactDecoder._next

    def next_frame(self: Any) -> Any:
        if self.hwaccel and fail_after is not None and self.report.decoded >= fail_after:
            raise av.error.FFmpegError(errno.EIO, "hardware decoder gave up")
        return real_next(self)

    monkeypatch.setattr(decode._ExactDecoder, "_open_hardware", open_hardware)
    monkeypatch.setattr(decode._ExactDecoder, "_next", next_frame)


def test_a_hardware_decoder_used_to_the_end_is_reported(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    soft, soft_rows, _ = decoded(files["h264_bframes.mp4"], None)
    _pretend_hardware(monkeypatch, fail_after=None)
    frames, rows, report = decoded(files["h264_bframes.mp4"], "cuda")
    assert np.array_equal(rows, soft_rows) and np.array_equal(frames, soft)
    assert report.describe_decoder() == "cuda"


@pytest.mark.parametrize("name", ["h264_bframes.mp4", "hevc_bframes.ts", "h264_cut.mp4"])
def test_a_hardware_decoder_failing_mid_video_hands_over_to_software(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    soft, soft_rows, _ = decoded(files[name], None)
    _pretend_hardware(monkeypatch, fail_after=20)
    frames, rows, report = decoded(files[name], "cuda")
    assert np.array_equal(rows, soft_rows) and np.array_equal(frames, soft)
    assert report.decoder == "software"
    assert "the hardware decoder failed before frame" in report.fallback
    assert "hardware decoder gave up" in report.fallback


def test_broken_files_fail_with_the_same_kind_and_message_with_hwaccel(
    broken_files: dict[str, tuple[Path, str]],
) -> None:
    videos = discover([str(p) for p, _ in broken_files.values() if p.exists()], "none")
    backbone = create_backbone("tiny", device="cpu")
    sampling = SamplingConfig(frames=4)
    soft, _ = run_videos(videos, backbone, sampling, 16)
    hw, _ = run_videos(videos, backbone, sampling, 16, hwaccel="cuda")
    for s_result, h_result in zip(soft, hw, strict=True):
        assert s_result.error is not None and h_result.error is not None
        assert (h_result.error.kind, h_result.error.message) == (
            s_result.error.kind,
            s_result.error.message,
        )


def commit_decoders(store: Path) -> dict[str, str]:
    out = {}
    for commit in store.glob("featuresets/*/commits/*.json"):
        for v in json.loads(commit.read_text())["videos"]:
            out[v["video_id"]] = v["decoder"]
    return out


@no_cuda
def test_extract_with_hwaccel_stores_the_software_rows_and_records_each_fallback(
    files: dict[str, Path], tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in FILES:
        shutil.copy(files[name], videos / name)
    common = ["--backbone", "tiny", "--weights", "none", "--frames", "6", "-q", "--name", "f"]
    runner = CliRunner()
    soft = runner.invoke(app, ["extract", str(videos), "-s", str(tmp_path / "a"), *common])
    assert soft.exit_code == 0, soft.output
    report = tmp_path / "report.json"
    hw_flags = ["--hwaccel", "cuda", "--report", str(report)]
    hw = runner.invoke(app, ["extract", str(videos), "-s", str(tmp_path / "b"), *common, *hw_flags])
    assert hw.exit_code == 0, hw.output
    assert "decoded on cuda: 0 of 4 videos" in hw.stdout
    assert "4 in software (cuda fallback: cuda device unavailable" in hw.stderr
    a = open_store(str(tmp_path / "a")).get_featureset("f").load()
    b = open_store(str(tmp_path / "b")).get_featureset("f").load()
    assert a.video_ids == b.video_ids and sorted(a.video_ids) == sorted(FILES)
    assert np.array_equal(a.offsets, b.offsets) and np.array_equal(a.values, b.values)
    assert set(commit_decoders(tmp_path / "a").values()) == {"software"}
    recorded = commit_decoders(tmp_path / "b")
    assert all(
        d.startswith("software (cuda fallback: cuda device unavailable") for d in recorded.values()
    )
    fallbacks = json.loads(report.read_text())["decode_fallbacks"]
    assert sorted(line.split(": ", 1)[0] for line in fallbacks) == sorted(FILES)


@pytest.fixture(scope="module")
def camera_360p(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """360p camera-like H.264 and HEVC with B-frames (the real-world set is 96x64, under
    NVDEC's 144x144 minimum for HEVC)."""
    folder = tmp_path_factory.mktemp("camera")
    out = {}
    for name, codec in (("h264_360p.mp4", "libx264"), ("hevc_360p.mp4", "libx265")):
        out[name] = folder / name
        options = {"crf": "20", "preset": "veryfast" if codec == "libx264" else "ultrafast"}
        if codec == "libx265":
            options["x265-params"] = "log-level=none"
        encode_video(
            out[name], camera_like(360, 640, 40, seed=3), 25, codec, "yuv420p", options, 12
        )
    return out


@pytest.mark.needs_cuda
@pytest.mark.parametrize("name", ["h264_bframes.mp4", "h264_bframes.ts", "h264_cut.mp4"])
def test_cuda_decoding_gives_the_software_rows(files: dict[str, Path], name: str) -> None:
    assert_cuda_rows(files[name], expect_cuda=True)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("name", ["h264_360p.mp4", "hevc_360p.mp4"])
def test_cuda_decoding_of_camera_footage_gives_the_software_rows(
    camera_360p: dict[str, Path], name: str
) -> None:
    assert_cuda_rows(camera_360p[name], expect_cuda=True)


@pytest.mark.needs_cuda
def test_what_nvdec_cannot_decode_falls_back_with_its_reason(files: dict[str, Path]) -> None:
    # 96x64 HEVC is under NVDEC's minimum size: software, with the reason; the same rows.
    report = assert_cuda_rows(files["hevc_bframes.ts"], expect_cuda=False)
    assert report.decoder == "cuda" or report.fallback.startswith("cuda fallback: ")


def assert_cuda_rows(path: Path, expect_cuda: bool) -> DecodeReport:
    soft, soft_rows, _ = decoded(path, None)
    frames, rows, report = decoded(path, "cuda")
    print(f"{path.name}: {report.describe_decoder()}")
    if expect_cuda:
        assert report.describe_decoder() == "cuda"
    assert np.array_equal(rows, soft_rows)
    diff = np.abs(frames.astype(np.int16) - soft.astype(np.int16))
    print(f"{path.name}: mean |hw - sw| {diff.mean():.3f}/255, max {diff.max()}")
    assert diff.mean() <= 1.0
    return report
