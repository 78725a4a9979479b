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


def plan_videos(
    videos: list[VideoInput], catalog: Catalog, retry_failed: bool, update: bool
) -> Plan:
    plan = Plan()
    for v in videos:
        stored = catalog.videos.get(v.video_id)
        failed = catalog.failures.get(v.video_id)
        if stored is not None and stored.record.fingerprint == v.fingerprint:
            relabelled = _relabelled(v, stored.record.label, stored.record.split)
            if relabelled and update:
                plan.pending.append(v)
                continue
            plan.skipped += 1
            if relabelled:
                plan.conflicts.append(_conflict(v, relabelled))
        elif stored is None and failed is not None and failed.fingerprint == v.fingerprint:
            plan.skipped += 0 if retry_failed else 1
            if retry_failed:
                plan.pending.append(v)
        elif stored is None or update:
            plan.pending.append(v)
        elif _same_bytes(v, stored.record.sha256):
            plan.skipped += 1
            plan.same_content += 1
        else:
            what = (
                f"{v.path} differs from the video stored under this id (from "
                f"{stored.record.uri}, sha256 {stored.record.sha256[:12]}…)"
            )
            plan.conflicts.append(_conflict(v, what))
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
