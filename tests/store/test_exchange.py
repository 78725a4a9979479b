"""Export and import through the CLI: a round trip gives bit-identical rows, Parquet holds
what the store holds, features from elsewhere come in as an ``external`` set that verify,
train and export take and predict refuses in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vidfeat.store import open_store
from vidfeat.trainer.loop import train

from .helpers import new_featureset, video_values, write_part

BIN = Path(sys.executable).parent


def vidfeat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vidfeat"), *args], capture_output=True, text=True)


def refused(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr
    assert needle in res.stderr, res.stderr


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    fset = new_featureset(open_store(tmp_path / "store"), name="demo")
    write_part(fset, "p0", {"a.mp4": 5, "b.mp4": 2}, label="x")
    write_part(fset, "p1", {"c.mp4": 9, "d.mp4": 3}, label="y")
    return tmp_path / "store"


def test_export_then_import_gives_bit_identical_rows(store_dir: Path, tmp_path: Path) -> None:
    out, again = tmp_path / "demo.npz", tmp_path / "again.npz"
    assert vidfeat("export", str(store_dir), "demo", str(out)).returncode == 0
    res = vidfeat("import", str(tmp_path / "other"), "copy", str(out), "--source", "demo.npz")
    assert res.returncode == 0, res.stderr
    assert "imported 4 videos" in res.stdout
    rerun = vidfeat("import", str(tmp_path / "other"), "copy", str(out), "--source", "demo.npz")
    assert "imported 0 videos, 4 already stored" in rerun.stdout  # idempotent
    assert vidfeat("verify", str(tmp_path / "other")).returncode == 0
    assert vidfeat("export", str(tmp_path / "other"), "copy", str(again)).returncode == 0
    a, b = np.load(out), np.load(again)
    for key in ("values", "offsets", "pts", "video_ids", "labels", "splits"):
        assert a[key].dtype == b[key].dtype
        assert a[key].tobytes() == b[key].tobytes(), key  # bit for bit
    assert a["values"].dtype == np.float16
    copy = open_store(tmp_path / "other", "r").get_featureset("copy")
    assert copy.spec.kind == "external" and copy.spec.source == "demo.npz"
    assert copy.provenance["description"] == "demo.npz"


def test_padded_npz_and_parquet_hold_what_the_store_holds(store_dir: Path, tmp_path: Path) -> None:
    padded = tmp_path / "x.npz"
    assert vidfeat("export", str(store_dir), "demo", str(padded), "--seq-len", "4").returncode == 0
    z = np.load(padded)
    assert z["X"].shape == (4, 4, 8) and z["mask"].sum(1).tolist() == [4, 2, 4, 3]
    per_video, per_frame = tmp_path / "v.parquet", tmp_path / "f.parquet"
    assert vidfeat("export", str(store_dir), "demo", str(per_video)).returncode == 0
    res = vidfeat("export", str(store_dir), "demo", str(per_frame), "--per", "frame")
    assert res.returncode == 0 and "wrote 19 rows" in res.stdout
    videos = pq.read_table(per_video).to_pylist()
    assert [v["video_id"] for v in videos] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    c = next(v for v in videos if v["video_id"] == "c.mp4")
    assert c["label"] == "y" and c["n_rows"] == 9
    np.testing.assert_array_equal(np.array(c["features"], np.float16), video_values("c.mp4", 9))
    frames = pq.read_table(per_frame)
    assert frames.schema.field("features").type.value_type.bit_width == 16  # float16 kept
    spec = json.loads(frames.schema.metadata[b"vidfeat_spec"])
    assert spec["backbone"] == "tiny"
    ids = tmp_path / "ids.txt"
    ids.write_text("d.mp4\nb.mp4\n")
    subset = tmp_path / "sub.npz"
    assert vidfeat("export", str(store_dir), "demo", str(subset), "--ids", str(ids)).returncode == 0
    assert np.load(subset)["video_ids"].tolist() == ["d.mp4", "b.mp4"]


def test_npy_with_a_csv_imports_trains_and_predict_refuses(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 6, 4)).astype(np.float32)  # 12 clips, 6 rows, 4 dims each
    labels = ["a", "b"] * 6
    for i, label in enumerate(labels):
        x[i, :, 0] += 3 if label == "a" else -3
    np.save(tmp_path / "clips.npy", x)
    meta = tmp_path / "clips.csv"
    rows = [f"clip{i},{label},{'val' if i < 4 else 'train'}" for i, label in enumerate(labels)]
    meta.write_text("video_id,label,split\n" + "\n".join(rows) + "\n")
    store = tmp_path / "store"
    res = vidfeat("import", str(store), "ext", str(tmp_path / "clips.npy"), "--meta", str(meta))
    assert res.returncode == 0, res.stderr
    fset = open_store(store, "r").get_featureset("ext")
    np.testing.assert_array_equal(fset.read("clip3")[0], x[3].astype(np.float16))
    assert np.isnan(fset.read("clip3")[1]).all()  # no timestamps known: NaN, not made up
    assert fset.splits()["clip0"] == "val"
    run = train(
        store=str(store), featureset="ext", hidden=8, epochs=2, runs_dir=str(tmp_path / "r")
    )
    refused(
        vidfeat("predict", str(run.run_dir), str(tmp_path / "clips.npy")),
        "predict needs a backbone",
    )
    assert vidfeat("evaluate", str(run.run_dir)).returncode == 0
    sweep = vidfeat(
        "sweep", str(store), "ext", "--grid", "head=meanpool,gru", "--epochs", "1",
        "--runs-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    assert vidfeat("ls", str(store)).stdout.split("\n")[1].split()[:2] == ["ext", "external"]
    info = vidfeat("info", str(store), "ext").stdout
    assert "source: clips.npy" in info and "kind: external" in info
    assert "input size" not in info and "interpolation" not in info  # meaningless here


def test_bad_imports_are_one_line_and_write_nothing(store_dir: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 4), np.float32))
    store = tmp_path / "new"
    refused(vidfeat("import", str(store), "e", str(tmp_path / "x.npy")), "--meta")
    (tmp_path / "x.txt").write_text("nope")
    refused(vidfeat("import", str(store), "e", str(tmp_path / "x.txt")), ".npz or .npy")
    assert not store.exists()
    out = tmp_path / "demo.npz"
    assert vidfeat("export", str(store_dir), "demo", str(out)).returncode == 0
    z = dict(np.load(out))
    assert vidfeat("import", str(store), "e", str(out)).returncode == 0
    z["values"] = z["values"] + np.float16(1)  # same ids, other rows
    np.savez(tmp_path / "changed.npz", **z)
    before = sorted(p.name for p in (store / "featuresets/e/commits").iterdir())
    changed = str(tmp_path / "changed.npz")
    refused(vidfeat("import", str(store), "e", changed), "give the same --source")
    refused(vidfeat("import", str(store), "e", changed, "--source", "demo.npz"), "with other rows")
    assert sorted(p.name for p in (store / "featuresets/e/commits").iterdir()) == before
    refused(vidfeat("export", str(store_dir), "demo", str(tmp_path / "x.csv")), ".npz or .parquet")
    refused(vidfeat("export", str(store_dir), "demo", str(out), "--split", "val"), "splits: none")
