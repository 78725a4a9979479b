"""Writer leases: how a command that must not run beside an extract (``vidfeat rm``) sees one.

Commits say nothing about a run that is still decoding: a part's files appear only once its
videos are embedded. So a run that will write holds a lease while it runs, a create-only file
``writers/<id>.json`` that it rewrites every LEASE_REFRESH_S; a lease not refreshed for
LEASE_STALE_S is a killed run's and is ignored (``vidfeat gc`` removes it). Part attempts that
no commit references and that changed within LEASE_STALE_S count as a writer too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from vidfeat.store.fs import StoreFS

WRITERS = "writers"
LEASE_REFRESH_S = 20.0
LEASE_STALE_S = 120.0


@contextmanager
def writer_lease(fs: StoreFS, prefix: str) -> Iterator[str]:
    """Hold a lease on the feature set at ``prefix`` for the block; yields its path."""
    rel = f"{prefix}/{WRITERS}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
    fs.create_exclusive(rel, body.encode())
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(LEASE_REFRESH_S):
            with contextlib.suppress(OSError):  # a missed refresh: stale a little sooner
                fs.replace(rel, body.encode())

    thread = threading.Thread(target=refresh, name="vidfeat-lease", daemon=True)
    thread.start()
    try:
        yield rel
    finally:
        stop.set()
        thread.join()
        fs.remove(rel)


def active_writers(fs: StoreFS, prefix: str, referenced: set[str]) -> list[str]:
    """Fresh leases and recently changed uncommitted part attempts of the feature set
    (``referenced``: the part paths its commits name)."""
    found = [f"{WRITERS}/{n}" for n in fs.listdir(f"{prefix}/{WRITERS}")]
    found += [f"parts/{n}" for n in fs.listdir(f"{prefix}/parts")]
    active = []
    for rel in found:
        if rel in referenced:
            continue
        try:
            if fs.age_s(f"{prefix}/{rel}") < LEASE_STALE_S:
                active.append(rel)
        except FileNotFoundError:
            continue  # finished meanwhile
    return active


def stale_leases(fs: StoreFS, prefix: str, older_than_s: float) -> list[str]:
    """Leases not refreshed for ``older_than_s`` (and at least LEASE_STALE_S): killed runs'."""
    out = []
    for name in fs.listdir(f"{prefix}/{WRITERS}"):
        rel = f"{WRITERS}/{name}"
        try:
            if fs.age_s(f"{prefix}/{rel}") >= max(older_than_s, LEASE_STALE_S):
                out.append(rel)
        except FileNotFoundError:
            continue
    return out
