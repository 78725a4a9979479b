from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.store import FailureRecord, open_store
from vidfeat.store.records import CommitRecord

from .helpers import new_featureset, write_part

runner = CliRunner()


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    fset = new_featureset(open_store(tmp_path), name="demo")
    write_part(fset, "p0", {"a.mp4": 4, "b.mp4": 4})
    with fset.writer("p1") as w:
        w.add_failure(FailureRecord("c.mp4", "/c.mp4", "truncated", "cut short"))
        w.commit()
    return tmp_path


def test_ls_and_info(store_dir: Path) -> None:
    out = runner.invoke(app, ["ls", str(store_dir)])
    assert out.exit_code == 0, out.output
    assert "demo" in out.output and "tiny" in out.output
    out = runner.invoke(app, ["info", str(store_dir), "demo", "--json"])
    doc = json.loads(out.output)
    assert doc["videos"] == 2 and doc["rows"] == 8 and doc["failures_by_kind"] == {"truncated": 1}
    assert doc["spec"]["backbone"] == "tiny"


def test_verify_exit_codes(store_dir: Path) -> None:
    assert runner.invoke(app, ["verify", str(store_dir)]).exit_code == 0
    commit = json.loads((store_dir / "featuresets/demo/commits/p0.json").read_text())
    import shutil

    shutil.rmtree(store_dir / "featuresets/demo" / commit["path"])
    out = runner.invoke(app, ["verify", str(store_dir), "demo"])
    assert out.exit_code == 1
    assert "p0" in out.output and "missing" in out.output


def test_gc_dry_run_then_real(store_dir: Path) -> None:
    orphan = store_dir / "featuresets/demo/parts/p7-dead.zarr"
    orphan.mkdir()
    out = runner.invoke(app, ["gc", str(store_dir), "--older-than", "0s", "--dry-run"])
    assert "would remove" in out.output and orphan.exists()
    out = runner.invoke(app, ["gc", str(store_dir), "--older-than", "0s"])
    assert out.exit_code == 0 and not orphan.exists()


def test_a_staged_commit_record_is_invisible_until_published_and_gc_removes_it(
    store_dir: Path,
) -> None:
    """What a writer killed between staging its record and linking it leaves behind."""
    fset = open_store(store_dir).get_featureset("demo")
    record = CommitRecord("p9", "dead", "parts/p9-dead.zarr", "zarr", 0, 1.0)
    fset.stage_commit(record)  # written and fsynced under a temporary name, never published
    commits = store_dir / "featuresets/demo/commits"
    (staged,) = [p for p in commits.iterdir() if p.name.startswith(".tmp-")]
    assert [c.part_id for c in fset.commits()] == ["p0", "p1"]
    assert runner.invoke(app, ["verify", str(store_dir)]).exit_code == 0
    out = runner.invoke(app, ["gc", str(store_dir), "--older-than", "0s"])
    assert out.exit_code == 0 and not staged.exists()
    assert sorted(p.name for p in commits.iterdir()) == ["p0.json", "p1.json"]


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "vidfeat.cli", "info", str(tmp_path), "nope"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1
    assert res.stderr.startswith("error: No vidfeat store")
    assert "Traceback" not in res.stderr
    res = subprocess.run(
        [sys.executable, "-m", "vidfeat.cli", "ls", "--no-such-flag"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
