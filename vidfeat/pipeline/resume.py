"""Which inputs a run extracts, given what the feature set already holds.

A video whose fingerprint (size, mtime_ns) matches its stored entry is skipped. One whose
fingerprint changed is hashed: the same bytes (a copied dataset, a touched file) are the same
video and are skipped too; other bytes under a stored id are a *conflict*: two teams' different
``clips/x.mp4``, or an edited file. A conflict is refused and reported unless the user passes
``--update``, so a shared store is never overwritten by accident. So is an input that gives a
stored video another label or split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidfeat.hashing import file_sha256
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.store import Catalog, FailureRecord
from vidfeat.uris import is_url


@dataclass(slots=True)
class Plan:
    pending: list[VideoInput] = field(default_factory=list)
    skipped: int = 0
    same_content: int = 0  # skipped after hashing: new fingerprint, same bytes
    conflicts: list[FailureRecord] = field(default_factory=list)  # as report failures
    failed_before: set[str] = field(default_factory=set)  # inputs whose record is a failure


def plan_videos(
    videos: list[VideoInput], catalog: Catalog, retry_failed: bool, update: bool
) -> Plan:
    """One vectorized pass over the inputs; only inputs that need a closer look (a changed
    fingerprint, another label) get one, one at a time."""
    n = len(videos)
    cmp = catalog.compare(
        [v.video_id for v in videos],
        np.fromiter((v.size for v in videos), np.int64, n),
        np.fromiter((v.mtime_ns for v in videos), np.int64, n),
        [v.label for v in videos],
        [v.split for v in videos],
    )
    same = cmp.same_fingerprint
    failed = cmp.found & ~cmp.stored
    unchanged, changed = cmp.stored & same, cmp.stored & ~same
    pending = ~cmp.found | (failed & ~same)  # new, or a failed file that has changed since
    skipped = unchanged.copy()
    if retry_failed:
        pending |= failed & same
    else:
        skipped |= failed & same
    if update:
        pending |= changed | (unchanged & cmp.relabelled)
        skipped &= ~cmp.relabelled
    plan = Plan(skipped=int(skipped.sum()))
    plan.failed_before = {videos[i].video_id for i in np.flatnonzero(failed)}
    if update:
        return _with_pending(plan, videos, pending)
    for i in np.flatnonzero(unchanged & cmp.relabelled):
        v = videos[i]
        entry = catalog.get(v.video_id)
        assert entry is not None
        plan.conflicts.append(_conflict(v, _relabelled(v, entry.record.label, entry.record.split)))
    for i in np.flatnonzero(changed):
        v = videos[i]
        entry = catalog.get(v.video_id)
        assert entry is not None
        if _same_bytes(v, entry.record.sha256):
            plan.skipped += 1
            plan.same_content += 1
        else:
            what = (
                f"{v.path} differs from the video stored under this id (from "
                f"{entry.record.uri}, sha256 {entry.record.sha256[:12]}…)"
            )
            plan.conflicts.append(_conflict(v, what))
    return _with_pending(plan, videos, pending)


def _with_pending(plan: Plan, videos: list[VideoInput], pending: np.ndarray) -> Plan:
    plan.pending = [videos[i] for i in np.flatnonzero(pending)]
    return plan


def _relabelled(v: VideoInput, label: str | None, split: str | None) -> str:
    """What an input says differently from the stored video's label or split ('' if nothing):
    a label the input does not give (None) is no claim."""
    said = []
    if v.label is not None and v.label != label:
        said.append(f"label {v.label!r} (stored: {label!r})")
    if v.split is not None and v.split != split:
        said.append(f"split {v.split!r} (stored: {split!r})")
    return f"{v.path} is given " + " and ".join(said) if said else ""


def _conflict(v: VideoInput, what: str) -> FailureRecord:
    message = (
        f"{what}; the stored video is kept. Pass --update to replace it, or give this file "
        "another id."
    )
    return FailureRecord(v.video_id, v.path, "conflict", message, v.size, v.mtime_ns, v.label)


def _same_bytes(v: VideoInput, stored_sha256: str) -> bool:
    if is_url(v.path) or not stored_sha256:
        return False  # an object store's bytes would have to be downloaded: not the same
    try:
        return file_sha256(v.path) == stored_sha256
    except OSError:
        return False  # unreadable now: the worker records it (not_found)
