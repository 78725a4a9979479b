"""Splitting one video's selected frames into segments that separate decoders can decode at
once: a long video with sparse sampling is otherwise decoded by one single-threaded decoder
while the other cores wait.

A segment starts at a keyframe (a GOP boundary between two targets), so each decoder seeks
there and decodes forward exactly as it would alone; frames are identified by their pts as
always, so where a segment starts changes nothing in what is found. Segments are balanced by
the frames each must decode (from a target's keyframe, or the previous target in its GOP, up
to it), and a video whose whole decode is short is not split: a decoder's probe and seek cost
more than they save there.
"""

from __future__ import annotations

import os

import numpy as np

# Frames to decode per segment, at least (10 s at 25 fps); the environment variable lets the
# tests split the short real-world fixtures.
MIN_SEGMENT_FRAMES = int(os.environ.get("VIDFEAT_MIN_SEGMENT_FRAMES", "250"))


def decode_costs(selected: np.ndarray, pts: np.ndarray, seek_pts: np.ndarray) -> np.ndarray:
    """Frames decoded to reach each target in order: from the previous target when it lies in
    the same GOP, else from the target's keyframe."""
    rows = np.asarray(selected, np.int64)
    gop = np.maximum(np.searchsorted(seek_pts, pts[rows], side="right") - 1, 0)
    keyframe_row = np.searchsorted(pts, seek_pts[gop]) if len(seek_pts) else np.zeros_like(rows)
    previous = np.concatenate([[-1], rows[:-1]])
    start = np.maximum(previous + 1, keyframe_row)
    return np.maximum(rows - start + 1, 1)


def split_targets(
    selected: np.ndarray,
    pts: np.ndarray,
    seek_pts: np.ndarray,
    parts: int,
    min_frames: int | None = None,
) -> list[np.ndarray]:
    """``selected`` (ascending rows) as up to ``parts`` consecutive, non-empty segments of
    about equal decode cost, each starting in a new GOP; one segment when splitting does not
    pay (too little to decode, or no GOP boundary between targets)."""
    rows = np.asarray(selected, np.int64)
    if parts <= 1 or len(rows) < 2:
        return [rows]
    costs = decode_costs(rows, pts, seek_pts)
    total = int(costs.sum())
    parts = min(parts, total // max(1, min_frames or MIN_SEGMENT_FRAMES))
    if parts <= 1:
        return [rows]
    gop = np.searchsorted(seek_pts, pts[rows], side="right")
    allowed = np.flatnonzero(gop[1:] != gop[:-1]) + 1  # a segment may start at these targets
    if len(allowed) == 0:
        return [rows]
    cost_before = np.cumsum(costs)[allowed - 1]
    wanted = total * np.arange(1, parts) / parts
    nearest = np.abs(cost_before[None, :] - wanted[:, None]).argmin(axis=1)
    starts = np.unique(allowed[nearest])
    return np.split(rows, starts)
