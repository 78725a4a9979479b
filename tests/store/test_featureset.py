"""Contract tests: every part format runs the same suite (style.md: StoreTests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidfeat.errors import (
    ConfigError,
    FeatureSetNotFound,
    SpecMismatch,
    StoreError,
    ValueRangeError,
    VideoNotFound,
)
from vidfeat.store import (
    FailureRecord,
    LazyFeatures,
    LoadedFeatures,
    VideoRecord,
    featureset,
    open_store,
    verify_store,
)
from vidfeat.store.formats import get_format

from .helpers import DIM, make_spec, new_featureset, video_values, write_part


def assert_same_videos(lazy: LazyFeatures, loaded: LoadedFeatures) -> None:
    """The lazy rows of every video equal the loaded ones (the two orders differ)."""
    values = lazy.values.compute()
    assert sorted(lazy.video_ids) == sorted(loaded.video_ids)
    at = {v: i for i, v in enumerate(loaded.video_ids)}
    for i, vid in enumerate(lazy.video_ids):
        j = at[vid]
        np.testing.assert_array_equal(
            values[lazy.offsets[i] : lazy.offsets[i + 1]],
            loaded.values[loaded.offsets[j] : loaded.offsets[j + 1]],
        )
        assert lazy.labels[i] == loaded.labels[j]


class StoreContract:
    part_format: str

    def test_roundtrip_read_and_load(self, tmp_path: Path) -> None:
        store = open_store(tmp_path / "s")
        fset = new_featureset(store, part_format=self.part_format)
        parts = {
            "p0": {"a/v0.mp4": 5, "a/v1.mp4": 1},
            "p1": {"b/v2.mp4": 700, "b/v3.mp4": 3},
            "p2": {},
        }
        for pid, vids in parts.items():
            result = write_part(fset, pid, vids)
            assert result.won  # type: ignore[attr-defined]
        want = {v: n for vids in parts.values() for v, n in vids.items()}
        loaded = fset.load()
        assert sorted(loaded.video_ids) == sorted(want)
        for i, vid in enumerate(loaded.video_ids):
            rows = loaded.values[loaded.offsets[i] : loaded.offsets[i + 1]]
            np.testing.assert_array_equal(rows, video_values(vid, want[vid]))
            np.testing.assert_array_equal(
                loaded.pts[loaded.offsets[i] : loaded.offsets[i + 1]], np.arange(want[vid]) / 25
            )
            values, pts = fset.read(vid)
            np.testing.assert_array_equal(values, video_values(vid, want[vid]))
            assert len(pts) == want[vid]
        subset = fset.load(["b/v3.mp4", "a/v0.mp4"])
        assert subset.video_ids == ["b/v3.mp4", "a/v0.mp4"]
        np.testing.assert_array_equal(subset.values[:3], video_values("b/v3.mp4", 3))
        lazy = fset.to_dask()
        assert lazy.values.shape == (sum(want.values()), DIM)
        assert_same_videos(lazy, fset.load())
        assert verify_store(store) == []

    def test_first_commit_wins_and_loser_cleans_up(self, tmp_path: Path) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        first = write_part(fset, "p0", {"v0": 4})
        second = write_part(fset, "p0", {"v0": 4, "v9": 2})
        assert first.won and not second.won  # type: ignore[attr-defined]
        assert fset.video_ids() == ["v0"]
        parts = list((tmp_path / "featuresets/fs/parts").iterdir())
        assert len(parts) == 1, "the losing attempt must remove its data"

    def test_newest_fingerprint_wins_and_duplicates_are_not_returned(self, tmp_path: Path) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        write_part(fset, "old", {"v0": 4, "v1": 2}, mtime_ns=1)
        write_part(fset, "new", {"v0": 6}, mtime_ns=2)
        write_part(fset, "same", {"v1": 2}, mtime_ns=1)  # an identical duplicate
        cat = fset.catalog(refresh=True)
        entry = cat.get("v0")
        assert entry is not None and entry.part_id == "new"
        assert fset.read("v0")[0].shape == (6, DIM)
        loaded = fset.load()
        assert sorted(loaded.video_ids) == ["v0", "v1"]
        assert loaded.values.shape[0] == 6 + 2

    def test_to_dask_has_a_block_per_run_of_rows_in_a_part(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        write_part(fset, "p0", {"a": 3, "b": 4, "c": 5}, mtime_ns=1)
        write_part(fset, "p1", {"d": 2, "e": 6}, mtime_ns=1)
        lazy = fset.to_dask()
        assert lazy.values.numblocks == (2, 1)
        assert_same_videos(lazy, fset.load())
        write_part(fset, "p2", {"b": 1}, mtime_ns=2)  # a newer b: p0 keeps a and c, apart
        lazy = fset.to_dask()
        assert lazy.values.shape == (3 + 5 + 2 + 6 + 1, DIM)
        assert_same_videos(lazy, fset.load())
        assert lazy.values.numblocks[0] == 4  # p0 twice, p1, p2: no rows of the old b
        monkeypatch.setattr(featureset, "TO_DASK_BLOCK_BYTES", 2 * DIM * 2)  # 2 rows a block
        lazy = fset.to_dask()
        assert max(lazy.values.chunks[0]) == 2
        assert_same_videos(lazy, fset.load())

    def test_to_dask_and_load_group_by_part_whatever_the_id_order(self, tmp_path: Path) -> None:
        # Later runs add ids that sort between the earlier ones: a block per video before.
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        write_part(fset, "p0", {f"v{i:02d}0": 2 for i in range(20)})
        write_part(fset, "p1", {f"v{i:02d}5": 3 for i in range(20)})
        lazy = fset.to_dask()
        assert lazy.values.numblocks[0] == 2
        loaded = fset.load()
        assert loaded.video_ids == sorted(loaded.video_ids)
        assert_same_videos(lazy, loaded)
        for i, vid in enumerate(loaded.video_ids):
            rows = loaded.values[loaded.offsets[i] : loaded.offsets[i + 1]]
            np.testing.assert_array_equal(rows, video_values(vid, 2 if vid.endswith("0") else 3))

    def test_load_reads_uncompressed_parts_without_opening_them(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        write_part(fset, "p0", {"a": 3, "b": 4})
        fset.compact()
        write_part(fset, "p1", {"c": 2})  # layouts from the snapshot and from a newer record
        want = fset.load()
        reader = open_store(tmp_path).get_featureset("fs")
        fmt = get_format(self.part_format)
        monkeypatch.setattr(fmt, "open", lambda path: pytest.fail(f"opened {path}"))
        got = reader.load()
        assert got.video_ids == want.video_ids == ["a", "b", "c"]
        np.testing.assert_array_equal(got.values, want.values)
        np.testing.assert_array_equal(got.pts, want.pts)
        monkeypatch.undo()
        assert verify_store(open_store(tmp_path)) == []

    def test_failures_are_recorded_and_superseded_by_success(self, tmp_path: Path) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        with fset.writer("p0") as w:
            w.add_failure(FailureRecord("bad.mp4", "/x/bad.mp4", "truncated", "moov missing", 9, 1))
            w.commit()
        done = fset.done()
        assert done.should_skip("bad.mp4", (9, 1), retry_failed=False)
        assert not done.should_skip("bad.mp4", (9, 1), retry_failed=True)
        assert not done.should_skip("bad.mp4", (9, 2), retry_failed=False)  # file changed
        with pytest.raises(VideoNotFound, match="truncated: moov missing"):
            fset.read("bad.mp4")
        with fset.writer("p1") as w:
            rec = VideoRecord("bad.mp4", "/x/bad.mp4", size=9, mtime_ns=1, n_rows=2)
            w.add_video(rec, np.ones((2, DIM)), np.zeros(2), np.zeros(2, np.int64))
            w.commit()
        cat = fset.catalog(refresh=True)
        assert cat.get("bad.mp4") is not None and cat.failure("bad.mp4") is None

    def test_float16_overflow_is_an_error_not_inf(self, tmp_path: Path) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        rec = VideoRecord("v", "/v", 1, 1, n_rows=1)
        w = fset.writer("p0")
        with pytest.raises(ValueRangeError, match="--dtype float32"):
            w.add_video(rec, np.full((1, DIM), 1e6), np.zeros(1), np.zeros(1, np.int64))
        w.abort()
        store = open_store(tmp_path)
        f32 = store.create_featureset("f32", make_spec(self.part_format, dtype="float32"))
        with f32.writer("p0") as w:
            w.add_video(rec, np.full((1, DIM), 1e6), np.zeros(1), np.zeros(1, np.int64))
            w.commit()
        assert f32.read("v")[0].dtype == np.float32
        assert float(f32.read("v")[0][0, 0]) == 1e6

    @pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, -np.nan])
    def test_nan_and_inf_are_refused_and_the_part_goes_on(self, tmp_path: Path, bad: float) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        with fset.writer("p0") as w:
            for dtype in (np.float16, np.float32):
                rows = np.full((3, DIM), 65504.0, dtype)  # the largest float16 is fine
                rows[2, DIM - 1] = bad
                rec = VideoRecord(f"bad-{dtype.__name__}", "/v", 1, 1, n_rows=3)
                with pytest.raises(ValueRangeError, match="NaN or inf"):
                    w.add_video(rec, rows, np.zeros(3), np.zeros(3, np.int64))
            write_ok = VideoRecord("ok", "/ok", 1, 1, n_rows=2)
            w.add_video(write_ok, video_values("ok", 2), np.zeros(2), np.zeros(2, np.int64))
            w.commit()
        assert fset.video_ids() == ["ok"]
        np.testing.assert_array_equal(fset.read("ok")[0], video_values("ok", 2))

    def test_exception_in_writer_block_leaves_nothing(self, tmp_path: Path) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)

        def die_mid_part() -> None:
            with fset.writer("p0") as w:
                w.add_video(VideoRecord("v", "/v", 1, 1, 1), np.ones((1, DIM)), [0.0], [0])
                raise RuntimeError("worker died")

        with pytest.raises(RuntimeError, match="worker died"):
            die_mid_part()
        assert fset.video_ids() == []
        assert not list((tmp_path / "featuresets/fs/parts").glob("*"))

    def test_verify_reports_damage(self, tmp_path: Path) -> None:
        store = open_store(tmp_path)
        fset = new_featureset(store, part_format=self.part_format)
        write_part(fset, "p0", {"v0": 4})
        write_part(fset, "p1", {"v1": 4})
        commit = json.loads((tmp_path / "featuresets/fs/commits/p0.json").read_text())
        part = tmp_path / "featuresets/fs" / commit["path"]
        fmt = get_format(self.part_format)
        import shutil

        shutil.rmtree(part) if part.is_dir() else part.unlink()
        problems = verify_store(store)
        assert len(problems) == 1 and "p0" in problems[0] and "missing" in problems[0]
        assert fmt.name == self.part_format

    def test_fast_read_path_is_used_for_uncompressed_parts(self, tmp_path: Path) -> None:
        fset = new_featureset(open_store(tmp_path), part_format=self.part_format)
        write_part(fset, "p0", {"v0": 3000})
        commit = fset.commits()[0]
        reader = get_format(self.part_format).open(
            fset.fs.local_copy(f"{fset.prefix}/{commit.path}")
        )
        assert reader.reads_directly("values")  # type: ignore[attr-defined]
        np.testing.assert_array_equal(
            reader.read_values(1234, 2999), video_values("v0", 3000)[1234:2999]
        )


class TestZarrStore(StoreContract):
    part_format = "zarr"


class TestHdf5Store(StoreContract):
    part_format = "hdf5"


def test_spec_mismatch_lists_the_differing_fields(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.create_featureset("fs", make_spec())
    assert store.create_featureset("fs", make_spec()).name == "fs"  # same spec: no-op
    with pytest.raises(SpecMismatch, match=r"backbone: 'tiny' != 'other'") as err:
        store.create_featureset("fs", make_spec(backbone="other", input_size=64))
    assert "input_size: 32 != 64" in str(err.value)


def test_unknown_featureset_lists_available(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.create_featureset("exists", make_spec())
    with pytest.raises(FeatureSetNotFound, match="Available: exists"):
        store.get_featureset("nope")


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", "x" * 200])
def test_names_cannot_escape_the_store(tmp_path: Path, bad: str) -> None:
    store = open_store(tmp_path)
    with pytest.raises(ConfigError, match="Invalid feature set name"):
        store.create_featureset(bad, make_spec())


def test_open_store_refuses_foreign_folders(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a vidfeat store"):
        open_store(tmp_path)
    with pytest.raises(StoreError, match="No vidfeat store"):
        open_store(tmp_path / "new", mode="r")
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "bad_path",
    [
        "../../../other/featuresets/fs/parts/p-x-1.zarr",
        "/abs/parts/p-x-1.zarr",
        "s3://bucket/parts/p-x-1.zarr",
        "parts/../../other.zarr",
        "parts/sub/p-x-1.zarr",
    ],
)
def test_a_commit_pointing_outside_parts_is_refused_and_reported(
    tmp_path: Path, bad_path: str
) -> None:
    """Metadata is input too: a record must not make load() return another store's rows."""
    other = open_store(tmp_path / "other")
    write_part(new_featureset(other), "p-other", {"theirs.mp4": 3})
    store = open_store(tmp_path / "s")
    fset = new_featureset(store)
    write_part(fset, "p-ours", {"ours.mp4": 2})
    forged = json.loads((tmp_path / "s/featuresets/fs/commits/p-ours.json").read_text())
    forged.update(part_id="p-x", path=bad_path)
    forged["videos"][0]["video_id"] = "theirs.mp4"
    (tmp_path / "s/featuresets/fs/commits/p-x.json").write_text(json.dumps(forged))
    reopened = open_store(tmp_path / "s").get_featureset("fs")
    with pytest.raises(StoreError, match=r"commits/p-x\.json.*not inside this feature set"):
        reopened.load()
    problems = verify_store(open_store(tmp_path / "s"))
    assert len(problems) == 1 and "p-x.json" in problems[0], problems


def test_a_commit_record_with_a_control_character_id_is_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    fset = new_featureset(store)
    write_part(fset, "p-ours", {"ours.mp4": 2})
    path = tmp_path / "s/featuresets/fs/commits/p-ours.json"
    record = json.loads(path.read_text())
    record["videos"][0]["video_id"] = "bad\nid.mp4"
    path.write_text(json.dumps(record))
    with pytest.raises(StoreError, match="bad video_id"):
        open_store(tmp_path / "s").get_featureset("fs").load()
    assert verify_store(open_store(tmp_path / "s")) != []
