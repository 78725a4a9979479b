"""Test videos made the way users' files are made: a lossless index-frame master (PyAV, every
frame spells its number), re-encoded and remuxed by the ffmpeg CLI that the imageio-ffmpeg
wheel ships: B-frames and open GOPs from x264/x265, ``-ss … -c copy`` cuts (MP4 edit lists),
MPEG-TS, AVI, raw Annex-B streams, SAR and display rotation, variable frame rate; and the
shapes where the first video stream or the packet list misleads: cover art or a preview track
muxed first, MPEG-2 program streams, a TS capture that starts mid-GOP, VP8 alt-ref frames."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import imageio_ffmpeg
import numpy as np

from tests.conftest import index_frame
from vidfeat.encode import encode_video

N_FRAMES = 60
H, W = 64, 96
_X264_B = ["-c:v", "libx264", "-qp", "10", "-bf", "3", "-g", "12", "-sc_threshold", "0"]
_B_PYRAMID_OPEN_GOP = ["-x264-params", "b-adapt=0:b-pyramid=normal:open-gop=1"]
_MPEG2_B = ["-c:v", "mpeg2video", "-q:v", "2", "-bf", "2", "-g", "12"]
_X265_B = [
    "-c:v",
    "libx265",
    "-crf",
    "12",
    "-x265-params",
    "log-level=none:bframes=3:b-adapt=0:keyint=12:min-keyint=12:scenecut=0",
]

# name: (ffmpeg arguments before the output; None = made from another fixture, see below)
RECIPES: dict[str, list[str]] = {
    "h264_bframes.mp4": [*_X264_B, *_B_PYRAMID_OPEN_GOP],
    "h264_no_bframes.mov": ["-c:v", "libx264", "-qp", "10", "-bf", "0", "-g", "12"],
    "h264_bframes.mkv": [*_X264_B, *_B_PYRAMID_OPEN_GOP],
    "h264_bframes.ts": [*_X264_B, *_B_PYRAMID_OPEN_GOP, "-f", "mpegts"],
    "hevc_bframes.ts": [*_X265_B, "-f", "mpegts"],
    "hevc_bframes.mp4": [*_X265_B, "-tag:v", "hvc1"],
    "mpeg2_bframes.ts": [*_MPEG2_B, "-f", "mpegts"],
    "mpeg4_bframes.avi": ["-c:v", "mpeg4", "-q:v", "2", "-bf", "2", "-g", "12"],
    # AVI stores decode times only: H.264 with B-frames gets timestamps in decode order
    "h264_bframes.avi": [*_X264_B, *_B_PYRAMID_OPEN_GOP],
    "vp9_long_gop.webm": ["-c:v", "libvpx-vp9", "-crf", "10", "-b:v", "0", "-g", "250"],
    "h264_long_gop.mp4": [*_X264_B[:-4], "-g", "250", "-sc_threshold", "0"],
    "h264_raw.h264": [*_X264_B, "-bsf:v", "h264_mp4toannexb", "-f", "h264"],
    "hevc_raw.hevc": [*_X265_B, "-f", "hevc"],
    "mpeg2_raw.m2v": ["-c:v", "mpeg2video", "-q:v", "2", "-bf", "2", "-f", "mpeg2video"],
    "h264_sar.mp4": [*_X264_B, "-vf", "setsar=32/27"],
    "h264_vfr.mp4": [
        *_X264_B,
        "-vf",
        "setpts='if(lt(N,20),N*0.04,0.8+(N-20)*0.13)/TB'",
        "-fps_mode",
        "vfr",
    ],
}
# name: (source fixture, ffmpeg arguments around the copy)
REMUXES: dict[str, tuple[str, list[str], list[str]]] = {
    "h264_cut.mp4": ("h264_bframes.mp4", ["-ss", "1.3"], ["-c", "copy"]),
    "hevc_cut.mp4": ("hevc_bframes.mp4", ["-ss", "0.7"], ["-c", "copy"]),
    "h264_pasp.mp4": ("h264_bframes.mp4", [], ["-c", "copy", "-aspect", "16:9"]),
    "h264_rotated.mp4": ("h264_bframes.mp4", ["-display_rotation", "90"], ["-c", "copy"]),
}


def _cover_first(folder: Path, master: Path, out: Path) -> None:
    """Cover art added the usual way (``-disposition attached_pic``) as the first stream of a
    Matroska file, which keeps it as a one-frame MJPEG video track, larger than the video."""
    cover = folder / "cover.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=orange:size=160x160:d=0.04", "-frames:v", "1", str(cover))
    ffmpeg(
        *("-i", str(cover), "-i", str(master), "-map", "0", "-map", "1"),
        *("-c:v:0", "mjpeg", "-pix_fmt:v:0", "yuvj420p", "-disposition:v:0", "attached_pic"),
        *("-c:v:1", "libx264", "-qp:v:1", "10", "-bf:v:1", "3", "-g:v:1", "12"),
        *("-pix_fmt:v:1", "yuv420p", str(out)),
    )


def _preview_first(folder: Path, master: Path, out: Path) -> None:
    """A small mirrored preview as the first, non-default stream; the main one second, default."""
    ffmpeg(
        *("-i", str(master), "-filter_complex", "[0:v]scale=32:24,hflip[p]"),
        *("-map", "[p]", "-map", "0:v", *_X264_B, "-pix_fmt", "yuv420p"),
        *("-disposition:v:0", "0", "-disposition:v:1", "default", str(out)),
    )


def _vp8_altref(folder: Path, master: Path, out: Path) -> None:
    """Two-pass VP8 with alt-ref frames: hidden packets (show_frame = 0) that share the next
    frame's timestamp. libvpx places them only where the picture moves, so the source is
    FFmpeg's moving test pattern (the rows are compared with a sequential decode's images)."""
    source = ["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=25:duration={N_FRAMES / 25}"]
    vp8 = ["-c:v", "libvpx", "-b:v", "300k", "-auto-alt-ref", "1", "-lag-in-frames", "16"]
    log = str(folder / "vp8-2pass")
    for n, dest in (("1", "/dev/null"), ("2", str(out))):
        ffmpeg(*source, *vp8, "-pass", n, "-passlogfile", log, "-f", "webm", dest)


def _ts_capture(folder: Path, master: Path, out: Path) -> None:
    """A broadcast capture: the TS bytes from a packet boundary in the middle of a GOP."""
    data = (folder / "h264_bframes.ts").read_bytes()
    out.write_bytes(data[188 * 60 :])


def _ts_capture_open_gop(folder: Path, master: Path, out: Path) -> None:
    """A capture that starts exactly at an open-GOP I-frame: the B-frames after it in the
    file refer to the GOP before, which is not there, so no decoder presents them."""
    source = folder / "h264_bframes.ts"
    with av.open(str(source)) as c:
        keys = [p.pos for p in c.demux(video=0) if p.is_keyframe and p.pos is not None]
    start = keys[2] - keys[2] % 188  # the TS packet where the third keyframe's PES begins
    out.write_bytes(source.read_bytes()[start:])


def _ts_capture_long_gop(folder: Path, master: Path, out: Path) -> None:
    """A copy cut into MPEG-TS from a long-GOP H.264 (a keyframe every 10 s, as cameras and
    x264's defaults write): the decoder refuses the packets before the first keyframe outright
    (errors, not silence), as in a cut of the 1080p benchmark clip."""
    source = folder / "h264_gop250.mp4"
    pattern = f"testsrc2=size={W}x{H}:rate=25:duration=12"
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "250", "-pix_fmt", "yuv420p"]
    ffmpeg("-f", "lavfi", "-i", pattern, *x264, str(source))
    ffmpeg("-i", str(source), "-ss", "0.5", "-c", "copy", "-copyinkf", "-f", "mpegts", str(out))


# name: (maker(folder, master, out)), made after RECIPES and REMUXES
MADE: dict[str, Callable[[Path, Path, Path], None]] = {
    "cover_first.mkv": _cover_first,
    "preview_first.mkv": _preview_first,
    "vp8_altref.webm": _vp8_altref,
    "h264_capture.ts": _ts_capture,
    "h264_capture_open_gop.ts": _ts_capture_open_gop,
    "h264_capture_long_gop.ts": _ts_capture_long_gop,
}
RECIPES["mpeg2_bframes.mpg"] = [*_MPEG2_B, "-f", "mpeg"]  # MPEG program stream
RECIPES["mpeg2_bframes.vob"] = [*_MPEG2_B, "-f", "vob"]  # DVD
# -ss after -i with -c copy keeps the packets from the cut on, mid-GOP (-copyinkf)
REMUXES["h264_cut.ts"] = ("h264_bframes.ts", [], ["-ss", "0.5", "-c", "copy", "-copyinkf"])
ALL = (*RECIPES, *REMUXES, *MADE)
# The stream each file's content is in, where it is not the first (a sequential decode of it
# is the reference).
MAIN_STREAM = {"cover_first.mkv": 1, "preview_first.mkv": 1}


def ffmpeg(*args: str) -> None:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-loglevel", "error", *args]
    subprocess.run(cmd, check=True)


def make_all(folder: Path) -> dict[str, Path]:
    master = folder / "master.mkv"
    frames = (index_frame(i, H, W) for i in range(N_FRAMES))
    encode_video(master, frames, 25, "ffv1", "yuv444p", {}, None)
    out = {}
    for name, args in RECIPES.items():
        out[name] = folder / name
        ffmpeg("-i", str(master), *args, "-pix_fmt", "yuv420p", str(out[name]))
    for name, (source, before, after) in REMUXES.items():
        out[name] = folder / name
        ffmpeg(*before, "-i", str(out[source]), *after, str(out[name]))
    for name, make in MADE.items():
        out[name] = folder / name
        make(folder, master, out[name])
    return out


def packets(path: Path) -> Iterator[av.Packet]:
    with av.open(str(path)) as c:
        for p in c.demux(c.streams[MAIN_STREAM.get(path.name, 0)]):
            if p.size:
                yield p


def sequential(path: Path, stream: int | None = None) -> list[tuple[float | None, av.VideoFrame]]:
    """(pts in seconds or None, frame) of every frame a plain decode of the file's main
    stream (or of ``stream``) presents, in order."""
    out = []
    with av.open(str(path)) as c:
        video = c.streams[MAIN_STREAM.get(path.name, 0) if stream is None else stream]
        tb = Fraction(video.time_base)
        for packet in c.demux(video):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                if out:
                    raise
                continue  # as the ffmpeg CLI: packets refused before the first frame are skipped
            for frame in frames:
                out.append((None if frame.pts is None else float(frame.pts * tb), frame))
    return out


def frame_numbers(frames: np.ndarray) -> list[int]:
    from tests.conftest import read_index

    return [read_index(f) for f in frames]
