"""A hostile corpus through the whole pipeline: every good file is extracted, every bad one is
recorded with its reason, nothing hangs (pytest-timeout is the watchdog, the per-video timeout
the mechanism)."""

from __future__ import annotations

import os
import shutil
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import MakeVideo, index_frame, rotate_mp4
from tests.pipeline.test_extract import config
from vidfeat.pipeline.runner import extract
from vidfeat.pipeline.sandbox import CRASH_ENV
from vidfeat.store import open_store, verify_store

ROOT = os.geteuid() == 0


def _claim_long_duration(src: Path, dst: Path) -> None:
    """Patch the Matroska Duration element (ID 0x4489, 8-byte float) to about 11 days."""
    data = bytearray(src.read_bytes())
    pos = data.find(b"\x44\x89\x88")
    assert pos > 0
    data[pos + 3 : pos + 11] = struct.pack(">d", 1e9)
    dst.write_bytes(bytes(data))


def _vfr(path: Path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv444p"
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate([0, 40, 80, 1000, 1040, 3000]):
            frame = av.VideoFrame.from_ndarray(index_frame(i, 64, 96), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture
def corpus(
    tmp_path: Path, make_video: MakeVideo, broken_files: dict[str, tuple[Path, str]]
) -> tuple[Path, set[str], dict[str, str]]:
    """(folder, good file names, bad file name → expected kind)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    good = {
        "single_frame.mp4": make_video(n=1, name="single_frame", folder=folder),
        "tiny_16x16.mp4": make_video(n=8, h=16, w=16, name="tiny_16x16", folder=folder),
        "uhd_4k.mp4": make_video(n=2, h=2160, w=3840, name="uhd_4k", folder=folder),
        "odd_33x17.mkv": make_video(n=8, h=17, w=33, codec="ffv1", name="odd_33x17", folder=folder),
        "tenbit.mkv": make_video(n=8, codec="h264_10bit", name="tenbit", folder=folder),
        "yuv444.mkv": make_video(n=8, codec="ffv1", name="yuv444", folder=folder),
        "clip with spaces ü 名.mp4": make_video(n=8, name="clip with spaces ü 名", folder=folder),
    }
    source = make_video(n=8)
    rotate_mp4(source, folder / "rotated.mp4")
    _claim_long_duration(make_video(n=8, codec="ffv1"), folder / "claims_11_days.mkv")
    _vfr(folder / "vfr.mkv")
    good_names = {*good, "rotated.mp4", "claims_11_days.mkv", "vfr.mkv"}

    bad = {}
    for path, kind in broken_files.values():
        if path.exists():
            shutil.copy(path, folder / path.name)
            bad[path.name] = kind
    os.symlink("loop_b.mp4", folder / "loop_a.mp4")
    os.symlink("loop_a.mp4", folder / "loop_b.mp4")
    bad |= {"loop_a.mp4": "not_found", "loop_b.mp4": "not_found"}
    unreadable = make_video(n=8, name="unreadable", folder=folder)
    unreadable.chmod(0)
    if ROOT:  # root reads anything: the file is good
        good_names.add(unreadable.name)
    else:
        bad[unreadable.name] = "not_found"
    assert len(good_names) + len(bad) >= 15
    return folder, good_names, bad


@pytest.mark.slow
def test_hostile_corpus(
    corpus: tuple[Path, set[str], dict[str, str]],
    tmp_path: Path,
    make_video: MakeVideo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, good, bad = corpus
    # A decoder that segfaults on one file (injected: see vidfeat/pipeline/sandbox.py) costs
    # that file only; the worker and every other video carry on.
    monkeypatch.setenv(CRASH_ENV, "segfaults_the_decoder")
    make_video(n=8, name="segfaults_the_decoder", folder=folder)
    bad = bad | {"segfaults_the_decoder.mp4": "crashed"}
    store = tmp_path / "store"
    report = extract(config(folder, store, label_from="manifest", timeout_s=60.0, workers=2))
    failed = {f.video_id: f.kind for f in report.failures}
    assert failed == bad, report.failures
    assert all(f.message for f in report.failures)
    fset = open_store(store).get_featureset(report.featureset)
    assert set(fset.video_ids()) == good
    assert verify_store(open_store(store)) == []
    for vid in good:
        values, _ = fset.read(vid)
        assert len(values) >= 1 and np.isfinite(values.astype(np.float32)).all()
    assert len(fset.read("single_frame.mp4")[0]) == 1  # shorter than asked: what it has
    record = fset.catalog().get("claims_11_days.mkv").record
    assert record.duration_s < 1.0  # from the frames, not the header's claim
