"""Splitting a video's targets into decode segments: every target once, in order, each
segment starting in a new GOP, balanced by frames to decode, no split where it cannot pay."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vidfeat.pipeline.segments import MIN_SEGMENT_FRAMES, decode_costs, split_targets


def _video(n_frames: int, gop: int) -> tuple[np.ndarray, np.ndarray]:
    pts = np.arange(n_frames, dtype=np.int64) * 512  # a 12800 time base at 25 fps
    return pts, pts[::gop]


def test_one_sparse_long_video_splits_into_balanced_segments_at_keyframes() -> None:
    pts, seek_pts = _video(4500, 250)  # 3 minutes at 25 fps, a keyframe every 10 s
    selected = np.arange(0, 4500, 25)  # --fps 1
    segments = split_targets(selected, pts, seek_pts, 2)
    assert len(segments) == 2
    np.testing.assert_array_equal(np.concatenate(segments), selected)
    first, second = (int(decode_costs(s, pts, seek_pts).sum()) for s in segments)
    assert abs(first - second) <= 250  # one GOP of granularity
    assert int(segments[1][0]) % 250 == 0  # the second decoder starts at a keyframe's frame


def test_short_decodes_and_single_gops_are_not_split() -> None:
    pts, seek_pts = _video(300, 250)
    assert len(split_targets(np.arange(0, 300, 25), pts, seek_pts, 4)) == 1  # 300 < 2 x 250
    pts, seek_pts = _video(2000, 5000)  # one GOP: nowhere to start a second decoder
    assert len(split_targets(np.arange(0, 2000, 25), pts, seek_pts, 2)) == 1
    assert len(split_targets(np.array([7]), pts, seek_pts, 2)) == 1


@settings(max_examples=200, deadline=None)
@given(
    n_frames=st.integers(2, 6000),
    gop=st.integers(1, 600),
    step=st.integers(1, 400),
    parts=st.integers(1, 8),
    data=st.data(),
)
def test_segments_cover_every_target_once_in_order(
    n_frames: int, gop: int, step: int, parts: int, data: st.DataObject
) -> None:
    pts, seek_pts = _video(n_frames, gop)
    first = data.draw(st.integers(0, n_frames - 1))
    selected = np.arange(first, n_frames, step)
    segments = split_targets(selected, pts, seek_pts, parts)
    assert 1 <= len(segments) <= max(parts, 1)
    assert all(len(s) for s in segments)
    np.testing.assert_array_equal(np.concatenate(segments), selected)
    for before, after in itertools.pairwise(segments):
        assert int(before[-1]) // gop != int(after[0]) // gop  # a new GOP
    total = int(decode_costs(selected, pts, seek_pts).sum())
    assert len(segments) <= max(1, total // MIN_SEGMENT_FRAMES)
