"""Test videos made the way users' files are made: a lossless index-frame master (PyAV, every
frame spells its number), re-encoded and remuxed by the ffmpeg CLI that the imageio-ffmpeg
wheel ships: B-frames and open GOPs from x264/x265, ``-ss … -c copy`` cuts (MP4 edit lists),
MPEG-TS, AVI, raw Annex-B streams, SAR and display rotation, variable frame rate."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
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
    "mpeg2_bframes.ts": ["-c:v", "mpeg2video", "-q:v", "2", "-bf", "2", "-g", "12", "-f", "mpegts"],
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
ALL = (*RECIPES, *REMUXES)


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
    return out


def packets(path: Path) -> Iterator[av.Packet]:
    with av.open(str(path)) as c:
        for p in c.demux(c.streams.video[0]):
            if p.size:
                yield p


def sequential(path: Path) -> list[tuple[float | None, av.VideoFrame]]:
    """(pts in seconds or None, frame) of every frame a plain decode presents, in order."""
    out = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        tb = Fraction(stream.time_base)
        for frame in c.decode(stream):
            out.append((None if frame.pts is None else float(frame.pts * tb), frame))
    return out


def frame_numbers(frames: np.ndarray) -> list[int]:
    from tests.conftest import read_index

    return [read_index(f) for f in frames]
