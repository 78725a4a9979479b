import numpy as np
import pytest

from vidfeat.config import SamplingConfig
from vidfeat.pipeline.sampling import center_crop_box, resize_dims, select_frames

PTS_25 = np.arange(100) / 25.0  # 4 s at 25 fps
END_25 = 4.0


def test_frames_mode_spreads_evenly_over_the_duration() -> None:
    got = select_frames(PTS_25, END_25, SamplingConfig(frames=4))
    assert got.tolist() == [12, 37, 62, 87]  # centres of four 1 s segments


def test_fps_mode_picks_frames_at_exact_timestamps() -> None:
    got = select_frames(PTS_25, END_25, SamplingConfig(mode="fps", fps=5))
    assert got.tolist() == list(range(0, 100, 5))


def test_stride_all_and_max_frames() -> None:
    assert select_frames(PTS_25, END_25, SamplingConfig(mode="stride", stride=30)).tolist() == [
        0,
        30,
        60,
        90,
    ]
    assert len(select_frames(PTS_25, END_25, SamplingConfig(mode="all"))) == 100
    capped = select_frames(PTS_25, END_25, SamplingConfig(mode="all", max_frames=5))
    assert capped.tolist() == [0, 25, 50, 74, 99]


def test_variable_frame_rate_uses_timestamps_not_indices() -> None:
    # 10 frames in the first second, then 1 frame per second for 4 s
    pts = np.concatenate([np.arange(10) / 10.0, 1.0 + np.arange(4)])
    got = select_frames(pts, 5.0, SamplingConfig(mode="fps", fps=1))
    assert got.tolist() == [0, 10, 11, 12, 13]  # one frame per second of *time*
    by_index = select_frames(pts, 5.0, SamplingConfig(mode="stride", stride=7))
    assert by_index.tolist() == [0, 7]


def test_short_video_gives_what_it_has_without_repeats() -> None:
    got = select_frames(np.arange(5) / 25.0, 0.2, SamplingConfig(frames=16))
    assert got.tolist() == [0, 1, 2, 3, 4]
    assert select_frames(np.zeros(0), 0.0, SamplingConfig()).tolist() == []


@pytest.mark.parametrize(
    ("w", "h", "s", "expect"),
    [(320, 240, 256, (341, 256)), (240, 320, 256, (256, 341)), (97, 63, 36, (55, 36))],
)
def test_resize_keeps_aspect(w: int, h: int, s: int, expect: tuple[int, int]) -> None:
    assert resize_dims(w, h, s) == expect
    x0, y0 = center_crop_box(*expect, min(expect))
    assert x0 >= 0 and y0 >= 0
