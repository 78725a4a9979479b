"""What a rerun extracts: same fingerprint or same bytes skip; other bytes or another label under
a stored id are conflicts unless --update."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.store.helpers import new_featureset, video_values
from vidfeat.hashing import file_sha256
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.pipeline.resume import Plan, plan_videos
from vidfeat.store import VideoRecord, open_store
from vidfeat.store.catalog import Catalog


def stored_catalog(tmp_path: Path, video: Path) -> Catalog:
    fset = new_featureset(open_store(tmp_path / "s"))
    st = video.stat()
    record = VideoRecord(
        "a.mp4", str(video), st.st_size, st.st_mtime_ns, 2, file_sha256(video), "run", "train"
    )
    with fset.writer("p-1") as w:
        w.add_video(record, video_values("a.mp4", 2), np.arange(2) / 25, np.arange(2))
        w.commit()
    return fset.catalog(refresh=True)


def test_rerun_decisions(tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(b"video bytes")
    catalog = stored_catalog(tmp_path, video)
    st = video.stat()

    def plan(path: Path, label: str | None = "run", update: bool = False, mtime: int = 0) -> Plan:
        s = path.stat()
        v = VideoInput("a.mp4", str(path), label, "train", s.st_size, mtime or s.st_mtime_ns)
        return plan_videos([v], catalog, retry_failed=False, update=update)

    same = plan(video)
    assert (same.skipped, same.pending, same.conflicts) == (1, [], [])
    copied = plan(video, mtime=st.st_mtime_ns + 5)  # touched or copied: same bytes
    assert (copied.skipped, copied.same_content, copied.conflicts) == (1, 1, [])
    other = tmp_path / "other.mp4"
    other.write_bytes(b"other bytes")
    refused = plan(other)
    assert refused.pending == [] and refused.conflicts[0].kind == "conflict"
    assert "differs from the video stored" in refused.conflicts[0].message
    assert len(plan(other, update=True).pending) == 1
    relabelled = plan(video, label="jump")
    assert relabelled.skipped == 1 and "label 'jump' (stored: 'run')" in str(relabelled.conflicts)
    assert len(plan(video, label="jump", update=True).pending) == 1
    assert plan(video, label=None).conflicts == []  # no label given: no claim
