"""Concurrency with real processes: parallel writers, commit races, SIGKILL mid-write."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from vidfeat.store import gc_store, open_store, verify_store

from .helpers import make_spec, video_values, write_part

CTX = mp.get_context("spawn")


def _writer(root: str, part_id: str, videos: dict[str, int], barrier: object) -> None:
    store = open_store(root)
    fset = store.create_featureset("fs", make_spec())
    barrier.wait(120)  # spawn + imports can be slow on a loaded box  # type: ignore[attr-defined]
    result = write_part(fset, part_id, videos)
    sys.exit(0 if result.won else 3)  # type: ignore[attr-defined]


def _run_all(targets: list[tuple[str, dict[str, int]]], root: Path | str) -> list[int | None]:
    barrier = CTX.Barrier(len(targets))
    procs = [CTX.Process(target=_writer, args=(str(root), p, v, barrier)) for p, v in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    return [p.exitcode for p in procs]


def test_four_processes_write_different_parts(tmp_path: Path) -> None:
    targets = [(f"p{i}", {f"v{i}_{j}": 50 + j for j in range(5)}) for i in range(4)]
    assert _run_all(targets, tmp_path) == [0, 0, 0, 0]
    store = open_store(tmp_path)
    fset = store.get_featureset("fs")
    loaded = fset.load()
    assert len(loaded.video_ids) == 20
    for i, vid in enumerate(loaded.video_ids):
        np.testing.assert_array_equal(
            loaded.values[loaded.offsets[i] : loaded.offsets[i + 1]],
            video_values(vid, int(loaded.offsets[i + 1] - loaded.offsets[i])),
        )
    assert verify_store(store) == []


def test_two_processes_race_to_commit_one_part(tmp_path: Path) -> None:
    for attempt in range(3):  # repeat: the race must be decided the same way every time
        root = tmp_path / f"r{attempt}"
        codes = _run_all([("p0", {"v0": 300, "v1": 10}), ("p0", {"v0": 300, "v1": 10})], root)
        assert sorted(codes) == [0, 3], codes  # exactly one winner
        fset = open_store(root).get_featureset("fs")
        loaded = fset.load()
        assert sorted(loaded.video_ids) == ["v0", "v1"]
        assert loaded.values.shape[0] == 310
        assert len(list((root / "featuresets/fs/parts").iterdir())) == 1


def _slow_writer(root: str, ready: object) -> None:
    from vidfeat.store import zarr_part

    store = open_store(root)
    fset = store.create_featureset("fs", make_spec())
    original = zarr_part._ZarrSink.finish

    def finish_then_hang(self, *arrays):  # type: ignore[no-untyped-def]
        original(self, *arrays)
        ready.set()  # type: ignore[attr-defined]
        time.sleep(60)  # killed here: data written, commit not yet created

    zarr_part._ZarrSink.finish = finish_then_hang  # type: ignore[method-assign]
    write_part(fset, "p9", {"doomed": 40})


def test_sigkill_mid_write_leaves_nothing_visible_and_gc_cleans(tmp_path: Path) -> None:
    write_part(open_store(tmp_path).create_featureset("fs", make_spec()), "p0", {"kept": 3})
    ready = CTX.Event()
    proc = CTX.Process(target=_slow_writer, args=(str(tmp_path), ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
    proc.join(10)
    store = open_store(tmp_path)
    fset = store.get_featureset("fs")
    assert fset.video_ids() == ["kept"]
    assert verify_store(store) == []
    parts_dir = tmp_path / "featuresets/fs/parts"
    assert len(list(parts_dir.iterdir())) == 2  # the committed part and the orphan
    assert gc_store(store, older_than_s=3600) == []  # too young: could be a live writer
    removed = gc_store(store, older_than_s=0)
    # The orphan part, and the commit record it may have staged (written, never linked).
    parts = [r for r in removed if "/parts/" in r]
    assert len(parts) == 1 and "p9-" in parts[0]
    assert all("/commits/.tmp-" in r for r in removed if r not in parts)
    assert len(list(parts_dir.iterdir())) == 1
    assert fset.video_ids() == ["kept"]
