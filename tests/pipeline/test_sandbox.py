"""Decoding in child processes: a decoder that crashes or hangs costs one video, not the
worker, and the slot keeps working afterwards."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MakeVideo, read_index
from vidfeat.config import SamplingConfig
from vidfeat.errors import VideoDecodeError
from vidfeat.pipeline.decode import Geometry
from vidfeat.pipeline.sandbox import CRASH_ENV, HANG_ENV, DecoderProcess

GEOMETRY = Geometry(64, 64)


def decode(decoder: DecoderProcess, path: Path, timeout_s: float = 60.0) -> list[int]:
    chunks: list = []
    index, sha, _ = decoder.decode(
        str(path), SamplingConfig(frames=4), GEOMETRY, timeout_s, chunks.append
    )
    assert len(sha) == 64 and len(index.pts) == 24
    return [read_index(f) for c in chunks for f in c.frames]


def test_child_decodes_and_reports_errors(make_video: MakeVideo, tmp_path: Path) -> None:
    decoder = DecoderProcess()
    try:
        path = make_video(n=24)
        assert decode(decoder, path) == [3, 9, 15, 21]  # centres of 4 segments of 6 frames
        (tmp_path / "bad.mp4").write_bytes(b"junk" * 100)
        with pytest.raises(VideoDecodeError) as err:
            decode(decoder, tmp_path / "bad.mp4")
        assert err.value.kind == "not_a_video"
        assert decode(decoder, path) == [3, 9, 15, 21]  # the same child goes on
    finally:
        decoder.close()


def test_crash_costs_one_video(make_video: MakeVideo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CRASH_ENV, "crashme")
    good, bad = make_video(n=24), make_video(n=24, name="crashme")
    decoder = DecoderProcess()
    try:
        with pytest.raises(VideoDecodeError) as err:
            decode(decoder, bad)
        assert err.value.kind == "crashed" and "signal 11" in err.value.message
        assert decode(decoder, good) == [3, 9, 15, 21]  # a fresh child took over
    finally:
        decoder.close()


def test_hung_decoder_is_killed_at_the_timeout(
    make_video: MakeVideo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(HANG_ENV, "hangme")
    monkeypatch.setattr("vidfeat.pipeline.sandbox._KILL_GRACE_S", 0.5)
    good, bad = make_video(n=24), make_video(n=24, name="hangme")
    decoder = DecoderProcess()
    try:
        start = time.monotonic()
        with pytest.raises(VideoDecodeError) as err:
            decode(decoder, bad, timeout_s=1.0)
        assert err.value.kind == "timeout"
        assert time.monotonic() - start < 10
        assert decode(decoder, good) == [3, 9, 15, 21]
    finally:
        decoder.close()


def test_frames_cross_the_process_boundary_intact(make_video: MakeVideo) -> None:
    path = make_video(n=40, h=48, w=80)
    decoder = DecoderProcess()
    try:
        chunks: list = []
        decoder.decode(str(path), SamplingConfig(mode="all"), GEOMETRY, 60.0, chunks.append)
        frames = np.concatenate([c.frames for c in chunks])
        assert frames.shape == (40, 64, 64, 3) and frames.dtype == np.uint8
        assert [read_index(f) for f in frames] == list(range(40))
        assert np.concatenate([c.frame_index for c in chunks]).tolist() == list(range(40))
    finally:
        decoder.close()


def test_slow_decoding_hits_the_budget_but_waiting_on_the_model_does_not(
    make_video: MakeVideo,
) -> None:
    path = make_video(n=64, h=48, w=80)
    decoder = DecoderProcess()
    try:
        with pytest.raises(VideoDecodeError, match="decoding took over") as err:
            decoder.decode(str(path), SamplingConfig(mode="all"), GEOMETRY, 1e-6, lambda c: None)
        assert err.value.kind == "timeout"
        # A consumer slower than the budget (a busy model) is not the decoder's fault.
        chunks: list = []

        def slow_consumer(chunk: object) -> None:
            time.sleep(0.4)
            chunks.append(chunk)

        decoder.decode(str(path), SamplingConfig(mode="all"), GEOMETRY, 0.3, slow_consumer)
        assert sum(len(c.frames) for c in chunks) == 64
    finally:
        decoder.close()


def test_the_child_imports_this_vidfeat_whatever_the_working_directory(
    make_video: MakeVideo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a folder that holds another vidfeat (an old checkout), the decoder children
    still run the parent's code, never the other one."""
    other = tmp_path / "elsewhere" / "vidfeat"
    (other / "pipeline").mkdir(parents=True)
    (other / "__init__.py").write_text("")
    (other / "pipeline" / "__init__.py").write_text("")
    (other / "pipeline" / "sandbox.py").write_text("raise SystemExit(3)")
    video = make_video(n=8)
    monkeypatch.chdir(other.parent)
    chunks: list[object] = []
    decoder = DecoderProcess()
    try:
        decoder.decode(str(video), SamplingConfig(frames=2), GEOMETRY, 30.0, chunks.append)
    finally:
        decoder.close()
    assert len(chunks) == 1
