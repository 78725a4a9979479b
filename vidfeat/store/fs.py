"""Where a store's bytes live: a local (or network) folder, or an object store through fsspec.

The one operation that matters for safety is ``create_exclusive``: publish a small file only if
no file of that name exists yet, atomically. On POSIX that is a hard link of a fully written
temporary file (link fails with EEXIST); on S3 it is a PUT with ``If-None-Match: *``, which the
server refuses when the key exists. Neither is check-then-write, and readers never see a
half-written record.

Part files need a local path (h5py, direct reads). On object stores a part is written into a
local staging folder and uploaded before its commit record is created; readers download a part
once into a local cache. Parts are immutable (every attempt has a unique name), so the cache
never goes stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from vidfeat.errors import StoreError
from vidfeat.uris import is_remote, scheme, without_scheme


def local_size(path: Path) -> int:
    """Bytes of a local file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # removed while we walk
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte of ``data`` is written."""
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view) :]


class StoreFS(ABC):
    """A root plus relative '/'-separated paths."""

    url: str

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes: ...

    def read_many(self, rels: list[str]) -> list[bytes]:
        """The bytes of every file in ``rels``, in order (FileNotFoundError if one is gone)."""
        return [self.read_bytes(rel) for rel in rels]

    @abstractmethod
    def replace(self, rel: str, data: bytes) -> None:
        """Write ``rel`` whole, replacing what is there; readers see the old or the new bytes."""

    @abstractmethod
    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` unless it exists. True if this call created it."""

    def stage_exclusive(self, rel: str, data: bytes) -> StagedCreate:
        """``create_exclusive`` in two steps: this one does the slow part that nobody can see
        (on POSIX: the temporary file written and fsynced), ``publish()`` then creates ``rel``
        (or ``discard()`` drops it)."""
        return StagedCreate(lambda: self.create_exclusive(rel, data))

    def check_writable(self, rel: str) -> None:
        """Raise StoreError unless files can be created under ``rel``: a probe file, written
        and removed, since permissions (POSIX modes, bucket policies) are only known by trying."""
        probe = f"{rel}/.tmp-writable-{uuid.uuid4().hex}"
        try:
            self.create_exclusive(probe, b"")
            self.remove(probe)
        except OSError as e:
            raise StoreError(
                f"The store {self.url} is not writable ({e.strerror or type(e).__name__}: "
                f"{rel}): ask its owner for write access, or extract into a --store you can "
                "write."
            ) from None

    @abstractmethod
    def listdir(self, rel: str) -> list[str]:
        """Names directly under ``rel`` (no caching: a fresh commit must be visible)."""

    @abstractmethod
    def exists(self, rel: str) -> bool: ...

    @abstractmethod
    def remove(self, rel: str) -> None:
        """Remove a file or a whole directory tree; missing is fine."""

    @abstractmethod
    def age_s(self, rel: str) -> float:
        """Seconds since ``rel`` was last modified."""

    @abstractmethod
    def disk_usage(self, rel: str) -> int: ...

    @abstractmethod
    def staging_path(self, rel: str) -> Path:
        """A fresh local path to write ``rel`` at; ``publish`` then makes it visible."""

    @abstractmethod
    def publish(self, rel: str, staged: Path) -> None:
        """Make the file or folder written at ``staging_path(rel)`` appear at ``rel``."""

    @abstractmethod
    def local_copy(self, rel: str) -> Path:
        """A local path holding the immutable file or folder ``rel`` (FileNotFoundError if
        it does not exist)."""


class LocalFS(StoreFS):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def _p(self, rel: str) -> Path:
        return self.root / rel

    def staging_path(self, rel: str) -> Path:
        return self._p(rel)  # attempt names are unique: write in place

    def publish(self, rel: str, staged: Path) -> None:
        pass

    def local_copy(self, rel: str) -> Path:
        path = self._p(rel)
        if not path.exists():
            raise FileNotFoundError(str(path))
        return path

    def read_bytes(self, rel: str) -> bytes:
        return self._p(rel).read_bytes()

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        return self.stage_exclusive(rel, data).publish()

    def replace(self, rel: str, data: bytes) -> None:
        final = self._p(rel)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def stage_exclusive(self, rel: str, data: bytes) -> StagedCreate:
        final = self._p(rel)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileNotFoundError:  # the first record in this folder
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            try:
                write_all(fd, data)
                os.fsync(fd)  # the record's bytes are on disk before its name appears
            finally:
                os.close(fd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

        def link() -> bool:
            try:
                os.link(tmp, final)
                return True
            except FileExistsError:
                return False
            finally:
                tmp.unlink(missing_ok=True)

        return StagedCreate(link, lambda: tmp.unlink(missing_ok=True))

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self._p(rel)))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise StoreError(f"{self._p(rel)} is a file, expected a folder.") from None

    def exists(self, rel: str) -> bool:
        return self._p(rel).exists()

    def remove(self, rel: str) -> None:
        p = self._p(rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)

    def age_s(self, rel: str) -> float:
        return time.time() - self._p(rel).stat().st_mtime

    def disk_usage(self, rel: str) -> int:
        return local_size(self._p(rel))


class StagedCreate:
    """A ``create_exclusive`` waiting for its last step; one of ``publish`` or ``discard``."""

    def __init__(self, publish: Callable[[], bool], discard: Callable[[], None] = lambda: None):
        self._publish, self._discard = publish, discard

    def publish(self) -> bool:
        """Create the file unless it exists; True if this call created it."""
        return self._publish()

    def discard(self) -> None:
        self._discard()


OBJECT_STORE_SCHEMES = ("s3",)  # those with an atomic create-only PUT that vidfeat uses
SINGLE_OBJECT_SUFFIXES = (".h5", ".parquet")  # stored as one object, not a folder of them


class FsspecFS(StoreFS):
    """An object store through fsspec (S3 via s3fs). Credentials and endpoint come from the
    usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws, …)."""

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:
            raise StoreError(f"{url}: object stores need fsspec and s3fs.") from None
        fs_scheme = scheme(url)
        try:
            # No listing cache: a commit made by another process must be seen at once.
            self.fs = fsspec.filesystem(
                fs_scheme, use_listings_cache=False, skip_instance_cache=True
            )
        except ImportError:
            raise StoreError(
                f"{url}: the {fs_scheme}:// filesystem is not installed. "
                "Install it with: pip install 'vidfeat[s3]'."
            ) from None
        self.url = url.rstrip("/")
        self.root = without_scheme(self.url)
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.cache = _cache_root() / "parts" / key

    def _p(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    # max_concurrency=1: one GET, not a HEAD for the size and then ranged GETs.
    def read_bytes(self, rel: str) -> bytes:
        data: bytes = self.fs.cat_file(self._p(rel), max_concurrency=1)
        return data

    def read_many(self, rels: list[str]) -> list[bytes]:
        """Concurrent GETs (fsspec's batched ``cat``), one request per object."""
        if not rels:
            return []
        paths = [self._p(rel) for rel in rels]
        found = self.fs.cat(paths, max_concurrency=1, on_error="return")
        out = []
        for path in paths:
            data = found.get(path, FileNotFoundError(path))
            if isinstance(data, BaseException):
                raise data
            out.append(data)
        return out

    def replace(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._p(rel), data)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(self._p(rel), data, mode="create")  # If-None-Match: *
            return True
        except FileExistsError:
            return False
        except OSError as e:  # some servers answer 412 without naming the condition
            if "precondition" in str(e).lower() or "412" in str(e):
                return False
            raise

    def listdir(self, rel: str) -> list[str]:
        try:
            entries = self.fs.ls(self._p(rel), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(PurePosixPath(e).name for e in entries if e.rstrip("/") != self._p(rel))

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._p(rel)))

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._p(rel), recursive=True)

    def _objects(self, rel: str) -> list[dict[str, Any]]:
        found = self.fs.find(self._p(rel), detail=True)
        return list(found.values()) if isinstance(found, dict) else []

    def age_s(self, rel: str) -> float:
        times = [o["LastModified"] for o in self._objects(rel) if "LastModified" in o]
        if not times:
            raise FileNotFoundError(self._p(rel))
        return time.time() - max(t.timestamp() for t in times)

    def disk_usage(self, rel: str) -> int:
        return sum(int(o.get("size") or 0) for o in self._objects(rel))

    def staging_path(self, rel: str) -> Path:
        return Path(tempfile.mkdtemp(prefix="vidfeat-stage-")) / PurePosixPath(rel).name

    def publish(self, rel: str, staged: Path) -> None:
        try:
            if staged.is_dir():
                for path in sorted(p for p in staged.rglob("*") if p.is_file()):
                    self.fs.put_file(str(path), self._p(f"{rel}/{path.relative_to(staged)}"))
            else:
                self.fs.put_file(str(staged), self._p(rel))
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)

    def local_copy(self, rel: str) -> Path:
        target = self.cache / rel
        if target.exists():
            return target
        if PurePosixPath(rel).suffix in SINGLE_OBJECT_SUFFIXES:  # one GET, no listing
            objects: list[dict[str, Any]] = [{"name": self._p(rel)}]
        else:
            objects = self._objects(rel)
        if not objects:
            raise FileNotFoundError(self._p(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        prefix = self._p(rel)
        for o in objects:  # a single file, or every object under a part's folder
            name = o["name"]
            dest = tmp if name == prefix else tmp / PurePosixPath(name).relative_to(prefix)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.fs.get_file(name, str(dest))
            except FileNotFoundError:
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(True)
                raise
        try:
            os.rename(tmp, target)
        except OSError:  # another thread or process cached it first: same immutable bytes
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()
        return target


def _cache_root() -> Path:
    return Path(os.environ.get("VIDFEAT_CACHE", Path.home() / ".cache" / "vidfeat"))


def open_fs(url: str | Path) -> StoreFS:
    text = str(url)
    if is_remote(text):
        if scheme(text) not in OBJECT_STORE_SCHEMES:
            raise StoreError(
                f"Store URL scheme {scheme(text)!r} is not supported ({text}): vidfeat needs an "
                f"atomic create-only write, which it uses on {', '.join(OBJECT_STORE_SCHEMES)} and "
                "local or network-filesystem folders."
            )
        return FsspecFS(text)
    return LocalFS(text.removeprefix("file://"))
