"""Finding videos: folders, globs, manifests; ids that cannot escape the store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidfeat.errors import InputError
from vidfeat.pipeline.discovery import discover


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_glob_and_manifest_give_the_same_ids(tmp_path: Path) -> None:
    touch(tmp_path / "v" / "run" / "a.mp4")
    touch(tmp_path / "v" / "jump" / "b.AVI")
    touch(tmp_path / "v" / "notes.txt")
    by_folder = discover([str(tmp_path / "v")], label_from="parent")
    assert [(v.video_id, v.label) for v in by_folder] == [
        ("jump/b.AVI", "jump"),
        ("run/a.mp4", "run"),
    ]
    by_glob = discover([str(tmp_path / "v" / "*" / "*")])
    assert [v.video_id for v in by_glob] == ["jump/b.AVI", "run/a.mp4"]
    manifest = tmp_path / "v" / "m.csv"
    manifest.write_text("path,label,split\nrun/a.mp4,run,train\njump/b.AVI,jump,val\n")
    by_manifest = discover([str(manifest)])
    assert [(v.video_id, v.label, v.split) for v in by_manifest] == [
        ("jump/b.AVI", "jump", "val"),
        ("run/a.mp4", "run", "train"),
    ]


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "/abs/path.mp4", "a/../../b.mp4"])
def test_manifest_ids_cannot_escape(tmp_path: Path, bad_id: str) -> None:
    touch(tmp_path / "a.mp4")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,video_id\na.mp4,{bad_id}\n")
    with pytest.raises(InputError, match=r"Invalid video_id .*m\.csv row 2"):
        discover([str(manifest)])


def test_symlink_loops_are_listed_not_lost(tmp_path: Path) -> None:
    touch(tmp_path / "ok.mp4")
    os.symlink("b.mp4", tmp_path / "a.mp4")
    os.symlink("a.mp4", tmp_path / "b.mp4")
    found = {v.video_id: v.size for v in discover([str(tmp_path)])}
    assert found == {"a.mp4": -1, "b.mp4": -1, "ok.mp4": 1}  # the worker records them failed


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Input not found"):
        discover([str(tmp_path / "nope")])
    with pytest.raises(InputError, match="No videos found"):
        discover([str(tmp_path)])
    (tmp_path / "m.csv").write_text("file\nx.mp4\n")
    with pytest.raises(InputError, match="no 'path' column"):
        discover([str(tmp_path / "m.csv")])
