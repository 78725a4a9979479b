"""Where a store's bytes live. The store talks to this small interface only, so that object
stores (fsspec) can follow the local filesystem without touching the rest of the package.

The one operation that matters for safety is ``create_exclusive``: publish a small file only if
no file of that name exists yet, atomically. On POSIX that is a hard link of a fully written
temporary file (link fails with EEXIST); readers never see a half-written record.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from vidfeat.errors import StoreError


class StoreFS(ABC):
    """A root plus relative '/'-separated paths."""

    url: str

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes: ...

    @abstractmethod
    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` unless it exists. True if this call created it."""

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
    def local_path(self, rel: str) -> Path:
        """A local filesystem path for formats that need one (h5py, direct reads)."""


class LocalFS(StoreFS):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def _p(self, rel: str) -> Path:
        return self.root / rel

    def local_path(self, rel: str) -> Path:
        return self._p(rel)

    def read_bytes(self, rel: str) -> bytes:
        return self._p(rel).read_bytes()

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        final = self._p(rel)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, final)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

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
        p = self._p(rel)
        if p.is_file():
            return p.stat().st_size
        total = 0
        for dirpath, _, files in os.walk(p):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # removed while we walk
                    total += os.stat(os.path.join(dirpath, name)).st_size
        return total


def open_fs(url: str | Path) -> StoreFS:
    text = str(url)
    if "://" in text and not text.startswith("file://"):
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f"Store URL scheme {scheme!r} is not supported yet ({text}). "
            "Use a local or network-filesystem folder."
        )
    return LocalFS(text.removeprefix("file://"))
