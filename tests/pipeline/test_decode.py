from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import MakeVideo, index_frame, read_index, rotate_mp4
from vidfeat.config import SamplingConfig
from vidfeat.errors import VideoDecodeError
from vidfeat.pipeline.decode import Geometry, decode_selected, probe
from vidfeat.pipeline.sampling import select_frames


def decode_all(
    path: Path, cfg: SamplingConfig, geometry: Geometry
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    index = probe(str(path))
    selected = select_frames(index.seconds, index.end_s, cfg)
    chunks = list(decode_selected(str(path), index, selected, geometry, chunk=5))
    frames = np.concatenate([c.frames for c in chunks])
    return (
        [read_index(f) for f in frames],
        np.concatenate([c.frame_index for c in chunks]),
        np.concatenate([c.pts_s for c in chunks]),
        selected,
    )


@pytest.mark.parametrize("codec", ["h264", "mpeg4", "vp9", "h264_10bit", "ffv1"])
@pytest.mark.parametrize(
    "cfg",
    [
        SamplingConfig(frames=6),
        SamplingConfig(mode="fps", fps=5),
        SamplingConfig(mode="stride", stride=4),
    ],
    ids=["frames", "fps", "stride"],
)
def test_exact_frames_and_pts_per_mode_and_codec(
    make_video: MakeVideo, codec: str, cfg: SamplingConfig
) -> None:
    path = make_video(n=40, h=64, w=96, fps=20, codec=codec, gop=8)
    content, frame_index, pts, selected = decode_all(path, cfg, Geometry(64, 64))
    assert content == selected.tolist(), "each row must be the frame it claims to be"
    assert frame_index.tolist() == selected.tolist()
    np.testing.assert_allclose(pts, selected / 20.0, atol=1e-6)


def test_sparse_keyframes_seek_gives_same_frames_as_decoding_through(make_video: MakeVideo) -> None:
    dense = make_video(n=120, codec="h264", gop=10)
    rare = make_video(n=120, codec="h264", gop=250)
    cfg = SamplingConfig(frames=5)
    assert decode_all(dense, cfg, Geometry(64, 64))[0] == decode_all(rare, cfg, Geometry(64, 64))[0]


def test_odd_sizes_resize_and_crop(make_video: MakeVideo) -> None:
    path = make_video(n=10, h=63, w=97, codec="ffv1")
    # crop == shorter side keeps every band of the index pattern
    content, *_ = decode_all(path, SamplingConfig(mode="all"), Geometry(63, 63, "bicubic"))
    assert content == list(range(10))
    index = probe(str(path))
    chunk = next(decode_selected(str(path), index, np.arange(3), Geometry(36, 32, "bicubic")))
    assert chunk.frames.shape == (3, 32, 32, 3) and chunk.frames.dtype == np.uint8


def test_variable_frame_rate(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mkv"
    times_ms = [0, 40, 80, 120, 1000, 2000, 2040, 3000]
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv444p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 64, 96), format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    content, _, pts, _ = decode_all(path, SamplingConfig(mode="fps", fps=1), Geometry(64, 64))
    assert content == [0, 4, 5, 7]  # the frame on screen at t = 0, 1, 2, 3 s
    np.testing.assert_allclose(pts, [0.0, 1.0, 2.0, 3.0])


def test_broken_files_raise_with_the_right_kind(broken_files: dict[str, tuple[Path, str]]) -> None:
    def decode(path: Path) -> None:
        index = probe(str(path))
        selected = select_frames(index.seconds, index.end_s, SamplingConfig())
        list(decode_selected(str(path), index, selected, Geometry(64, 64)))

    for name, (path, kind) in broken_files.items():
        with pytest.raises(VideoDecodeError) as err:
            decode(path)
        assert err.value.kind == kind, f"{name}: {err.value}"
        assert str(path) in err.value.message


def test_timeout_is_reported(make_video: MakeVideo) -> None:
    path = make_video(n=30)
    index = probe(str(path))
    with pytest.raises(VideoDecodeError, match="timeout"):
        list(decode_selected(str(path), index, np.arange(30), Geometry(64, 64), deadline=0.0))


def test_rotation_metadata_is_honoured(make_video: MakeVideo, tmp_path: Path) -> None:
    rotated = tmp_path / "portrait.mp4"
    rotate_mp4(make_video(n=12, h=64, w=96), rotated)
    index = probe(str(rotated))
    chunk = next(decode_selected(str(rotated), index, np.arange(12), Geometry(64, 64)))
    # Displayed 90° clockwise: the index bands (horizontal in the file) stand vertical, and
    # turning each frame back counter-clockwise reads the right index.
    assert [read_index(np.rot90(f, k=1)) for f in chunk.frames] == list(range(12))
    assert [read_index(f) for f in chunk.frames] != list(range(12))


def test_unknown_interpolation_is_refused_before_any_video() -> None:
    from vidfeat.errors import ConfigError
    from vidfeat.models.backbone import Preprocess

    with pytest.raises(ConfigError, match=r"Invalid interpolation \('lanczos'\).*bicubic"):
        Preprocess(224, 256, "lanczos", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ConfigError, match="Invalid interpolation"):
        Geometry(64, 64, "hamming")
