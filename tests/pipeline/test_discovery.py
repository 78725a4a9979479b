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


def test_two_files_with_one_id_are_an_error_naming_both(tmp_path: Path) -> None:
    a = touch(tmp_path / "real" / "bikes.mp4")
    b = touch(tmp_path / "other" / "bikes.mp4")
    for inputs in (
        [str(a), str(b)],  # direct files
        [str(tmp_path / "real"), str(tmp_path / "other")],  # two folders
        [str(tmp_path / "real" / "*.mp4"), str(tmp_path / "other" / "*.mp4")],  # globs
    ):
        with pytest.raises(InputError, match=r"Two videos get the id 'bikes\.mp4'") as err:
            discover(inputs)
        assert str(a) in str(err.value) and str(b) in str(err.value)
        assert "video_id column" in str(err.value)
    # Their common parent gives distinct ids.
    assert [v.video_id for v in discover([str(tmp_path)])] == ["other/bikes.mp4", "real/bikes.mp4"]


def test_the_same_file_reached_twice_is_one_video(tmp_path: Path) -> None:
    a = touch(tmp_path / "v" / "a.mp4")
    (tmp_path / "v" / "m.csv").write_text("path\na.mp4\n")
    found = discover([str(tmp_path / "v"), str(a), str(tmp_path / "v" / "m.csv")])
    assert [v.video_id for v in found] == ["a.mp4"]
    (tmp_path / "link2").mkdir()
    os.symlink(a, tmp_path / "link2" / "a.mp4")
    assert len(discover([str(a), str(tmp_path / "link2" / "a.mp4")])) == 1


def test_manifests_with_absolute_and_parent_paths(tmp_path: Path) -> None:
    data = tmp_path / "data" / "ucf"
    a = touch(data / "Biking" / "v_Biking_g01_c01.avi")
    b = touch(data / "Diving" / "v_Diving_g02_c01.avi")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "abs.csv").write_text(f"path,label\n{a},Biking\n{b},Diving\n")
    (lists / "rel.csv").write_text("path\n../data/ucf/Biking/v_Biking_g01_c01.avi\n")
    by_abs = discover([str(lists / "abs.csv")])
    assert [(v.video_id, v.label) for v in by_abs] == [
        ("Biking/v_Biking_g01_c01.avi", "Biking"),
        ("Diving/v_Diving_g02_c01.avi", "Diving"),
    ]
    assert [v.video_id for v in discover([str(lists / "rel.csv")])] == ["v_Biking_g01_c01.avi"]
    assert all(os.path.isabs(v.path) and os.path.exists(v.path) for v in by_abs)


def test_conflicting_duplicate_manifest_rows_are_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    (tmp_path / "m.csv").write_text("path,label\na.mp4,run\na.mp4,jump\n")
    with pytest.raises(InputError, match=r"'a.mp4' is listed twice.*m\.csv row 2.*row 3"):
        discover([str(tmp_path / "m.csv")])
    (tmp_path / "same.csv").write_text("path,label\na.mp4,run\na.mp4,run\n")
    assert len(discover([str(tmp_path / "same.csv")])) == 1


def test_a_file_that_is_neither_video_nor_manifest_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.txt: neither a video .* nor a manifest"):
        discover([str(notes)])


def test_auto_labels_and_single_class_folders(tmp_path: Path) -> None:
    ucf = tmp_path / "ucf"
    touch(ucf / "Biking" / "v_Biking_g01_c01.avi")
    touch(ucf / "Diving" / "v_Diving_g01_c01.avi")
    touch(tmp_path / "flat" / "clip.mp4")
    assert [(v.video_id, v.label) for v in discover([str(ucf)])] == [
        ("Biking/v_Biking_g01_c01.avi", "Biking"),
        ("Diving/v_Diving_g01_c01.avi", "Diving"),
    ]
    assert [(v.video_id, v.label) for v in discover([str(tmp_path / "flat")])] == [
        ("clip.mp4", None)
    ]
    # One class folder, labels from the parent: the class stays in the id and the label.
    one = discover([str(ucf / "Biking")], label_from="parent")
    assert [(v.video_id, v.label) for v in one] == [("Biking/v_Biking_g01_c01.avi", "Biking")]
    both = discover([str(ucf)], label_from="parent")
    assert both[0].video_id == one[0].video_id


@pytest.mark.parametrize("label_from", ["auto", "parent", "none"])
def test_a_folder_and_a_glob_of_it_give_the_same_ids_and_labels(
    tmp_path: Path, label_from: str
) -> None:
    # The folder walk builds ids per folder by string operations; globs go file by file.
    root = tmp_path / "ucf"
    for rel in ("Biking/v_Biking_g01.avi", "Biking/deep/v_b.mp4", "Diving/v_Diving_g01.avi"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    walked = discover([str(root)], label_from)
    globbed = discover([f"{root}/**/*.*"], label_from)
    assert [(v.video_id, v.label) for v in walked] == [(v.video_id, v.label) for v in globbed]
    assert [v.path for v in walked] == [v.path for v in globbed]
