"""Decoding: the only module that imports av.

Two passes over a video, neither of which holds the video in memory:
1. ``probe``: demux only (no decoding) → every frame's pts and the keyframe positions.
2. ``decode_selected``: decode forward to each chosen frame, seeking to the keyframe before a
   target only when that keyframe lies past the current position (seeking blindly costs more
   than decoding through when keyframes are rare). Frames are resized in swscale during the
   RGB conversion, then centre-cropped by slicing.

Every failure raises VideoDecodeError with a kind; an error never becomes an empty result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from vidfeat.errors import VideoDecodeError
from vidfeat.pipeline.sampling import center_crop_box, resize_dims

INTERPOLATIONS = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "POINT", "area": "AREA"}
# Container signatures: a file that starts like a video but will not open is truncated.
_SIGNATURES = (b"RIFF", b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"FLV")

av.logging.set_level(av.logging.PANIC)  # failures are reported through VideoDecodeError


@dataclass(frozen=True, slots=True)
class VideoIndex:
    """What the demux pass learns: frame times and keyframes, in presentation order."""

    pts: np.ndarray  # int64, stream time base, ascending
    keyframe: np.ndarray  # bool
    time_base: Fraction
    end_s: float  # when the last frame stops being shown
    width: int
    height: int
    codec: str
    fps: float
    rotation: int

    @property
    def seconds(self) -> np.ndarray:
        # multiply then divide: float(time_base) alone is inexact (1/12800) and shifts frames
        return self.pts.astype(np.float64) * self.time_base.numerator / self.time_base.denominator

    @property
    def duration_s(self) -> float:
        return self.end_s - float(self.seconds[0]) if len(self.pts) else 0.0


@dataclass(frozen=True, slots=True)
class Geometry:
    """Resize the shorter side to ``resize`` (swscale, ``interpolation``), crop ``crop``²."""

    resize: int
    crop: int
    interpolation: str = "bilinear"


def _looks_like_video(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head.startswith(
        _SIGNATURES
    )


def _open(path: str) -> Any:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise VideoDecodeError("not_found", f"{path}: no such file") from None
    except OSError as e:
        raise VideoDecodeError("not_found", f"{path}: cannot read ({e.strerror})") from None
    if st.st_size == 0:
        raise VideoDecodeError("not_a_video", f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise VideoDecodeError("not_found", f"{path}: cannot read (permission denied)")
    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as e:
        if _looks_like_video(path):
            raise VideoDecodeError(
                "truncated", f"{path}: container is damaged or cut short ({e})"
            ) from None
        raise VideoDecodeError("not_a_video", f"{path}: not a video file ({e})") from None
    except OSError as e:
        raise VideoDecodeError("not_found", f"{path}: cannot read ({e})") from None


def _video_stream(container: Any, path: str) -> Any:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise VideoDecodeError("no_video_stream", f"{path}: no video stream (streams: {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoDecodeError("unsupported", f"{path}: no decoder for codec {stream.codec_tag!r}")
    return stream


def probe(path: str) -> VideoIndex:
    """Demux pass: all frame timestamps and keyframes, without decoding."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        pts, keys, durations = [], [], []
        try:
            for packet in container.demux(stream):
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None or packet.size == 0:
                    continue
                pts.append(ts)
                keys.append(packet.is_keyframe)
                durations.append(packet.duration or 0)
        except av.error.FFmpegError as e:
            if not pts:
                raise VideoDecodeError("truncated", f"{path}: unreadable packets ({e})") from None
        if not pts:
            raise VideoDecodeError("zero_frames", f"{path}: the video stream has no frames")
        order = np.argsort(np.asarray(pts, np.int64), kind="stable")
        pts_arr = np.asarray(pts, np.int64)[order]
        key_arr = np.asarray(keys, bool)[order]
        keep = np.concatenate([[True], np.diff(pts_arr) > 0])  # duplicate timestamps
        pts_arr, key_arr = pts_arr[keep], key_arr[keep]
        tb = stream.time_base or Fraction(1, 1000)
        rate = stream.average_rate or stream.guessed_rate
        last = max(int(durations[int(order[-1])]), 0)
        if not last:
            gap = int(np.median(np.diff(pts_arr))) if len(pts_arr) > 1 else 0
            last = gap or (round(1 / (float(rate) * float(tb))) if rate else 0)
        ctx = stream.codec_context
        return VideoIndex(
            pts=pts_arr,
            keyframe=key_arr,
            time_base=Fraction(tb),
            end_s=float((int(pts_arr[-1]) + last) * tb),
            width=int(ctx.width),
            height=int(ctx.height),
            codec=str(ctx.name),
            fps=float(rate) if rate else 0.0,
            rotation=_rotation(stream),
        )


def _rotation(stream: Any) -> int:
    """Display rotation in degrees clockwise (0, 90, 180, 270) from the stream's matrix."""
    try:
        for side in getattr(stream, "side_data", {}) or {}:
            if "DISPLAYMATRIX" in str(side).upper():
                value = stream.side_data[side]
                return round(-float(value)) % 360 if not isinstance(value, bytes) else 0
    except (TypeError, ValueError, KeyError):
        pass
    tag = (stream.metadata or {}).get("rotate")
    return int(tag) % 360 if tag and str(tag).lstrip("-").isdigit() else 0


def _frame_rotation(frame: Any, index: VideoIndex) -> int:
    """Clockwise display rotation of a decoded frame. PyAV reports the display matrix on
    frames (counter-clockwise degrees, FFmpeg's convention); streams expose it only in
    older versions, which ``probe`` reads into ``index.rotation``."""
    ccw = getattr(frame, "rotation", None)
    return round(-float(ccw)) % 360 if ccw else index.rotation


@dataclass(frozen=True, slots=True)
class DecodedChunk:
    frames: np.ndarray  # uint8 (k, crop, crop, 3)
    frame_index: np.ndarray  # int64 (k,)
    pts_s: np.ndarray  # float64 (k,)


def _convert(frame: Any, geometry: Geometry, rotation: int) -> np.ndarray:
    """swscale resize + RGB conversion, then rotation and a centre crop by slicing."""
    w, h = frame.width, frame.height
    quarter = rotation in (90, 270)
    disp_w, disp_h = (h, w) if quarter else (w, h)
    new_w, new_h = resize_dims(disp_w, disp_h, geometry.resize)
    raw_w, raw_h = (new_h, new_w) if quarter else (new_w, new_h)
    rgb = frame.to_ndarray(
        format="rgb24",
        width=raw_w,
        height=raw_h,
        interpolation=INTERPOLATIONS.get(geometry.interpolation, "BILINEAR"),
    )
    if rotation:
        rgb = np.rot90(rgb, k=-(rotation // 90))  # clockwise by `rotation`
    x0, y0 = center_crop_box(new_w, new_h, geometry.crop)
    return np.ascontiguousarray(rgb[y0 : y0 + geometry.crop, x0 : x0 + geometry.crop])


def decode_selected(
    path: str,
    index: VideoIndex,
    selected: np.ndarray,
    geometry: Geometry,
    deadline: float | None = None,
    chunk: int = 16,
    threads: int = 1,
) -> Iterator[DecodedChunk]:
    """Yield the selected frames (indices into ``index``) in order, ``chunk`` at a time."""
    if len(selected) == 0:
        raise VideoDecodeError("zero_frames", f"{path}: sampling selected no frames")
    targets = index.pts[selected]
    key_pts = index.pts[index.keyframe] if index.keyframe.any() else index.pts[:1]
    tb_num, tb_den = index.time_base.numerator, index.time_base.denominator
    buf: list[np.ndarray] = []
    buf_idx: list[int] = []
    buf_pts: list[float] = []
    emitted = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        frames: Iterator[Any] | None = None
        position = None  # pts of the last decoded frame
        try:
            for i, target in enumerate(targets):
                k = int(np.searchsorted(key_pts, target, side="right")) - 1
                keyframe = int(key_pts[max(k, 0)])
                if (
                    frames is None
                    or (position is not None and keyframe > position)
                    or (position is not None and position > target)
                ):
                    container.seek(keyframe, stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                    position = None
                for frame in frames:
                    if deadline is not None and time.monotonic() > deadline:
                        raise VideoDecodeError(
                            "timeout", f"{path}: decoding took longer than the timeout"
                        )
                    if frame.pts is None:
                        continue
                    position = frame.pts
                    if frame.pts >= target:
                        buf.append(_convert(frame, geometry, _frame_rotation(frame, index)))
                        buf_idx.append(int(selected[i]))
                        buf_pts.append(frame.pts * tb_num / tb_den)
                        break
                else:
                    break  # stream ended before this target
                if len(buf) >= chunk:
                    emitted += len(buf)
                    yield DecodedChunk(np.stack(buf), np.array(buf_idx), np.array(buf_pts))
                    buf, buf_idx, buf_pts = [], [], []
        except av.error.FFmpegError as e:
            raise VideoDecodeError(
                "truncated", f"{path}: decoding failed after {emitted + len(buf)} frames ({e})"
            ) from None
    got = emitted + len(buf)
    if got < len(targets):
        kind = "zero_frames" if got == 0 else "truncated"
        raise VideoDecodeError(
            kind, f"{path}: stream ended after {got} of {len(targets)} sampled frames"
        )
    if buf:
        yield DecodedChunk(np.stack(buf), np.array(buf_idx), np.array(buf_pts))
