"""Frame exactness on files made the way real videos are (tests/pipeline/real_world.py): every
stored row is the frame a plain sequential decode presents at that index, with its pts."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipeline import real_world
from tests.pipeline.real_world import N_FRAMES, H, W, frame_numbers, packets, sequential
from vidfeat.config import SamplingConfig
from vidfeat.pipeline.decode import (
    DecodeReport,
    Geometry,
    VideoIndex,
    _frame_rotation,
    convert_frame,
    decode_selected,
    probe,
)
from vidfeat.pipeline.discovery import VIDEO_EXTENSIONS
from vidfeat.pipeline.sampling import select_frames

GEOMETRY = Geometry(64, 64, "bilinear")
MODES = {
    "frames": SamplingConfig(frames=7),
    "fps": SamplingConfig(mode="fps", fps=3.0),
    "stride": SamplingConfig(mode="stride", stride=4),
    "all": SamplingConfig(mode="all"),
}


def reference(path: Path, index: VideoIndex) -> list[tuple[float | None, np.ndarray]]:
    """The sequential decode, converted exactly as the pipeline converts a frame."""
    return [
        (pts, convert_frame(f, GEOMETRY, index.sar, _frame_rotation(f, index)))
        for pts, f in sequential(path)
    ]


def decode_rows(path: Path, index: VideoIndex, rows: np.ndarray, report: DecodeReport) -> tuple:
    chunks = list(decode_selected(str(path), index, rows, GEOMETRY, chunk=5, report=report))
    return (
        np.concatenate([c.frames for c in chunks]),
        np.concatenate([c.frame_index for c in chunks]),
        np.concatenate([c.pts_s for c in chunks]),
    )


def assert_rows_match(
    path: Path, index: VideoIndex, rows: np.ndarray, ref: list[tuple[float | None, np.ndarray]]
) -> DecodeReport:
    report = DecodeReport()
    frames, frame_index, pts = decode_rows(path, index, rows, report)
    assert frame_index.tolist() == rows.tolist()
    for frame, row, t in zip(frames, frame_index, pts, strict=True):
        want_pts, want = ref[row]
        assert np.array_equal(frame, want), f"{path.name}: row for frame {row} is another image"
        if want_pts is not None and not index.ordinal:
            assert t == pytest.approx(want_pts, abs=1e-9), f"{path.name}: pts of frame {row}"
    return report


def test_fixtures_are_what_they_claim(files: dict[str, Path]) -> None:
    """The recipes really produce the hard cases (so the tests below test them)."""
    cut = list(packets(files["h264_cut.mp4"]))
    assert sum(p.is_discard for p in cut) > 0, "an -ss … -c copy cut has discarded pre-roll"
    for name in ("h264_bframes.ts", "hevc_bframes.ts", "h264_bframes.mp4"):
        assert any(p.pts != p.dts for p in packets(files[name])), f"{name} has B-frames"
    assert all(p.pts is None for p in packets(files["h264_raw.h264"])), "raw: no timestamps"
    assert all(p.pts is None for p in packets(files["hevc_raw.hevc"]))
    ts_start = sequential(files["h264_bframes.ts"])[0][0]
    assert ts_start is not None and ts_start > 1.0, "MPEG-TS starts at a non-zero time"
    assert sum(p.is_keyframe for p in packets(files["h264_long_gop.mp4"])) == 1


def test_new_shapes_are_what_they_claim(files: dict[str, Path]) -> None:
    """The shapes where the first stream or the packet list misleads, checked with PyAV."""
    with av.open(str(files["cover_first.mkv"])) as c:
        cover, main = c.streams.video
        assert (cover.codec_context.name, main.codec_context.name) == ("mjpeg", "h264")
        assert cover.width * cover.height > main.width * main.height, "the cover is larger"
    assert len(sequential(files["cover_first.mkv"], stream=0)) == 1, "a one-frame track"
    with av.open(str(files["preview_first.mkv"])) as c:
        preview, main = c.streams.video
        assert not preview.disposition & av.stream.Disposition.default
        assert main.disposition & av.stream.Disposition.default
        assert preview.width < main.width
    # MPEG-PS: after a seek the decoder labels its first frames with times the container
    # does not list for them (the I-frame gets another frame's pts).
    for name in ("mpeg2_bframes.mpg", "mpeg2_bframes.vob"):
        keys = [p.pts for p in packets(files[name]) if p.is_keyframe]
        listed = [t for t, _ in sequential(files[name])]
        with av.open(str(files[name])) as c:
            c.seek(keys[1], stream=c.streams.video[0], backward=True, any_frame=False)
            first = next(iter(c.decode(video=0)))
            tb = Fraction(c.streams.video[0].time_base)
        assert first.pts != keys[1] and float(first.pts * tb) != listed[12], name
    # A capture or a copy cut that starts mid-GOP: packets no decoder presents come first.
    for name in ("h264_capture.ts", "h264_cut.ts"):
        cut = list(packets(files[name]))
        assert not cut[0].is_keyframe, name
        assert len(sequential(files[name])) < len(cut), name
    cut = list(packets(files["h264_capture_open_gop.ts"]))
    assert cut[0].is_keyframe and any(p.pts < cut[0].pts for p in cut[1:4]), "leading B-frames"
    assert len(sequential(files["h264_capture_open_gop.ts"])) < len(cut)
    # The decoder refuses a long-GOP cut's leading packets with errors, as the ffmpeg CLI
    # reports (and passes over) them.
    refused = 0
    with av.open(str(files["h264_capture_long_gop.ts"])) as c:
        for p in c.demux(video=0):
            try:
                p.decode()
            except av.error.InvalidDataError:
                refused += 1
    assert refused > 100 and len(sequential(files["h264_capture_long_gop.ts"])) > 40
    # VP8 alt-ref: hidden packets (show_frame bit clear) with the next frame's timestamp.
    vp8 = list(packets(files["vp8_altref.webm"]))
    hidden = [i for i, p in enumerate(vp8) if not bytes(p)[0] & 0x10]
    assert hidden and all(vp8[i].pts == vp8[i + 1].pts for i in hidden)
    assert len(sequential(files["vp8_altref.webm"])) == len(vp8) - len(hidden)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", real_world.ALL)
def test_every_row_is_the_sequentially_decoded_frame(
    files: dict[str, Path], name: str, mode: str
) -> None:
    path = files[name]
    index = probe(str(path))
    ref = reference(path, index)
    assert len(index.pts) == len(ref), f"{name}: the index lists exactly the presented frames"
    rows = select_frames(index.seconds, index.end_s, MODES[mode])
    report = assert_rows_match(path, index, rows, ref)
    if mode == "all":
        assert len(rows) == len(ref)
    if not index.ordinal:
        # Presented frames only: durations and spacing come from them.
        first, last = ref[0][0], ref[-1][0]
        assert first is not None and last is not None
        assert float(index.seconds[0]) == pytest.approx(first)
        assert index.end_s > last
    assert report.seeks <= 3 * len(rows) + 1


def test_cut_presents_only_the_frames_after_the_edit(files: dict[str, Path]) -> None:
    index = probe(str(files["h264_cut.mp4"]))
    shown = frame_numbers(np.stack([a for _, a in reference(files["h264_cut.mp4"], index)]))
    assert shown == list(range(N_FRAMES - len(shown), N_FRAMES))  # 33..59, no pre-roll
    assert len(index.pts) == len(shown)
    assert index.duration_s == pytest.approx(len(shown) / 25, abs=1e-6)


def test_mpegts_seek_lands_exactly_and_learns_to_seek_by_dts(files: dict[str, Path]) -> None:
    path = files["h264_bframes.ts"]
    index = probe(str(path))
    rows = np.array([14, 30, 50])  # each past a keyframe: every target needs a seek
    report = assert_rows_match(path, index, rows, reference(path, index))
    # The first pts seek lands a GOP late and is retried by dts; later seeks go by dts at once.
    assert report.late_seeks == 1
    assert report.seeks == 4


def test_raw_streams_are_ordinal_and_timed_by_the_frame_rate(files: dict[str, Path]) -> None:
    index = probe(str(files["h264_raw.h264"]))
    assert index.ordinal and len(index.pts) == N_FRAMES
    np.testing.assert_allclose(index.seconds[:3], [0.0, 0.04, 0.08])
    assert {".h264", ".264", ".hevc", ".265", ".m2v", ".mpv"} <= VIDEO_EXTENSIONS


def test_avi_decode_order_timestamps_are_not_trusted(files: dict[str, Path]) -> None:
    index = probe(str(files["h264_bframes.avi"]))
    assert index.ordinal, "AVI timestamps of H.264 with B-frames are decode times"
    assert not probe(str(files["mpeg4_bframes.avi"])).ordinal


def test_rotation_and_sar_give_the_displayed_size(files: dict[str, Path]) -> None:
    for name in ("h264_sar.mp4", "h264_pasp.mp4"):  # SAR in the bitstream / in the container
        index = probe(str(files[name]))
        assert index.sar == Fraction(32, 27) and index.display_size == (114, 64), name
    rotated = files["h264_rotated.mp4"]
    index = probe(str(rotated))
    report = DecodeReport()
    list(decode_selected(str(rotated), index, np.arange(3), GEOMETRY, report=report))
    assert report.rotation == 270  # ffmpeg's -display_rotation is counter-clockwise
    assert index.with_rotation(report.rotation).display_size == (H, W)


def test_the_main_stream_is_the_one_ffmpeg_picks_and_stream_n_overrides(
    files: dict[str, Path],
) -> None:
    from vidfeat.errors import VideoDecodeError

    for name in ("cover_first.mkv", "preview_first.mkv"):
        index = probe(str(files[name]))
        assert (index.stream, index.codec, index.width) == (1, "h264", W), name
    path = files["preview_first.mkv"]
    index = probe(str(path), 0)  # the preview, asked for
    assert (index.stream, index.width, index.height) == (0, 32, 24)
    ref = [(t, convert_frame(f, GEOMETRY, index.sar, 0)) for t, f in sequential(path, stream=0)]
    assert_rows_match(path, index, np.array([0, 17, 40, 59]), ref)
    for wrong in (2, 7):
        with pytest.raises(VideoDecodeError, match=rf"--stream {wrong} is not a video") as err:
            probe(str(path), wrong)
        assert err.value.kind == "no_video_stream"
        assert "0 (h264 32x24), 1 (h264 96x64)" in err.value.message


def test_cover_art_alone_is_no_video_unless_asked_for(tmp_path: Path) -> None:
    from vidfeat.errors import VideoDecodeError

    song = tmp_path / "song.m4a"
    real_world.ffmpeg(
        *("-f", "lavfi", "-i", "sine=duration=1", "-f", "lavfi", "-i", "color=c=red:s=64x64"),
        *("-frames:v", "1", "-map", "0", "-map", "1", "-c:a", "aac", "-c:v", "mjpeg"),
        *("-disposition:v:0", "attached_pic", str(song)),
    )
    with av.open(str(song)) as c:
        (cover,) = c.streams.video
        assert cover.disposition & av.stream.Disposition.attached_pic
        index = cover.index
    with pytest.raises(VideoDecodeError, match="only an attached picture") as err:
        probe(str(song))
    assert err.value.kind == "no_video_stream"
    assert len(probe(str(song), index).pts) == 1


def test_the_index_is_decoded_only_where_packets_mislead(files: dict[str, Path]) -> None:
    """A decode pass checks the packet list on the shapes that need it, never on ordinary
    MP4/MOV/MKV/WebM/TS files."""
    decoded = {
        "mpeg2_bframes.mpg": "MPEG program streams",
        "mpeg2_bframes.vob": "MPEG program streams",
        "h264_capture.ts": "does not start with a keyframe",
        "h264_cut.ts": "does not start with a keyframe",
        "h264_capture_open_gop.ts": "frames before the first keyframe",
        "h264_capture_long_gop.ts": "does not start with a keyframe",
        "vp8_altref.webm": "invisible frames",
    }
    for name in real_world.ALL:
        index = probe(str(files[name]))
        if name in decoded:
            assert index.source.startswith("decoded (") and decoded[name] in index.source
            assert not index.ordinal, f"{name}: a decode gives distinct, ordered timestamps"
        else:
            assert index.source == "demux", name


def test_mislabelled_frames_after_a_seek_fall_back_then_stop_seeking(
    files: dict[str, Path],
) -> None:
    """MPEG-PS: a seek's first frames carry other frames' times. Such a landing is refused
    and retried further back; once only a decode from the start worked, the decoder decodes
    on instead of seeking again."""
    from dataclasses import replace

    path = files["mpeg2_bframes.mpg"]
    index = probe(str(path))
    ref = reference(path, index)
    report = assert_rows_match(path, index, np.array([14, 30, 50]), ref)
    assert report.late_seeks >= 1
    # Every seek mislabelled (by pts and by dts alike): the start, then no more seeks.
    by_pts_only = replace(index, seek_dts=index.seek_pts)
    one = assert_rows_match(path, by_pts_only, np.array([30]), ref)
    assert one.late_seeks >= 1
    more = assert_rows_match(path, by_pts_only, np.array([30, 40, 50, 59]), ref)
    assert (more.seeks, more.late_seeks) == (one.seeks, one.late_seeks)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(
        [
            *("h264_bframes.ts", "h264_cut.mp4", "hevc_bframes.mp4", "h264_bframes.avi"),
            *("h264_vfr.mp4", "mpeg2_bframes.mpg", "h264_capture.ts", "vp8_altref.webm"),
            "cover_first.mkv",
        ]
    ),
    rows=st.sets(st.integers(0, 200), min_size=1, max_size=12),
)
def test_random_requests_match_sequential_decoding(
    files: dict[str, Path], name: str, rows: set[int]
) -> None:
    path = files[name]
    index = probe(str(path))
    chosen = np.array(sorted(r % len(index.pts) for r in rows))
    chosen = np.unique(chosen)
    assert_rows_match(path, index, chosen, _cached_reference(path, index))


_REFERENCES: dict[Path, list[tuple[float | None, np.ndarray]]] = {}


def _cached_reference(path: Path, index: VideoIndex) -> list[tuple[float | None, np.ndarray]]:
    if path not in _REFERENCES:
        _REFERENCES[path] = reference(path, index)
    return _REFERENCES[path]


def test_a_frame_the_decoder_never_presents_is_an_error_not_a_near_frame(
    files: dict[str, Path],
) -> None:
    from dataclasses import replace

    from vidfeat.errors import VideoDecodeError

    path = files["h264_bframes.mp4"]
    index = probe(str(path))
    phantom = np.insert(index.pts, 21, index.pts[20] + 1)  # a listed time no frame has
    with pytest.raises(VideoDecodeError, match="never presents it exactly") as err:
        list(decode_selected(str(path), replace(index, pts=phantom), np.array([21]), GEOMETRY))
    assert err.value.kind == "inexact"
    missing = np.delete(index.pts, 20)  # a presented frame the index does not list
    with pytest.raises(VideoDecodeError, match="does not list") as err:
        # row 21 is frame 22: decoded from keyframe 12, through the unlisted frame 20
        list(decode_selected(str(path), replace(index, pts=missing), np.array([21]), GEOMETRY))
    assert err.value.kind == "inexact"
    # Decode-order timestamps taken for presentation times: caught, not stored.
    avi = files["h264_bframes.avi"]
    trusting = replace(probe(str(avi)), ordinal=False)
    with pytest.raises(VideoDecodeError, match="inexact") as err:
        list(decode_selected(str(avi), trusting, np.arange(len(trusting.pts)), GEOMETRY))
    assert err.value.kind == "inexact"


def test_cut_raw_and_ts_files_that_end_early_are_truncated(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from vidfeat.errors import VideoDecodeError

    for name in ("h264_bframes.ts", "h264_raw.h264"):
        data = files[name].read_bytes()
        cut = tmp_path / name
        cut.write_bytes(data[: len(data) // 2])
        index = probe(str(cut))
        rows = select_frames(index.seconds, index.end_s, MODES["all"])
        ref = reference(cut, index)
        damaged: list[VideoDecodeError] = []
        try:  # a half frame at the cut is damaged data, never a row
            assert_rows_match(cut, index, rows, ref)
        except VideoDecodeError as e:
            damaged.append(e)
        if damaged:
            assert damaged[0].kind == "truncated", damaged[0]
            # Sampling that stays clear of the damaged end stores exact rows.
            assert_rows_match(cut, index, rows[: len(rows) // 2], ref)
        (tmp_path / f"head-{name}").write_bytes(data[:300])
        with pytest.raises(VideoDecodeError) as err:
            probe(str(tmp_path / f"head-{name}"))
        assert err.value.kind in ("truncated", "zero_frames"), err.value


@pytest.mark.parametrize("name", real_world.ALL)
def test_segments_for_separate_decoders_present_the_frames_of_one_decode(
    files: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video shared by several decoders (vidfeat/pipeline/segments.py): each segment seeks
    to its own keyframe, and together they present exactly the frames, pts and pixels of one
    decoder going through, on B-pyramids, open GOPs, edit lists, MPEG-TS and VFR alike. Streams
    that cannot seek (ordinal indexes) and single-GOP files stay whole."""
    from vidfeat.pipeline.sandbox import DecoderProcess

    monkeypatch.setenv("VIDFEAT_MIN_SEGMENT_FRAMES", "6")  # the fixtures are 60 frames long
    sampling = SamplingConfig(mode="stride", stride=4)
    decoder = DecoderProcess()  # started now: its child sees the variable

    def run(segment: tuple[int, int]) -> tuple[list[Any], str]:
        chunks: list[Any] = []
        _, sha256, _ = decoder.decode(
            str(files[name]), sampling, GEOMETRY, 60, chunks.append, segment
        )
        return chunks, sha256

    try:
        whole, sha256 = run((0, 1))
        segments = [run((j, 3)) for j in range(3)]
    finally:
        decoder.close()
    index = probe(str(files[name]))
    together = [c for chunks, _ in segments for c in chunks]
    for key in ("frame_index", "pts_s", "frames"):
        np.testing.assert_array_equal(
            np.concatenate([getattr(c, key) for c in together]),
            np.concatenate([getattr(c, key) for c in whole]),
        )
    used = sum(bool(chunks) for chunks, _ in segments)
    splittable = not index.ordinal and len(index.seek_pts) > 1
    assert used >= 2 if splittable else used == 1, (name, used)
    assert [s for _, s in segments] == [sha256, "", ""]
