"""What a feature set holds, built from its commit records alone.

A video can appear in several commits (a file re-extracted after it changed, or two jobs that
raced on overlapping inputs). The newest fingerprint (mtime_ns, then size) wins, then the newest
commit; a success beats a failure of the same fingerprint. Stale duplicates are never returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vidfeat.store.records import CommitRecord, FailureRecord, VideoRecord


@dataclass(frozen=True, slots=True)
class VideoEntry:
    record: VideoRecord
    part_id: str
    part_path: str
    row_start: int  # rows of this video inside its part: [row_start, row_stop)
    row_stop: int
    committed_at: float


@dataclass(frozen=True, slots=True)
class Catalog:
    videos: dict[str, VideoEntry]
    failures: dict[str, FailureRecord]
    commits: tuple[CommitRecord, ...]

    @property
    def n_rows(self) -> int:
        return sum(e.row_stop - e.row_start for e in self.videos.values())

    def labels(self) -> dict[str, str | None]:
        return {vid: e.record.label for vid, e in self.videos.items()}


def build_catalog(commits: Iterable[CommitRecord]) -> Catalog:
    commits = tuple(sorted(commits, key=lambda c: (c.committed_at, c.part_id)))
    # key → (rank, entry); rank orders candidates, higher wins
    best: dict[str, tuple[tuple[int, int, int, float], VideoEntry | FailureRecord]] = {}
    for c in commits:
        row = 0
        for v in c.videos:
            entry = VideoEntry(v, c.part_id, c.path, row, row + v.n_rows, c.committed_at)
            row += v.n_rows
            rank = (v.mtime_ns, v.size, 1, c.committed_at)
            if v.video_id not in best or rank > best[v.video_id][0]:
                best[v.video_id] = (rank, entry)
        for f in c.failures:
            rank = (f.mtime_ns, f.size, 0, c.committed_at)
            if f.video_id not in best or rank > best[f.video_id][0]:
                best[f.video_id] = (rank, f)
    videos = {k: e for k, (_, e) in sorted(best.items()) if isinstance(e, VideoEntry)}
    failures = {k: e for k, (_, e) in sorted(best.items()) if isinstance(e, FailureRecord)}
    return Catalog(videos, failures, commits)


@dataclass(frozen=True, slots=True)
class Done:
    """What a planner needs: fingerprints of committed successes and of recorded failures."""

    succeeded: dict[str, tuple[int, int]]
    failed: dict[str, tuple[int, int]]

    def should_skip(self, video_id: str, fingerprint: tuple[int, int], retry_failed: bool) -> bool:
        if self.succeeded.get(video_id) == fingerprint:
            return True
        return not retry_failed and self.failed.get(video_id) == fingerprint


def done_from(catalog: Catalog) -> Done:
    return Done(
        {k: e.record.fingerprint for k, e in catalog.videos.items()},
        {k: f.fingerprint for k, f in catalog.failures.items()},
    )
