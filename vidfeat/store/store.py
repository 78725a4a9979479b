"""The store root: ``vidfeat.json`` plus ``featuresets/<name>/``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vidfeat.errors import FeatureSetNotFound, SpecMismatch, StoreError
from vidfeat.store.featureset import FeatureSet
from vidfeat.store.fs import StoreFS, open_fs
from vidfeat.store.spec import FeatureSetSpec, check_name
from vidfeat.version import __version__

STORE_MARKER = "vidfeat.json"
STORE_VERSION = 2  # 2: catalog snapshots (a version 1 store is read as is; compact upgrades it)
STORE_FORMAT: dict[str, str | int] = {"format": "vidfeat-store", "version": STORE_VERSION}


def creation_meta(description: str = "", tags: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """Who creates a feature set, with what command, and the user's own words about it:
    recorded in featureset.json beside the spec (``FeatureSet.provenance``)."""
    import getpass
    import os
    import socket
    import sys

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        user = str(os.getuid())
    return {
        "created_by": f"{user}@{socket.gethostname()}",
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else "",
        "description": description,
        "tags": list(tags),
    }


class Store:
    def __init__(self, fs: StoreFS, version: int = STORE_VERSION, read_only: bool = False) -> None:
        self.fs = fs
        self.url = fs.url
        self.version = version
        self.read_only = read_only  # opened with mode 'r': nothing is written through it

    def check_writable(self, what: str) -> None:
        if self.read_only:
            raise StoreError(
                f"Store {self.url} is open read-only (mode 'r'): cannot {what}. Open it with "
                "mode 'r+' (must exist) or 'a' (created if missing)."
            )

    def upgrade(self) -> None:
        """Mark the store as format 2 (after its feature sets have snapshots)."""
        self.check_writable("upgrade its format")
        if self.version < STORE_VERSION:
            self.fs.replace(STORE_MARKER, json.dumps(STORE_FORMAT).encode())
            self.version = STORE_VERSION

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def featuresets(self) -> list[str]:
        return [
            n
            for n in self.fs.listdir("featuresets")
            if self.fs.exists(f"featuresets/{n}/featureset.json")
        ]

    def create_featureset(
        self, name: str, spec: FeatureSetSpec, extra: dict[str, Any] | None = None
    ) -> FeatureSet:
        """Create ``name`` with ``spec``; the same spec again is a no-op, another is an error."""
        check_name("feature set name", name)
        if self.fs.exists(f"featuresets/{name}/featureset.json"):  # no write: read-only is fine
            return self._same_spec(self.get_featureset(name), spec)
        self.check_writable(f"create feature set {name!r}")
        meta = {
            "name": name,
            "spec": spec.to_json(),
            "config_hash": spec.config_hash(),
            "created_at": time.time(),
            "vidfeat_version": __version__,
            **(extra or {}),
        }
        data = json.dumps(meta, indent=1).encode()
        self.fs.check_writable("featuresets")
        self.fs.create_exclusive(f"featuresets/{name}/featureset.json", data)
        return self._same_spec(self.get_featureset(name), spec)

    def _same_spec(self, existing: FeatureSet, spec: FeatureSetSpec) -> FeatureSet:
        name = existing.name
        if existing.spec.config_hash() != spec.config_hash():
            diffs = "\n  ".join(existing.spec.diff(spec))
            raise SpecMismatch(
                f"Feature set {name!r} already exists in {self.url} with a different "
                f"configuration (existing != requested):\n  {diffs}\n"
                "Choose another --name, or drop --name to get one derived from the config."
            )
        return existing

    def get_featureset(self, name: str) -> FeatureSet:
        check_name("feature set name", name)
        rel = f"featuresets/{name}/featureset.json"
        try:
            meta = json.loads(self.fs.read_bytes(rel))
        except FileNotFoundError:
            have = ", ".join(self.featuresets()) or "none"
            raise FeatureSetNotFound(
                f"No feature set {name!r} in store {self.url}. Available: {have}."
            ) from None
        except ValueError as e:
            raise StoreError(f"{rel} is not valid JSON: {e}") from None
        spec = FeatureSetSpec.from_json(meta["spec"])
        if meta.get("config_hash") not in (None, spec.config_hash()):
            raise StoreError(f"{rel}: config_hash does not match its spec; the file was edited.")
        return FeatureSet(self.fs, name, spec, meta, read_only=self.read_only)


def open_store(url: str | Path, mode: str = "a") -> Store:
    """Open a store. mode 'r': it must exist, and nothing is written through it (reading never
    creates a file); 'r+': it must exist; 'a': created if missing."""
    if mode not in ("r", "r+", "a"):
        raise StoreError(f"Invalid store mode {mode!r}. Supported: r, r+, a.")
    fs = open_fs(url)
    try:
        marker = json.loads(fs.read_bytes(STORE_MARKER))  # one GET: no HEAD first
    except (FileNotFoundError, NotADirectoryError):  # a file in the way: said below
        marker = None
    except ValueError:
        raise StoreError(f"{fs.url}/{STORE_MARKER} is not valid JSON.") from None
    if marker is not None:
        if not isinstance(marker, dict) or marker.get("format") != "vidfeat-store":
            raise StoreError(f"{fs.url} is not a vidfeat store ({STORE_MARKER} says otherwise).")
        version = int(marker.get("version", 0))
        if version > STORE_VERSION:
            raise StoreError(
                f"Store {fs.url} has format version {version}; this vidfeat reads up to "
                f"{STORE_VERSION}. Upgrade vidfeat."
            )
        return Store(fs, version, read_only=mode == "r")
    if mode != "a":
        raise StoreError(
            f"No vidfeat store at {fs.url} (no {STORE_MARKER}): check the path, or open it "
            "with mode 'a' to create one."
        )
    # Ignore another creator's temporary marker file: two processes may create a store at once.
    foreign = [n for n in fs.listdir("") if not n.startswith(".tmp-") and n != STORE_MARKER]
    if foreign and not fs.exists("featuresets"):
        raise StoreError(
            f"{fs.url} exists, is not empty and is not a vidfeat store. "
            "Give an empty or new folder."
        )
    try:
        fs.create_exclusive(STORE_MARKER, json.dumps(STORE_FORMAT).encode())
    except OSError as e:
        raise StoreError(
            f"Cannot create a store at {fs.url} ({e.strerror or type(e).__name__}): "
            "give a --store in a folder you can write."
        ) from None
    return Store(fs)
