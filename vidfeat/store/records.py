"""The JSON records a store trusts: per-video records and failures inside commit records."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

from vidfeat.errors import StoreError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_part_path(path: str, part_id: str) -> str:
    """A commit's part path is input like any other: it must name a file or folder directly
    inside the feature set's ``parts/`` (relative, no ``..``, no absolute path, no URL)."""
    parts = path.split("/")
    if len(parts) != 2 or parts[0] != "parts" or not _NAME.match(parts[1]) or ".." in parts[1]:
        raise StoreError(
            f"part path {path!r} of part {part_id!r} is not inside this feature set's parts/ "
            "folder; the record was not written by vidfeat or was edited"
        )
    return path


def check_layout(layout: Any, part_id: str) -> dict[str, Any]:
    """A layout names files inside its part and byte offsets; anything else is refused."""

    def bad(why: str) -> StoreError:
        return StoreError(f"layout of part {part_id!r} is invalid ({why})")

    if not isinstance(layout, dict):
        raise bad("not an object")
    for name, m in layout.items():
        if name not in ("values", "pts") or not isinstance(m, dict):
            raise bad(f"unknown array {name!r}")
        files, file_of, offsets = m.get("files"), m.get("file_of"), m.get("offsets")
        rows = m.get("chunk_rows")
        if not isinstance(rows, int) or rows < 1 or not isinstance(files, list):
            raise bad(f"{name}: chunk_rows or files")
        for f in files:
            if not isinstance(f, str) or f.startswith("/") or ".." in f.split("/"):
                raise bad(f"{name}: file {f!r} is not inside the part")
        if not isinstance(file_of, list) or not isinstance(offsets, list):
            raise bad(f"{name}: file_of or offsets")
        if len(file_of) != len(offsets):
            raise bad(f"{name}: {len(file_of)} files for {len(offsets)} chunks")
        if any(not isinstance(i, int) or not 0 <= i < len(files) for i in file_of):
            raise bad(f"{name}: file index out of range")
        if any(not isinstance(o, int) or o < -1 for o in offsets):
            raise bad(f"{name}: offsets")
    return layout


def check_record_id(video_id: object) -> str:
    if not isinstance(video_id, str) or not video_id or _CONTROL.search(video_id):
        raise StoreError(f"bad video_id {video_id!r} (empty, not text, or control characters)")
    return video_id


def _from_dict(cls: type, d: dict[str, Any], what: str) -> Any:
    names = {f.name for f in fields(cls)}
    check_record_id(d.get("video_id"))
    try:
        return cls(**{k: v for k, v in d.items() if k in names})
    except TypeError as e:
        raise StoreError(f"Malformed {what} record {d!r}: {e}") from None


@dataclass(frozen=True, slots=True)
class VideoRecord:
    video_id: str
    uri: str
    size: int
    mtime_ns: int
    n_rows: int
    sha256: str = ""
    label: str | None = None
    split: str | None = None
    duration_s: float = 0.0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    codec: str = ""
    # Where the frames were decoded: software, cuda, or "software (cuda fallback: why)".
    # In the commit records only ("" in records older than it).
    decoder: str = ""
    # The container's index of the video stream the rows are from (-1 in older records), and
    # how its frame list was made: "demux", or "decoded (why)" when the packets could not be
    # trusted. In the commit records only.
    stream: int = -1
    index: str = ""
    # The engine that computed the rows: torch or openvino ("" in older records). Identity
    # only where engines' values differ, and then in the feature set's spec.
    engine: str = ""

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _VIDEO_FIELDS}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VideoRecord:
        rec: VideoRecord = _from_dict(cls, d, "video")
        return rec


@dataclass(frozen=True, slots=True)
class FailureRecord:
    video_id: str
    uri: str
    kind: str
    message: str
    size: int = -1
    mtime_ns: int = -1
    label: str | None = None

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FAILURE_FIELDS}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FailureRecord:
        rec: FailureRecord = _from_dict(cls, d, "failure")
        return rec


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


# asdict() deep-copies recursively and dominated commit time for parts of many videos.
_VIDEO_FIELDS = tuple(f.name for f in fields(VideoRecord))
_FAILURE_FIELDS = tuple(f.name for f in fields(FailureRecord))


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """commits/<part_id>.json: the only thing readers trust."""

    part_id: str
    attempt: str
    path: str  # part data, relative to the feature set folder
    part_format: str
    n_rows: int
    committed_at: float
    videos: tuple[VideoRecord, ...] = ()
    failures: tuple[FailureRecord, ...] = ()
    host: str = ""
    vidfeat_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    part_bytes: int = -1  # size of the part's files; -1 in records older than store format 2
    layout: dict[str, Any] = field(default_factory=dict)  # PartReader.layout(); {} if none

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["videos"] = [v.to_json() for v in self.videos]
        d["failures"] = [f.to_json() for f in self.failures]
        return d

    def encode(self) -> bytes:
        """Compact JSON bytes, as the record is stored."""
        return _compact(self.to_json()).encode()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CommitRecord:
        try:
            part_id, attempt = str(d["part_id"]), str(d["attempt"])
            for what, value in (("part_id", part_id), ("attempt", attempt)):
                if not _NAME.match(value):
                    raise StoreError(f"bad {what} {value!r}")
            return cls(
                part_id=part_id,
                attempt=attempt,
                path=check_part_path(str(d["path"]), part_id),
                part_format=str(d["part_format"]),
                n_rows=int(d["n_rows"]),
                committed_at=float(d["committed_at"]),
                videos=tuple(VideoRecord.from_json(v) for v in d.get("videos", [])),
                failures=tuple(FailureRecord.from_json(f) for f in d.get("failures", [])),
                host=str(d.get("host", "")),
                vidfeat_version=str(d.get("vidfeat_version", "")),
                extra=dict(d.get("extra", {})),
                part_bytes=int(d.get("part_bytes", -1)),
                layout=check_layout(d.get("layout", {}), part_id),
            )
        except StoreError as e:
            raise StoreError(f"Invalid commit record: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"Malformed commit record: {e}") from None
