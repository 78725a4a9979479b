"""The frame index of a video: which frames a sequential decode presents, when, and where a
decoder can start. Pure arithmetic on the demuxed packets; decode.py does the demuxing.

A packet is a presented frame unless the container flags it for discard (the pre-roll before
an MP4 edit list's start, a trailing frame cut off by a concat), because the decoder drops the
frames of discarded packets. Keyframes stay seek points even when discarded: the first frames
of a ``-ss … -c copy`` cut can only be decoded from the discarded keyframe before them.

Frames are identified by their timestamp when the container gives every presented frame a
distinct one in presentation order. Otherwise (raw Annex-B streams have none; AVI gives H.264
with B-frames timestamps in decode order; duplicate timestamps) the index is *ordinal*: frame k
is the k-th frame a decode from the start presents, with times from the frame rate.

Some packet lists do not say which frames a decoder presents (``index_doubt``): a stream that
starts mid-GOP (its leading packets are never presented), invisible frames (VP8 alt-ref
packets, which share the next frame's timestamp), duplicate or partial timestamps, and MPEG
program streams. For those, decode.py decodes the stream once and the index lists the frames
that decode presented (``build_index(..., presented=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from vidfeat.errors import VideoDecodeError

DEFAULT_RATE = Fraction(25)  # for raw streams that state no frame rate (FFmpeg's default too)


@dataclass(frozen=True, slots=True)
class Packets:
    """What the demux pass read, in decode order: one entry per non-empty packet."""

    pts: list[int | None]
    dts: list[int | None]
    keyframe: list[bool]
    discard: list[bool]
    duration: list[int]
    invisible: list[bool] | None = None  # decoded but never shown (VP8 show_frame = 0)


@dataclass(frozen=True, slots=True)
class VideoIndex:
    """Presented frames in presentation order, seek points, and the picture geometry."""

    pts: np.ndarray  # int64, ``time_base`` units, ascending: one entry per presented frame
    seek_pts: np.ndarray  # int64 pts of the keyframes (seek points), ascending
    seek_dts: np.ndarray  # int64 dts of the same keyframes (pts where the container has none)
    time_base: Fraction
    end_s: float  # when the last frame stops being shown
    width: int  # coded size
    height: int
    codec: str
    fps: float
    ordinal: bool = False  # frames identified by decode order, not by timestamp
    sar: Fraction = Fraction(1)  # sample (pixel) aspect ratio
    rotation: int = 0  # clockwise display rotation, known once a frame was decoded
    stream: int = 0  # the container's index of the video stream this index describes
    # "demux", or "decoded (<why>)" when the packets could not be trusted (index_doubt)
    source: str = "demux"

    @property
    def seconds(self) -> np.ndarray:
        # multiply then divide: float(time_base) alone is inexact (1/12800) and shifts frames
        return self.pts.astype(np.float64) * self.time_base.numerator / self.time_base.denominator

    @property
    def duration_s(self) -> float:
        return self.end_s - float(self.seconds[0]) if len(self.pts) else 0.0

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as players show it: width × SAR, then the display rotation."""
        w, h = max(1, round(self.width * self.sar)), self.height
        return (h, w) if self.rotation in (90, 270) else (w, h)

    def with_rotation(self, rotation: int) -> VideoIndex:
        return replace(self, rotation=rotation)


# Containers whose demuxer labels frames late or not at all often enough that their packet
# timestamps are checked by a decode (MPEG program streams: DVD .vob, .mpg).
_LATE_LABELLING = frozenset({"mpeg", "vob", "dvd", "svcd", "vcd"})


def index_doubt(packets: Packets, container_format: str) -> str:
    """Why the packets may not be the frames a decoder presents ("" when they are)."""
    if not packets.pts:
        return ""
    if not packets.keyframe[0]:
        return "the stream does not start with a keyframe"
    if packets.invisible and any(packets.invisible):
        return "the stream has invisible frames"
    first_key = packets.pts[0]
    stamps = [p for p, d in zip(packets.pts, packets.discard, strict=True) if not d]
    known = [p for p in stamps if p is not None]
    if first_key is not None and any(p < first_key for p in known):
        return "frames before the first keyframe"
    if known and len(known) < len(stamps):
        return "only some frames have timestamps"
    if len(set(known)) < len(known):
        return "two frames share a timestamp"
    if set(container_format.split(",")) & _LATE_LABELLING:
        return "MPEG program streams label frames unreliably"
    return ""


def build_index(
    path: str,
    packets: Packets,
    time_base: Fraction,
    rate: Fraction | None,
    reorders: bool,
    presented: tuple[list[int | None], list[int]] | None = None,
    **picture: object,
) -> VideoIndex:
    """Index from the demuxed packets. ``reorders``: the codec may present frames in another
    order than it decodes them (B-frames). ``presented``: the (pts, duration) of each frame a
    decode from the start presented, in order, when the packets could not be trusted; the index
    then lists exactly those. ``picture``: width, height, codec, sar, stream, source."""
    if presented is not None:
        stamps, durations = presented
        ordinal = any(s is None for s in stamps) or bool(
            np.any(np.diff(np.asarray(stamps, np.int64)) <= 0)
        )
    else:
        shown = [i for i, d in enumerate(packets.discard) if not d]
        stamps = [packets.pts[i] for i in shown]
        durations = [packets.duration[i] for i in shown]
        ordinal = _needs_ordinal(stamps, reorders)
    if not stamps:
        what = "every packet is flagged for discard" if packets.pts else "no packets"
        if presented is not None:
            what = "a decode presents none"
        raise VideoDecodeError("zero_frames", f"{path}: the video stream has no frames ({what})")
    if ordinal and (presented is not None or any(s is None for s in stamps)):
        time_base = 1 / (rate or DEFAULT_RATE)
        pts = np.arange(len(stamps), dtype=np.int64)
        last_duration = 1
    else:
        pts = np.sort(np.asarray(stamps, np.int64))
        last = max(range(len(stamps)), key=lambda i: stamps[i])  # type: ignore[arg-type, return-value]
        last_duration = durations[last] or _typical_gap(pts, rate, time_base)
    keys = [i for i, k in enumerate(packets.keyframe) if k]
    if ordinal or not keys:
        seek_pts = seek_dts = pts[:1]  # ordinal: decode from the start only
    else:
        key_pts = np.asarray([_stamp(packets, i) for i in keys], np.int64)
        key_dts = np.asarray([_stamp(packets, i, dts=True) for i in keys], np.int64)
        if presented is not None:  # a keyframe the decode never presented is no seek point
            shown_key = np.isin(key_pts, pts)
            key_pts, key_dts = key_pts[shown_key], key_dts[shown_key]
            if not len(key_pts):
                key_pts = key_dts = pts[:1]
        order = np.argsort(key_pts, kind="stable")
        seek_pts, seek_dts = key_pts[order], key_dts[order]
    return VideoIndex(
        pts=pts,
        seek_pts=seek_pts,
        seek_dts=seek_dts,
        time_base=Fraction(time_base),
        end_s=float((int(pts[-1]) + last_duration) * time_base),
        fps=float(rate) if rate else 0.0,
        ordinal=ordinal,
        **picture,  # type: ignore[arg-type]
    )


def _needs_ordinal(stamps: list[int | None], reorders: bool) -> bool:
    if any(s is None for s in stamps):
        return True
    values = np.asarray(stamps, np.int64)
    if len(np.unique(values)) < len(values):
        return True  # two frames at one time: a timestamp cannot tell them apart
    # A codec with B-frames whose timestamps never go back in decode order: the container
    # wrote decode times (AVI), not presentation times.
    return reorders and len(values) > 2 and bool(np.all(np.diff(values) > 0))


def _stamp(packets: Packets, i: int, dts: bool = False) -> int:
    first, second = (packets.dts[i], packets.pts[i]) if dts else (packets.pts[i], packets.dts[i])
    value = first if first is not None else second
    return int(value) if value is not None else 0


def _typical_gap(pts: np.ndarray, rate: Fraction | None, time_base: Fraction) -> int:
    if len(pts) > 1:
        return int(np.median(np.diff(pts)))
    return round(1 / (rate * time_base)) if rate else 0
