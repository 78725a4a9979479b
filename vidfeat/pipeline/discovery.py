"""Finding videos: files, folders (recursive), globs and CSV/JSONL manifests.

Every video gets a ``video_id``: its path relative to the input root (folder or manifest
folder), or the manifest's ``video_id`` column. Ids are checked so they cannot escape anything
when used as names (no absolute paths, no '..').
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vidfeat.errors import InputError

VIDEO_EXTENSIONS = frozenset(
    [
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".flv",
        ".wmv",
        ".3gp",
        ".ogv",
        ".gif",
        # raw elementary streams: no container, no timestamps (decoded in order)
        ".h264",
        ".264",
        ".hevc",
        ".265",
        ".m2v",
        ".mpv",
    ]
)
MANIFEST_EXTENSIONS = (".csv", ".jsonl")


@dataclass(frozen=True, slots=True)
class VideoInput:
    video_id: str
    path: str
    label: str | None = None
    split: str | None = None
    size: int = -1
    mtime_ns: int = -1

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.size, self.mtime_ns)


def check_video_id(video_id: str, source: str) -> str:
    p = PurePosixPath(video_id.replace("\\", "/"))
    if not video_id or p.is_absolute() or ".." in p.parts or "\x00" in video_id:
        raise InputError(
            f"Invalid video_id {video_id!r} in {source}: ids must be relative paths without "
            "'..' (they name things inside the store)."
        )
    return str(p)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1  # recorded as a failure (not_found) by the worker, not here


def _walk(root: Path) -> list[Path]:
    found = []
    # followlinks=False: a symlink loop cannot trap the walk
    for dirpath, dirnames, files in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found


def _label_of(path: Path, root: Path, label_from: str) -> str | None:
    if label_from != "parent":
        return None
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    return rel.parent.name or None


def read_manifest(path: Path) -> list[VideoInput]:
    rows: list[dict[str, str]]
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error) as e:
        raise InputError(f"Cannot read manifest {path}: {e}") from None
    if rows and "path" not in rows[0]:
        raise InputError(f"Manifest {path} has no 'path' column (columns: {', '.join(rows[0])}).")
    videos = []
    for n, row in enumerate(rows, start=2):
        raw = str(row.get("path") or "").strip()
        if not raw:
            raise InputError(f"Manifest {path}, row {n}: empty path.")
        full = raw if os.path.isabs(raw) or "://" in raw else str(path.parent / raw)
        vid = check_video_id(str(row.get("video_id") or raw).strip(), f"{path} row {n}")
        size, mtime = _stat(full)
        label = str(row["label"]).strip() if row.get("label") not in (None, "") else None
        split = str(row["split"]).strip() if row.get("split") not in (None, "") else None
        videos.append(VideoInput(vid, full, label, split, size, mtime))
    return videos


def _discover_url(url: str, label_from: str) -> list[VideoInput]:
    """Videos under an fsspec URL (s3://bucket/prefix, a glob of them, or one object). Ids are
    paths relative to the prefix; the fingerprint is (size, last-modified)."""
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: URL inputs need fsspec (pip install 'vidfeat[s3]').") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, use_listings_cache=False, skip_instance_cache=True)
        scheme = url.split("://", 1)[0]
        if glob.has_magic(path):  # ids relative to the matches' common folder, as for paths
            names = sorted(fs.glob(path))
            if not names:
                raise InputError(f"Glob {url!r} matches no objects.")
            common = PurePosixPath(os.path.commonpath(names))
            root = common.parent if len(names) == 1 else common
        elif fs.isdir(path):
            names, root = sorted(fs.find(path)), PurePosixPath(path)
        elif fs.exists(path):
            names, root = [path], PurePosixPath(path).parent
        else:
            raise InputError(f"Input not found: {url!r}.")
        videos = []
        for name in names:
            pp = PurePosixPath(name)
            if pp.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            info = fs.info(name)
            modified = info.get("LastModified") or info.get("mtime")
            mtime_ns = int(modified.timestamp() * 1e9) if hasattr(modified, "timestamp") else -1
            rel = pp.relative_to(root).as_posix()
            label = pp.parent.name if label_from == "parent" else None
            videos.append(
                VideoInput(
                    check_video_id(rel, url),
                    f"{scheme}://{name}",
                    label,
                    None,
                    int(info.get("size") or -1),
                    mtime_ns,
                )
            )
        return videos
    except InputError:
        raise
    except (OSError, ValueError) as e:
        raise InputError(f"Cannot list input {url!r}: {e}") from None


def discover(inputs: tuple[str, ...] | list[str], label_from: str = "manifest") -> list[VideoInput]:
    """All videos named by ``inputs``, deduplicated by video_id (first wins), sorted by id."""
    found: dict[str, VideoInput] = {}

    def add(v: VideoInput) -> None:
        found.setdefault(v.video_id, v)

    for item in inputs:
        if "://" in item and not item.startswith("file://"):
            for v in _discover_url(item, label_from):
                add(v)
            continue
        item = item.removeprefix("file://")
        p = Path(item)
        if p.suffix.lower() in MANIFEST_EXTENSIONS and p.is_file():
            for v in read_manifest(p):
                add(v)
        elif p.is_dir():
            for f in _walk(p):
                size, mtime = _stat(str(f))
                vid = check_video_id(f.relative_to(p).as_posix(), str(p))
                add(VideoInput(vid, str(f), _label_of(f, p, label_from), None, size, mtime))
        elif p.is_file() or p.is_symlink():
            size, mtime = _stat(str(p))
            add(
                VideoInput(
                    check_video_id(p.name, item),
                    str(p),
                    _label_of(p, p.parent, label_from),
                    None,
                    size,
                    mtime,
                )
            )
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            root = Path(os.path.commonpath(matches)) if matches else Path(".")
            root = root.parent if root.is_file() else root
            for m in matches:
                mp = Path(m)
                if mp.is_file() and mp.suffix.lower() in VIDEO_EXTENSIONS:
                    size, mtime = _stat(m)
                    vid = check_video_id(mp.relative_to(root).as_posix(), item)
                    add(VideoInput(vid, m, _label_of(mp, root, label_from), None, size, mtime))
            if not matches:
                raise InputError(f"Glob {item!r} matches no files.")
        else:
            raise InputError(f"Input not found: {item!r} (not a file, folder, glob or manifest).")
    if not found:
        raise InputError(
            f"No videos found in {', '.join(inputs)} "
            f"(extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})."
        )
    return [found[k] for k in sorted(found)]
