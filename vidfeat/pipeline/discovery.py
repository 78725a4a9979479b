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
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

from vidfeat.errors import InputError
from vidfeat.uris import is_remote, is_url, scheme, without_scheme

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
        ".mxf",
        ".vob",
        ".asf",
        ".f4v",
        ".dv",
        ".y4m",
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


def _walk(root: Path, label_from: str, source: str) -> Iterator[VideoInput]:
    """Every video under ``root``, folders and files in sorted order. Ids and labels are built
    per folder by string operations: pathlib per file was most of a rerun's planning
    (docs/performance.md, "Catalog")."""
    base = str(root)
    # followlinks=False: a symlink loop cannot trap the walk
    for dirpath, dirnames, files in os.walk(base, followlinks=False):
        dirnames.sort()
        rel_dir = "" if dirpath == base else os.path.relpath(dirpath, base).replace(os.sep, "/")
        prefix, label = _prefix_and_label(rel_dir, os.path.basename(dirpath), root.name, label_from)
        for name in sorted(files):
            if os.path.splitext(name)[1].lower() not in VIDEO_EXTENSIONS:
                continue
            vid = prefix + name
            if "\\" in vid:  # the only way a walked name is not already a canonical id
                vid = check_video_id(vid, source)
            full = os.path.join(dirpath, name)
            yield VideoInput(vid, full, label, None, *_stat(full))


def _prefix_and_label(
    rel_dir: str, folder_name: str, root_name: str, label_from: str
) -> tuple[str, str | None]:
    """The id prefix and the label of the files in one folder (``rel_dir``: relative to the
    input root, "" for the root itself, ``folder_name``: its own name). With labels from the
    parent folder, the label is the folder a file sits in, and a file directly in the root
    (``extract ucf/Biking``: the root is the class folder) keeps that folder as its id prefix,
    so ids match split lists (``Biking/v_Biking_g01_c01.avi``) whichever folder was passed.
    ``auto`` labels only files in subfolders of the root (the UCF101 layout)."""
    nested = rel_dir != ""
    labelled = label_from == "parent" or (label_from == "auto" and nested)
    root_prefix = f"{root_name}/" if labelled and root_name else ""
    prefix = f"{rel_dir}/" if nested else root_prefix
    return prefix, (folder_name or None) if labelled else None


def _id_and_label(path: Path, root: Path, label_from: str, source: str) -> tuple[str, str | None]:
    """A file found under ``root``: its id is its path relative to ``root`` (see
    ``_prefix_and_label``)."""
    rel = path.relative_to(root)
    rel_dir = "" if len(rel.parts) == 1 else rel.parent.as_posix()
    prefix, label = _prefix_and_label(rel_dir, path.parent.name, root.name, label_from)
    return check_video_id(prefix + rel.name, source), label


def _same_file(a: str, b: str) -> bool:
    if is_url(a) or is_url(b):
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


class _Found:
    """Videos by id. Two different files under one id are an error naming both; the same
    file reached twice (two inputs, a symlink, a repeated manifest row) is one video."""

    def __init__(self) -> None:
        self.videos: dict[str, VideoInput] = {}
        self.sources: dict[str, str] = {}

    def add(self, v: VideoInput, source: str) -> None:
        seen = self.videos.get(v.video_id)
        if seen is None:
            self.videos[v.video_id], self.sources[v.video_id] = v, source
            return
        if not _same_file(seen.path, v.path):
            raise InputError(
                f"Two videos get the id {v.video_id!r}: {seen.path} (from "
                f"{self.sources[v.video_id]}) and {v.path} (from {source}). Give them distinct "
                "ids: list them in a manifest with a video_id column, or pass their common "
                "parent folder as the input (ids are paths relative to it)."
            )
        if (seen.label, seen.split) != (v.label, v.split):
            raise InputError(
                f"{v.video_id!r} is listed twice with different labels or splits: "
                f"{seen.label!r}/{seen.split!r} ({self.sources[v.video_id]}) and "
                f"{v.label!r}/{v.split!r} ({source}). Keep one of the rows."
            )


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
    full_paths = []
    for n, row in enumerate(rows, start=2):
        raw = str(row.get("path") or "").strip()
        if not raw:
            raise InputError(f"Manifest {path}, row {n}: empty path.")
        joined = raw if is_url(raw) else os.path.normpath(os.path.join(path.parent, raw))
        full_paths.append(joined)
    derive = _manifest_ids(path.parent, full_paths)
    found = _Found()
    for n, (row, full) in enumerate(zip(rows, full_paths, strict=True), start=2):
        given = str(row.get("video_id") or "").strip()
        vid = check_video_id(given or derive[full], f"{path} row {n}")
        size, mtime = _stat(full)
        label = str(row["label"]).strip() if row.get("label") not in (None, "") else None
        split = str(row["split"]).strip() if row.get("split") not in (None, "") else None
        found.add(VideoInput(vid, full, label, split, size, mtime), f"{path} row {n}")
    return list(found.videos.values())


def _manifest_ids(folder: Path, paths: list[str]) -> dict[str, str]:
    """Ids for manifest rows without a video_id: the path relative to the manifest's folder
    when the file is inside it; otherwise (absolute or ``../`` paths, URLs) relative to the
    common folder of all such rows, so ``find /data -name '*.avi' > list.csv`` gives ids like
    ``Biking/v_Biking_g01_c01.avi``."""
    base = os.path.abspath(folder)
    ids, outside = {}, []
    for p in paths:
        local = not is_url(p)
        if local and os.path.commonpath([base, os.path.abspath(p)]) == base:
            ids[p] = PurePosixPath(os.path.relpath(os.path.abspath(p), base)).as_posix()
        else:
            outside.append(without_scheme(p) if not local else os.path.abspath(p))
    if outside:
        root = os.path.dirname(outside[0]) if len(outside) == 1 else os.path.commonpath(outside)
        for p in paths:
            if p not in ids:
                key = without_scheme(p) if is_url(p) else os.path.abspath(p)
                ids[p] = PurePosixPath(os.path.relpath(key, root)).as_posix()
    return ids


def _discover_url(url: str, label_from: str) -> list[VideoInput]:
    """Videos under an fsspec URL (s3://bucket/prefix, a glob of them, or one object). Ids are
    paths relative to the prefix; the fingerprint is (size, last-modified)."""
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{url}: URL inputs need fsspec (pip install 'vidfeat[s3]').") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, use_listings_cache=False, skip_instance_cache=True)
        url_scheme = scheme(url)
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
            nested = len(pp.relative_to(root).parts) > 1
            parent = label_from == "parent" or (label_from == "auto" and nested)
            label = pp.parent.name if parent else None
            videos.append(
                VideoInput(
                    check_video_id(rel, url),
                    f"{url_scheme}://{name}",
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


def _local_input(item: str) -> Path:
    """The path of a local input, or InputError if it is no video, folder, glob or manifest.
    Stats only, no listing: ``check_inputs`` runs it before anything slow starts."""
    p = Path(item.removeprefix("file://"))
    suffix = p.suffix.lower()
    if p.is_file() and suffix not in VIDEO_EXTENSIONS and suffix not in MANIFEST_EXTENSIONS:
        raise InputError(
            f"{item}: neither a video ({', '.join(sorted(VIDEO_EXTENSIONS))}) nor a manifest "
            f"({', '.join(MANIFEST_EXTENSIONS)}). Rename it or leave it out."
        )
    if not (p.is_file() or p.is_dir() or p.is_symlink() or glob.has_magic(str(p))):
        raise InputError(f"Input not found: {item!r} (not a file, folder, glob or manifest).")
    return p


def check_inputs(inputs: tuple[str, ...] | list[str]) -> None:
    """Fail at once on a local input that does not exist (a typo must not wait for workers to
    start); ``discover`` finds everything else."""
    for item in inputs:
        if not is_remote(item):
            _local_input(item)


def discover(inputs: tuple[str, ...] | list[str], label_from: str = "auto") -> list[VideoInput]:
    """All videos named by ``inputs``, sorted by id. Two different files under one id are an
    error; the same file reached twice is one video."""
    found = _Found()
    for item in inputs:
        add = partial(found.add, source=item)
        if is_remote(item):
            for v in _discover_url(item, label_from):
                add(v)
            continue
        p = _local_input(item)
        item = item.removeprefix("file://")
        if p.suffix.lower() in MANIFEST_EXTENSIONS and p.is_file():
            for v in read_manifest(p):
                add(v)
        elif p.is_dir():
            for v in _walk(p.absolute(), label_from, item):
                add(v)
        elif p.is_file() or p.is_symlink():
            vid, label = _id_and_label(p.absolute(), p.absolute().parent, label_from, item)
            add(VideoInput(vid, str(p), label, None, *_stat(str(p))))
        else:  # a glob (_local_input checked it)
            matches = sorted(glob.glob(item, recursive=True))
            root = Path(os.path.commonpath(matches)) if matches else Path(".")
            root = root.parent if root.is_file() else root
            for m in matches:
                mp = Path(m)
                if mp.is_file() and mp.suffix.lower() in VIDEO_EXTENSIONS:
                    vid, label = _id_and_label(mp.absolute(), root.absolute(), label_from, item)
                    add(VideoInput(vid, m, label, None, *_stat(m)))
            if not matches:
                raise InputError(f"Glob {item!r} matches no files.")
    if not found.videos:
        raise InputError(
            f"No videos found in {', '.join(inputs)} "
            f"(extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})."
        )
    return [found.videos[k] for k in sorted(found.videos)]
