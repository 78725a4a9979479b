"""Decoding: the only module that imports av.

The video stream is the one FFmpeg picks (``_main_video``), or ``--stream N``. Two passes over
it, neither of which holds the video in memory:
1. ``probe``: demux only (no decoding) → the frame index (frame_index.py): every presented
   frame's pts, and the keyframes to seek to. Where the packets cannot say which frames a
   decoder presents (frame_index.index_doubt: mid-GOP starts, invisible frames, MPEG program
   streams, ...), one decode from the start makes the list instead.
2. ``decode_selected``: decode forward to each chosen frame, seeking only when a keyframe lies
   between the current position and the target (seeking blindly costs more than decoding
   through when keyframes are rare). A decoded frame is used only if its pts is the target's;
   after a seek, only while the decoder's timestamps are ones the index lists, in order, from
   the frame the index expects first. A seek that lands late or mislabelled (MPEG-TS seeks by
   dts, so a keyframe's pts can land on the next keyframe; MPEG-PS labels the first frames
   after a seek with other frames' times) is retried from its dts, then from earlier
   keyframes, then from the start; where only the start worked, the decoder stops seeking.

Frames become RGB at full size in swscale, then are resized in RGB (the weights' reference
transforms resize RGB images with an antialiasing filter; scaling during the YUV conversion
differs from them by 2-5/255 per pixel), with the display aspect (SAR) and rotation, and are
centre-cropped by slicing.

With ``hwaccel="cuda"`` the decoding itself runs on the GPU's video engines (NVDEC through
FFmpeg's hwaccel; H.264 and HEVC decoding is bit-exact by the standard, so the frames are the
same) and the frames come back to the host for the same conversion. When the device or the
codec cannot, or the hardware decoder fails, the video is decoded in software and the report
says why: a fallback is never silent.

Every failure raises VideoDecodeError with a kind; an error never becomes an empty result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import av
import numpy as np
from av.codec.hwaccel import HWAccel
from av.stream import Disposition

from vidfeat.config import check_interpolation
from vidfeat.errors import VideoDecodeError
from vidfeat.pipeline.frame_index import Packets, VideoIndex, build_index, index_doubt
from vidfeat.pipeline.sampling import center_crop_box, resize_dims

_SWSCALE = {"bilinear": "BILINEAR", "bicubic": "BICUBIC", "nearest": "POINT", "area": "AREA"}
# Container signatures: a file that starts like a video but will not open is truncated.
_SIGNATURES = (
    b"RIFF",
    b"\x1a\x45\xdf\xa3",  # Matroska / WebM
    b"\x00\x00\x01\xba",  # MPEG program stream
    b"\x00\x00\x01\xb3",  # MPEG-1/2 video
    b"\x00\x00\x00\x01",  # Annex-B H.264 / HEVC
    b"FLV",
)

av.logging.set_level(av.logging.PANIC)  # failures are reported through VideoDecodeError

__all__ = [
    "DecodeReport",
    "DecodedChunk",
    "Geometry",
    "VideoIndex",
    "convert_frame",
    "convert_views",
    "decode_selected",
    "probe",
]


@dataclass(frozen=True, slots=True)
class Geometry:
    """Resize the shorter displayed side to ``resize`` (``interpolation``), crop ``crop``².
    ``on_device``: the decoder stops at the displayed frame, its shorter side at most
    ``upload_shorter`` (device_resize.py does the rest on the backbone's device)."""

    resize: int
    crop: int
    interpolation: str = "bilinear"
    on_device: bool = False

    def __post_init__(self) -> None:
        check_interpolation(self.interpolation)

    @property
    def upload_shorter(self) -> int:
        # Twice the resize: a 360p or 480p video travels at its own size (no host resize at
        # all), a 1080p one is halved on the host first and finished on the device.
        return 2 * self.resize


@dataclass(slots=True)
class DecodeReport:
    """What one decode_selected call did: for the record and the benchmarks."""

    targets: int = 0
    seeks: int = 0  # seeks and reopens; the first open is not counted
    late_seeks: int = 0  # seeks that landed past their target and were retried further back
    decoded: int = 0  # frames the decoder presented
    rotation: int = 0
    decoder: str = "software"  # where the frames were decoded: software | cuda
    fallback: str = ""  # why hardware decoding was asked for and not used (or stopped)

    def describe_decoder(self) -> str:
        """The decoder as a video's record states it: ``cuda``, ``software``, or
        ``software (cuda fallback: <why>)``."""
        return f"{self.decoder} ({self.fallback})" if self.fallback else self.decoder


def _looks_like_video(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(189)
    except OSError:
        return False
    mpegts = len(head) > 188 and head[0] == head[188] == 0x47  # two TS packets' sync bytes
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide")
        or head.startswith(_SIGNATURES)
        or mpegts
    )


def _open(path: str, hwaccel: str | None = None) -> Any:
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
    if hwaccel is not None:  # failures are the caller's to record; it then opens in software
        device = HWAccel(hwaccel, allow_software_fallback=False)
        return av.open(path, metadata_errors="ignore", hwaccel=device)
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


def _video_stream(container: Any, path: str, forced: int | None = None) -> Any:
    """The video stream to decode: ``forced`` (``--stream N``), else the one FFmpeg's own tools
    pick (``_main_video``)."""
    if forced is not None:
        streams = container.streams
        if not 0 <= forced < len(streams) or streams[forced].type != "video":
            listing = ", ".join(_describe(s) for s in container.streams.video) or "none"
            raise VideoDecodeError(
                "no_video_stream",
                f"{path}: --stream {forced} is not a video stream of this file "
                f"(its video streams: {listing}); pick one of those or leave --stream out",
            )
        stream = streams[forced]
    elif not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise VideoDecodeError("no_video_stream", f"{path}: no video stream (streams: {kinds})")
    else:
        stream = _main_video(container)
        if stream.disposition & Disposition.attached_pic:  # an audio file's cover art
            raise VideoDecodeError(
                "no_video_stream",
                f"{path}: no video stream, only an attached picture (cover art, stream "
                f"{stream.index}); --stream {stream.index} decodes it as a one-frame video",
            )
    if stream.codec_context is None:
        raise VideoDecodeError("unsupported", f"{path}: no decoder for codec {stream.codec_tag!r}")
    return stream


def _main_video(container: Any) -> Any:
    """FFmpeg's choice (``av_find_best_stream``: the default disposition first, then a stream
    with several frames over a one-frame one, then bitrate), where an attached picture (cover
    art) never wins over a real video stream (and alone is no video: _video_stream). The
    first video stream is not the main one in files with cover art or a preview track first."""
    videos = list(container.streams.video)
    real = [s for s in videos if not s.disposition & Disposition.attached_pic] or videos
    best = container.streams.best("video")
    if best is not None and any(best.index == s.index for s in real):
        return best
    return max(real, key=lambda s: (bool(s.disposition & Disposition.default), s.width * s.height))


def _describe(stream: Any) -> str:
    codec = stream.codec_context.name if stream.codec_context is not None else "unknown codec"
    return f"{stream.index} ({codec} {stream.width}x{stream.height})"


def probe(path: str, stream_index: int | None = None) -> VideoIndex:
    """Demux pass: the presented frames' timestamps and the keyframes, without decoding. Where
    the packets cannot say which frames a decoder presents (frame_index.index_doubt), the
    stream is decoded once and the index lists what that decode presented."""
    with _open(path) as container:
        stream = _video_stream(container, path, stream_index)
        packets = Packets([], [], [], [], [], invisible=[])
        vp8 = stream.codec_context.name == "vp8"
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packets.pts.append(packet.pts)
                packets.dts.append(packet.dts)
                packets.keyframe.append(bool(packet.is_keyframe))
                packets.discard.append(bool(packet.is_discard))
                packets.duration.append(max(int(packet.duration or 0), 0))
                assert packets.invisible is not None
                # VP8 frame tag, first byte: bit 4 is show_frame (RFC 6386, 9.1)
                packets.invisible.append(vp8 and not memoryview(packet)[0] & 0x10)
        except av.error.FFmpegError as e:
            if not packets.pts:
                raise VideoDecodeError("truncated", f"{path}: unreadable packets ({e})") from None
        doubt = index_doubt(packets, str(container.format.name))
        stream_index = int(stream.index)
        ctx = stream.codec_context
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio or Fraction(1)
        picture = {
            "width": int(ctx.width),
            "height": int(ctx.height),
            "codec": str(ctx.name),
            "sar": Fraction(sar) if sar > 0 else Fraction(1),
            "rotation": _rotation(stream),
            "stream": stream_index,
        }
        time_base = Fraction(stream.time_base or Fraction(1, 1000))
        rate = stream.average_rate or stream.guessed_rate
        reorders = bool(ctx.has_b_frames)
    presented = _presented_frames(path, stream_index) if doubt else None
    return build_index(
        path,
        packets,
        time_base,
        rate,
        reorders,
        presented,
        source=f"decoded ({doubt})" if doubt else "demux",
        **picture,
    )


def _decoded(container: Any, stream: Any) -> Iterator[Any]:
    """``container.decode(stream)``, except that packets the decoder refuses before it has
    presented a frame are passed over, as FFmpeg's own tools pass them: a capture or a copy cut
    that starts mid-GOP begins with packets whose references are not in the file. A refusal
    after the first frame is damage, and raises."""
    presented = False
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            if presented:
                raise
            continue
        for frame in frames:
            presented = True
            yield frame


def _presented_frames(path: str, stream_index: int) -> tuple[list[int | None], list[int]]:
    """(pts, duration) of every frame a decode from the start presents, in order."""
    stamps: list[int | None] = []
    durations: list[int] = []
    with _open(path) as container:
        stream = container.streams[stream_index]
        stream.thread_type = "AUTO"
        try:
            for frame in _decoded(container, stream):
                stamps.append(frame.pts)
                durations.append(max(int(frame.duration or 0), 0))
        except av.error.FFmpegError as e:
            raise VideoDecodeError(
                "truncated",
                f"{path}: decoding failed after {len(stamps)} frames while checking which "
                f"frames the stream presents ({e})",
            ) from None
    return stamps, durations


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
    # Per geometry asked for: uint8 (k, crop, crop, 3); (k, H, W, 3) displayed for on_device.
    views: tuple[np.ndarray, ...]
    frame_index: np.ndarray  # int64 (k,)
    pts_s: np.ndarray  # float64 (k,)

    @property
    def frames(self) -> np.ndarray:
        """The first geometry's frames (the only one, with one backbone)."""
        return self.views[0]


def convert_frame(frame: Any, geometry: Geometry, sar: Fraction, rotation: int) -> np.ndarray:
    """RGB at full size, then resized in RGB to the displayed shape (SAR, rotation) so that the
    shorter side is ``geometry.resize``, rotated, and centre-cropped by slicing. Planar RGB
    (gbrp): swscale scales it faster than packed rgb24, with the same result
    (docs/performance.md, "Frame-exact decoding and the RGB resize")."""
    return convert_views(frame, (geometry,), sar, rotation)[0]


def convert_views(
    frame: Any, geometries: tuple[Geometry, ...], sar: Fraction, rotation: int
) -> tuple[np.ndarray, ...]:
    """``convert_frame`` for each geometry (several backbones), from one RGB conversion."""
    planar = frame.reformat(format="gbrp")
    return tuple(_view(planar, g, sar, rotation) for g in geometries)


def _view(planar: Any, geometry: Geometry, sar: Fraction, rotation: int) -> np.ndarray:
    quarter = rotation in (90, 270)
    w, h = max(1, round(planar.width * sar)), planar.height
    disp_w, disp_h = (h, w) if quarter else (w, h)
    if geometry.on_device:  # the displayed frame, bounded
        shorter = min(disp_w, disp_h, geometry.upload_shorter)
        new_w, new_h = resize_dims(disp_w, disp_h, shorter)
    else:
        new_w, new_h = resize_dims(disp_w, disp_h, geometry.resize)
    raw_w, raw_h = (new_h, new_w) if quarter else (new_w, new_h)
    if (raw_w, raw_h) != (planar.width, planar.height):
        planar = planar.reformat(
            width=raw_w, height=raw_h, format="gbrp", interpolation=_SWSCALE[geometry.interpolation]
        )
    rgb = planar.to_ndarray()
    if rotation:
        rgb = np.rot90(rgb, k=-(rotation // 90))  # clockwise by `rotation`
    if geometry.on_device:
        return np.ascontiguousarray(rgb)
    x0, y0 = center_crop_box(new_w, new_h, geometry.crop)
    return np.ascontiguousarray(rgb[y0 : y0 + geometry.crop, x0 : x0 + geometry.crop])


_CORRUPT = "the frame decodes with missing data"


class _Landed(Exception):
    """This decode run cannot present the target (landed late, skipped it, or ended)."""


class _ExactDecoder:
    """Decodes frames forward and finds each target by its exact pts (or, for an ordinal
    index, by its position in a decode from the start)."""

    def __init__(
        self,
        path: str,
        index: VideoIndex,
        threads: int,
        deadline: float | None,
        report: Any,
        hwaccel: str | None = None,
    ) -> None:
        self.path, self.index, self.threads = path, index, threads
        self.deadline, self.report = deadline, report
        self.hwaccel = hwaccel  # None: software (asked for, or fallen back to)
        self.container: Any = None
        self.frames: Iterator[Any] | None = None
        self.position: int | None = None  # pts (or ordinal) of the last frame of this run
        self.prefer_dts = False  # pts seeks landed late once: seek by dts from now on
        # Seeks landed wrong until only a decode from the start worked (MPEG program streams
        # label the first frames after a seek with other frames' times): decode on instead.
        self.no_seeks = False
        self.at_start = False  # a fresh demuxer that has decoded nothing yet
        # After a seek: the first frame the index expects (None: this run began at byte 0,
        # or its first frame was accepted). A run that began with a seek is trusted only
        # while its timestamps are ones the index lists, in order.
        self.expect_first: int | None = None
        self.seeked = False
        self._reopen()

    def close(self) -> None:
        if self.container is not None:
            self.container.close()

    def _reopen(self) -> None:
        """A fresh demuxer at byte 0: the one start no container can get wrong."""
        if self.container is not None:
            self.container.close()
            self.report.seeks += 1
        self.container = self._open_hardware() if self.hwaccel else None
        if self.container is None:
            self.container = _open(self.path)
            self.stream = _video_stream(self.container, self.path, self.index.stream)
            self.stream.thread_type = "AUTO"
            self.stream.thread_count = self.threads
        self.frames, self.position = None, None
        self.at_start, self.seeked, self.expect_first = True, False, None

    def _open_hardware(self) -> Any:
        """The container with its video stream decoding on ``self.hwaccel``, or None (and the
        reason recorded) when the device or the codec cannot."""
        assert self.hwaccel is not None
        try:
            container = _open(self.path, self.hwaccel)
        except (av.error.FFmpegError, OSError) as e:  # no device, no driver, no permission
            self._to_software(f"{self.hwaccel} device unavailable: {e}")
            return None
        try:
            stream = _video_stream(container, self.path, self.index.stream)
        except VideoDecodeError:
            container.close()
            raise
        if not stream.codec_context.is_hwaccel:
            codec = stream.codec_context.name
            self._to_software(f"FFmpeg has no {self.hwaccel} decoder for {codec}")
            container.close()
            return None
        self.stream = stream
        self.report.decoder = self.hwaccel
        return container

    def _to_software(self, why: str) -> None:
        self.report.fallback = self.report.fallback or f"{self.hwaccel} fallback: {why}"
        self.report.decoder = "software"
        self.hwaccel = None

    def _seek(self, ts: int, key: int) -> None:
        """Seek to keyframe ``key`` (index into seek_pts) by ``ts``, its pts or dts."""
        self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
        self.report.seeks += 1
        self.frames, self.position = None, None
        self.at_start, self.seeked = False, True
        # The keyframe's own frame, or the first one presented after it (an edit list
        # discards the keyframe of a cut).
        pts = self.index.pts
        i = min(int(np.searchsorted(pts, self.index.seek_pts[key])), len(pts) - 1)
        self.expect_first = int(pts[i])

    def _next(self) -> Any:
        if self.frames is None:
            self.frames = _decoded(self.container, self.stream)
            self.at_start = False
        while True:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise VideoDecodeError(
                    "timeout", f"{self.path}: decoding took longer than the timeout"
                )
            frame = next(self.frames, None)
            if frame is None:
                raise _Landed("the stream ended")
            self.report.decoded += 1
            if self.index.ordinal:
                self.position = 0 if self.position is None else self.position + 1
                return frame
            if frame.pts is None:
                continue  # cannot be identified; a target it was would be found missing
            if self.position is not None and frame.pts <= self.position:
                if self.seeked:
                    raise _Landed(f"pts went back from {self.position} to {frame.pts} after a seek")
                raise VideoDecodeError(
                    "inexact",
                    f"{self.path}: the decoder presented pts {frame.pts} after {self.position}; "
                    "the container's timestamps are not in presentation order",
                )
            if self.expect_first is not None:
                if frame.pts > self.expect_first:  # landed late, or labelled late
                    raise _Landed(
                        f"the first frame after a seek is at pts {frame.pts}, "
                        f"the index expects {self.expect_first}"
                    )
                if frame.pts == self.expect_first:
                    self.expect_first = None
            self.position = frame.pts
            return frame

    def _forward_to(self, target: int) -> Any:
        """Decode on until the frame at ``target``; _Landed if this run passes it."""
        first = self.position is None
        while True:
            frame = self._next()
            here = self.position
            assert here is not None
            if here == target:
                if frame.is_corrupt:
                    raise _Landed(_CORRUPT)
                return frame
            if here > target:
                raise _Landed("landed past the target" if first else "skipped the target")
            if not self.index.ordinal and not self._listed(here):
                if self.seeked:
                    raise _Landed(f"an unlisted pts {here} after a seek")
                raise VideoDecodeError(
                    "inexact",
                    f"{self.path}: the decoder presents a frame at pts {here} that the "
                    "container does not list; its frame numbers cannot be trusted",
                )
            first = False

    def _listed(self, pts: int) -> bool:
        i = int(np.searchsorted(self.index.pts, pts))
        return i < len(self.index.pts) and int(self.index.pts[i]) == pts

    def frame_at(self, row: int) -> Any:
        """The decoded frame of index row ``row`` (rows asked for in ascending order). A
        hardware decoder that fails hands over to software, from a fresh start."""
        if self.hwaccel is None:
            return self._frame_at(row)
        try:
            return self._frame_at(row)
        except av.error.FFmpegError as e:
            self._to_software(f"the hardware decoder failed before frame {row}: {e}")
            self._reopen()
            return self._frame_at(row)

    def _frame_at(self, row: int) -> Any:
        ix = self.index
        if ix.ordinal:
            if self.position is not None and self.position >= row:
                self._reopen()
            try:
                return self._forward_to(row)
            except _Landed as e:
                raise self._missing(row, str(e)) from None
        target = int(ix.pts[row])
        why = ""
        landed_wrong = False
        for how, start in self._plans(target):
            if start is not None:
                start()
            try:
                frame = self._forward_to(target)
            except _Landed as e:
                why = str(e)
                self.frames, self.position = None, None
                if how not in ("on", "start"):
                    self.report.late_seeks += 1
                    landed_wrong = True
                if how == "pts":
                    self.prefer_dts = True
                continue
            if how == "start" and landed_wrong:
                self.no_seeks = True
            return frame
        raise self._missing(row, why)

    def _plans(self, target: int) -> list[tuple[str, Callable[[], None] | None]]:
        """Ways to reach ``target``, cheapest first: decode on from here (when no keyframe
        lies between), seek to its keyframe by pts, by dts, from the keyframe before, and
        finally decode from the start."""
        ix = self.index
        k = max(int(np.searchsorted(ix.seek_pts, target, side="right")) - 1, 0)
        plans: list[tuple[str, Callable[[], None] | None]] = []
        here = self.position
        # decode on: no keyframe between here and the target (or seeking does not work here)
        ahead = here is not None and here < target
        no_keyframe_between = here is not None and int(ix.seek_pts[k]) <= here
        if (ahead and (self.no_seeks or no_keyframe_between)) or (
            self.at_start and (k == 0 or self.no_seeks)
        ):
            plans.append(("on", None))
        if not self.no_seeks:
            if not self.prefer_dts:
                plans.append(("pts", partial(self._seek, int(ix.seek_pts[k]), k)))
            for j in range(k, max(k - 2, -1), -1):
                plans.append(("dts", partial(self._seek, int(ix.seek_dts[j]), j)))
        plans.append(("start", self._reopen))
        return plans

    def _missing(self, row: int, why: str) -> VideoDecodeError:
        ix = self.index
        at = f"frame {row} (pts {ix.seconds[row]:.6f} s)"
        if why == "the stream ended":
            return VideoDecodeError(
                "truncated",
                f"{self.path}: the stream ended before {at}, which the container lists "
                f"({ix.pts.size} frames); the file is cut short or damaged",
            )
        if why == _CORRUPT:
            return VideoDecodeError(
                "truncated", f"{self.path}: {at} is damaged (it decodes with missing data)"
            )
        return VideoDecodeError(
            "inexact",
            f"{self.path}: {at} is listed by the container but the decoder never presents it "
            f"exactly, not even decoding from the start ({why})",
        )


def decode_selected(
    path: str,
    index: VideoIndex,
    selected: np.ndarray,
    geometry: Geometry | tuple[Geometry, ...],
    deadline: float | None = None,
    chunk: int = 16,
    threads: int = 1,
    report: DecodeReport | None = None,
    hwaccel: str | None = None,
) -> Iterator[DecodedChunk]:
    """Yield the selected frames (ascending indices into ``index``), ``chunk`` at a time, each
    converted to every geometry given (one decode for several backbones), decoded on
    ``hwaccel`` (``cuda``) when it can, else in software (``report`` says which)."""
    if len(selected) == 0:
        raise VideoDecodeError("zero_frames", f"{path}: sampling selected no frames")
    geometries = (geometry,) if isinstance(geometry, Geometry) else geometry
    report = report if report is not None else DecodeReport()
    report.targets += len(selected)
    buf: list[tuple[np.ndarray, ...]] = []
    buf_idx: list[int] = []
    emitted = 0
    seconds = index.seconds
    decoder = _ExactDecoder(path, index, threads, deadline, report, hwaccel)
    try:
        for row in selected:
            frame = decoder.frame_at(int(row))
            rotation = _frame_rotation(frame, index)
            report.rotation = rotation
            buf.append(convert_views(frame, geometries, index.sar, rotation))
            buf_idx.append(int(row))
            if len(buf) >= chunk:
                emitted += len(buf)
                yield _chunk(buf, buf_idx, seconds)
                buf, buf_idx = [], []
    except av.error.FFmpegError as e:
        raise VideoDecodeError(
            "truncated", f"{path}: decoding failed after {emitted + len(buf)} frames ({e})"
        ) from None
    finally:
        decoder.close()
    if buf:
        yield _chunk(buf, buf_idx, seconds)


def _chunk(
    frames: list[tuple[np.ndarray, ...]], rows: list[int], seconds: np.ndarray
) -> DecodedChunk:
    idx = np.asarray(rows, np.int64)
    views = tuple(np.stack(view) for view in zip(*frames, strict=True))
    return DecodedChunk(views, idx, seconds[idx])
