"""Catalog snapshots: a reader's view (newest snapshot + newer commits) equals a rebuild from
every commit record, whatever the interleaving of commits, updates, failures and snapshots;
racing and killed compactions leave one valid newest snapshot and nothing trusted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from vidfeat.errors import StoreError
from vidfeat.store import (
    CommitRecord,
    FailureRecord,
    FeatureSet,
    VideoRecord,
    compact_store,
    gc_store,
    open_store,
    summarize,
    verify_store,
)
from vidfeat.store import featureset as featureset_module
from vidfeat.store.fs import LocalFS
from vidfeat.store.snapshot import manifest_seqs

from .helpers import new_featureset, video_values, write_part

IDS = [f"clips/{c}.mp4" for c in "abcdef"]


def commit(
    fset: FeatureSet,
    part_id: str,
    videos: list[tuple[str, int, int, int]],  # id, mtime_ns, size, n_rows
    failures: list[tuple[str, int, int]] = (),  # type: ignore[assignment]  # id, mtime_ns, size
    at: float = 1.0,
) -> CommitRecord:
    """A commit record alone (no part data): the catalog never opens parts."""
    record = CommitRecord(
        part_id=part_id,
        attempt="a1",
        path=f"parts/{part_id}-a1.zarr",
        part_format="zarr",
        n_rows=sum(n for *_, n in videos),
        committed_at=at,
        videos=tuple(
            VideoRecord(v, f"/in/{v}", size, mtime, n, sha256="00" * 32, label=v[6])
            for v, mtime, size, n in videos
        ),
        failures=tuple(
            FailureRecord(v, f"/in/{v}", "truncated", f"{v} is cut", size, mtime)
            for v, mtime, size in failures
        ),
        part_bytes=1000,
    )
    assert fset.stage_commit(record).publish()
    return record


def reference(commits: list[CommitRecord]) -> dict[str, tuple[Any, ...]]:
    """The rule, written the plain way: the highest (mtime_ns, size, success, committed_at,
    part_id, position in the commit) wins."""
    best: dict[str, tuple[tuple[Any, ...], tuple[Any, ...]]] = {}
    for c in commits:
        row = 0
        for seq, v in enumerate(c.videos):
            rank = (v.mtime_ns, v.size, True, c.committed_at, c.part_id, seq)
            what = ("ok", c.part_id, row, row + v.n_rows, v.label)
            row += v.n_rows
            if v.video_id not in best or rank > best[v.video_id][0]:
                best[v.video_id] = (rank, what)
        for seq, f in enumerate(c.failures, start=len(c.videos)):
            rank = (f.mtime_ns, f.size, False, c.committed_at, c.part_id, seq)
            if f.video_id not in best or rank > best[f.video_id][0]:
                best[f.video_id] = (rank, ("failed", f.kind, f.message))
    return {vid: what for vid, (_, what) in sorted(best.items())}


def view(fset: FeatureSet) -> dict[str, tuple[Any, ...]]:
    """What the catalog says about every id, point lookups and bulk table both."""
    cat = fset.catalog(refresh=True)
    out: dict[str, tuple[Any, ...]] = {}
    for vid in IDS:
        entry, failure = cat.get(vid), cat.failure(vid)
        assert entry is None or failure is None
        if entry is not None:
            out[vid] = ("ok", entry.part_id, entry.row_start, entry.row_stop, entry.record.label)
            assert cat.rows_of(vid) == (entry.part_path, entry.row_start, entry.row_stop)
        elif failure is not None:
            out[vid] = ("failed", failure.kind, failure.message)
    table = cat.table().to_pylist()
    assert [r["video_id"] for r in table] == sorted(out)
    for r in table:
        want = out[r["video_id"]]
        assert r["ok"] == (want[0] == "ok")
        if r["ok"]:
            assert (r["part_id"], r["row_start"], r["row_stop"], r["label"]) == want[1:]
    stats = cat.stats()
    oks = [w for w in out.values() if w[0] == "ok"]
    assert (stats.videos, stats.failures) == (len(oks), len(out) - len(oks))
    assert stats.rows == sum(w[3] - w[2] for w in oks)
    assert cat.video_ids() == [v for v, w in out.items() if w[0] == "ok"]
    return out


video = st.tuples(st.sampled_from(IDS), st.integers(0, 2), st.integers(1, 2), st.integers(0, 3))
failure = st.tuples(st.sampled_from(IDS), st.integers(0, 2), st.integers(1, 2))
op = st.one_of(
    st.tuples(
        st.just("commit"),
        st.lists(video, max_size=4, unique_by=lambda v: v[0]),
        st.lists(failure, max_size=2),
        st.sampled_from([1.0, 2.0, 3.0]),  # equal commit times exercise the tie rules
    ),
    st.just(("compact",)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=10))
def test_snapshot_plus_newer_commits_equals_a_full_rebuild(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp)
        fset = new_featureset(store)
        commits: list[CommitRecord] = []
        for i, o in enumerate(ops):
            if o[0] == "compact":
                fset.compact()
            else:
                commits.append(commit(fset, f"p{i:02d}", o[1], o[2], o[3]))
            assert view(fset) == reference(commits)  # the same reader, refreshed
        fresh = open_store(tmp).get_featureset("fs")  # another process
        assert view(fresh) == reference(commits)
        no_snapshots = open_store(tmp).get_featureset("fs")
        shutil.rmtree(Path(tmp) / "featuresets/fs/snapshots", ignore_errors=True)
        assert view(no_snapshots) == reference(commits)


def test_a_commit_landing_while_a_snapshot_is_written_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fset = new_featureset(open_store(tmp_path))
    commit(fset, "p0", [(IDS[0], 1, 1, 2)])
    real = featureset_module.write_snapshot

    def commit_meanwhile(*args: Any, **kw: Any) -> Any:
        commit(open_store(tmp_path).get_featureset("fs"), "p1", [(IDS[1], 1, 1, 3)], at=2.0)
        return real(*args, **kw)

    monkeypatch.setattr(featureset_module, "write_snapshot", commit_meanwhile)
    manifest = fset.compact()
    assert manifest is not None and manifest.commits == 1
    reader = open_store(tmp_path).get_featureset("fs")
    assert reader.video_ids() == [IDS[0], IDS[1]]
    assert len(reader.catalog().newer) == 1
    monkeypatch.undo()
    assert fset.compact() is not None  # the next snapshot covers it
    assert open_store(tmp_path).get_featureset("fs").catalog().newer == ()


def test_two_compactions_at_once_publish_one_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fset = new_featureset(open_store(tmp_path))
    for i in range(3):
        commit(fset, f"p{i}", [(IDS[i], 1, 1, 2)])
    both_ready = threading.Barrier(2, timeout=30)
    real = LocalFS.create_exclusive

    def racing_create(self: LocalFS, rel: str, data: bytes) -> bool:
        if "/snapshots/" in rel:
            both_ready.wait()  # both compactions have written their files for number 1
        return real(self, rel, data)

    monkeypatch.setattr(LocalFS, "create_exclusive", racing_create)
    results: list[Any] = []
    compactors = [open_store(tmp_path).get_featureset("fs") for _ in range(2)]
    threads = [threading.Thread(target=lambda f=f: results.append(f.compact())) for f in compactors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r is None for r in results) == [False, True]
    assert manifest_seqs(fset.fs, fset.prefix) == [1]
    names = sorted(p.name for p in (tmp_path / "featuresets/fs/snapshots").iterdir())
    assert len(names) == 2, names  # one manifest and its folder: the loser removed its files
    assert open_store(tmp_path).get_featureset("fs").video_ids() == IDS[:3]
    assert verify_store(open_store(tmp_path)) != []  # the commits' parts are fake here …
    assert not [p for p in verify_store(open_store(tmp_path)) if "snapshots" in p]  # … not it


KILLED_COMPACTION = """
import os, sys
from vidfeat.store import open_store
from vidfeat.store.fs import LocalFS
real = LocalFS.create_exclusive
def die(self, rel, data):
    if "/snapshots/" in rel:
        os._exit(9)  # killed after the snapshot's files, before its manifest
    return real(self, rel, data)
LocalFS.create_exclusive = die
open_store(sys.argv[1]).get_featureset("fs").compact()
"""


def test_a_killed_compaction_leaves_nothing_readers_trust(tmp_path: Path) -> None:
    fset = new_featureset(open_store(tmp_path))
    write_part(fset, "p0", {IDS[0]: 3, IDS[1]: 2})
    proc = subprocess.run([sys.executable, "-c", KILLED_COMPACTION, str(tmp_path)])
    assert proc.returncode == 9
    folder = tmp_path / "featuresets/fs/snapshots"
    assert [p.suffix for p in folder.iterdir()] == [""]  # files, no manifest
    reader = open_store(tmp_path).get_featureset("fs")
    assert reader.catalog().snapshot is None and reader.video_ids() == IDS[:2]
    assert verify_store(open_store(tmp_path)) == []
    removed = gc_store(open_store(tmp_path), older_than_s=0)
    assert [r.split("/")[-2] for r in removed] == ["snapshots"]
    assert list(folder.iterdir()) == []
    assert reader.compact() is not None and reader.catalog(refresh=True).snapshot is not None


def test_gc_drops_replaced_snapshots_by_age(tmp_path: Path) -> None:
    fset = new_featureset(open_store(tmp_path))
    for i in range(3):
        write_part(fset, f"p{i}", {IDS[i]: 2})
        assert fset.compact() is not None
    assert manifest_seqs(fset.fs, fset.prefix) == [1, 2, 3]
    assert gc_store(open_store(tmp_path), older_than_s=3600) == []  # replaced too recently
    removed = gc_store(open_store(tmp_path), older_than_s=0)
    assert sum(r.endswith(".json") for r in removed) == 2 and len(removed) == 4
    assert manifest_seqs(fset.fs, fset.prefix) == [3]
    reader = open_store(tmp_path).get_featureset("fs")
    assert reader.video_ids() == IDS[:3] and reader.catalog().newer == ()
    assert verify_store(open_store(tmp_path)) == []


def test_a_damaged_snapshot_is_reported_by_verify(tmp_path: Path) -> None:
    fset = new_featureset(open_store(tmp_path))
    write_part(fset, "p0", {IDS[0]: 2})
    manifest = fset.compact()
    assert manifest is not None
    path = tmp_path / "featuresets/fs" / manifest.videos.path
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = verify_store(open_store(tmp_path))
    assert any("damaged" in p and "compact --rebuild" in p for p in problems), problems
    reader = open_store(tmp_path).get_featureset("fs")
    with pytest.raises(StoreError, match=r"damaged.*compact --rebuild"):
        reader.catalog().get(IDS[0])  # every column of its row group: the damaged page too
    assert compact_store(open_store(tmp_path), rebuild=True)["fs"] is not None
    assert open_store(tmp_path).get_featureset("fs").video_ids() == IDS[:1]
    assert verify_store(open_store(tmp_path)) == []


def test_summaries_come_from_records_not_a_walk_of_the_data(tmp_path: Path) -> None:
    fset = new_featureset(open_store(tmp_path))
    write_part(fset, "p0", {IDS[0]: 300, IDS[1]: 2})
    record = fset.commits()[0]
    assert record.part_bytes == fset.fs.disk_usage(f"{fset.prefix}/{record.path}") > 0
    fset.compact()
    write_part(fset, "p1", {IDS[2]: 7})
    s = summarize(open_store(tmp_path).get_featureset("fs"))
    assert (s.videos, s.rows, s.parts) == (3, 309, 2)
    parts = tmp_path / "featuresets/fs/parts"
    assert s.bytes_on_disk == sum(f.stat().st_size for f in parts.rglob("*") if f.is_file())


OLD_STORE = Path(__file__).parent / "data" / "store-v1-0.1.0"


def test_compact_upgrades_a_format_1_store(tmp_path: Path) -> None:
    shutil.copytree(OLD_STORE, tmp_path / "s")
    old = open_store(tmp_path / "s", mode="r+")  # compacting writes ("r" would refuse)
    assert old.version == 1
    before = {n: old.get_featureset(n).load() for n in old.featuresets()}
    sizes = {n: summarize(old.get_featureset(n)).bytes_on_disk for n in old.featuresets()}
    written = compact_store(old)
    assert all(m is not None for m in written.values())
    marker = json.loads((tmp_path / "s/vidfeat.json").read_text())
    assert marker == {"format": "vidfeat-store", "version": 2}
    new = open_store(tmp_path / "s", mode="r")
    assert new.version == 2
    for name, loaded in before.items():
        fset = new.get_featureset(name)
        assert fset.catalog().snapshot is not None and fset.catalog().newer == ()
        again = fset.load()
        assert again.video_ids == loaded.video_ids
        np.testing.assert_array_equal(again.values, loaded.values)
        assert summarize(fset).bytes_on_disk == sizes[name]
    assert verify_store(new) == []


def test_duckdb_reads_a_snapshot_as_the_docs_say(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    fset = new_featureset(open_store(tmp_path))
    write_part(fset, "p0", {IDS[0]: 4, IDS[1]: 2}, label="x")
    with fset.writer("p1") as w:
        w.add_failure(FailureRecord(IDS[2], "/in/c", "truncated", "moov atom missing", 5, 1))
        w.commit()
    fset.compact()
    docs = (Path(__file__).parents[2] / "docs/store-format.md").read_text()
    sql = docs.split("```sql\n", 1)[1].split("```", 1)[0]
    glob = f"{tmp_path}/featuresets/fs/snapshots/*/videos.parquet"
    rows = duckdb.sql(sql.replace("STORE/featuresets/NAME/snapshots/*/videos.parquet", glob))
    assert sorted(rows.fetchall()) == [("stored", 2, 6), ("truncated", 1, 0)]


def test_reads_after_a_snapshot_return_the_stored_rows(tmp_path: Path) -> None:
    fset = new_featureset(open_store(tmp_path))
    write_part(fset, "p0", {IDS[0]: 3, IDS[1]: 2})
    fset.compact()
    write_part(fset, "p1", {IDS[1]: 4}, mtime_ns=2)  # an update after the snapshot
    reader = open_store(tmp_path).get_featureset("fs")
    np.testing.assert_array_equal(reader.read(IDS[1])[0], video_values(IDS[1], 4))
    np.testing.assert_array_equal(reader.read(IDS[0])[0], video_values(IDS[0], 3))
    loaded = reader.load()
    assert loaded.video_ids == IDS[:2] and loaded.values.shape[0] == 7
