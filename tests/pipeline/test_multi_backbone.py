"""Several --backbone in one run: one decode per video, one feature set per backbone, each the
same as if it had been extracted alone (rows, resume, failure records)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.errors import ConfigError
from vidfeat.pipeline.runner import extract
from vidfeat.store import open_store

# Two geometries: tiny resizes to 36 (bilinear) and crops 32, efficientnet_lite0 256 / 224.
TINY = {"backbone": "tiny", "weights": "none"}
LITE = {"backbone": "efficientnet_lite0", "weights": "DEFAULT"}
BIN = Path(sys.executable).parent
COMMON = {"frames": 5, "dtype": "float32", "workers": 1, "progress": False}


def run(store: Path, inputs: list[Path], *backbones: dict[str, str], **options: Any) -> Any:
    names = [b["backbone"] for b in backbones]
    weights = [b["weights"] for b in backbones]
    args = {**COMMON, **options}
    return extract(
        inputs=[str(p) for p in inputs], store=str(store), backbone=names, weights=weights, **args
    )


def rows(store: Path, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    fset = open_store(str(store)).get_featureset(name)
    return {vid: fset.read(vid) for vid in fset.catalog().video_ids()}


def assert_same_rows(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for vid in a:
        for x, y in zip(a[vid], b[vid], strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.fixture
def videos(files: dict[str, Path], tmp_path: Path) -> list[Path]:
    """Real-world shapes: B-frames, an edit-list cut, MPEG-TS, SAR, rotation."""
    folder = tmp_path / "videos"
    folder.mkdir()
    names = ["h264_bframes.mp4", "h264_cut.mp4", "hevc_bframes.ts", "h264_sar.mp4"]
    names += ["h264_rotated.mp4", "mpeg4_bframes.avi"]
    for name in names:
        shutil.copy(files[name], folder / name)
    return sorted(folder.iterdir())


@pytest.mark.slow
def test_two_backbones_in_one_pass_equal_two_single_runs(
    videos: list[Path], tmp_path: Path
) -> None:
    both = run(tmp_path / "both", videos, TINY, LITE)
    tiny = run(tmp_path / "tiny", videos, TINY)
    lite = run(tmp_path / "lite", videos, LITE)
    assert [both.featureset, *(r.featureset for r in both.also)] == [
        tiny.featureset,
        lite.featureset,
    ]
    assert_same_rows(
        rows(tmp_path / "both", tiny.featureset), rows(tmp_path / "tiny", tiny.featureset)
    )
    assert_same_rows(
        rows(tmp_path / "both", lite.featureset), rows(tmp_path / "lite", lite.featureset)
    )
    # One decode served both: the decoders were asked for each video's rows once.
    assert both.frames_sampled == tiny.frames_sampled == lite.frames_sampled
    assert both.videos_done == both.also[0].videos_done == len(videos)
    assert both.also[0].weights_mib > 10 > both.weights_mib  # efficientnet_lite0, tiny
    specs = [
        open_store(str(tmp_path / "both")).get_featureset(n).spec
        for n in (tiny.featureset, lite.featureset)
    ]
    assert [s.backbone for s in specs] == ["tiny", "efficientnet_lite0"]


@pytest.mark.slow
def test_a_rerun_extracts_only_what_each_set_lacks_with_one_decode(
    videos: list[Path], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first = run(store, videos[:2], TINY)  # the tiny set already holds two videos
    again = run(store, videos, TINY, LITE)
    lite = again.also[0]
    assert (again.featureset, again.videos_skipped, again.videos_done) == (first.featureset, 2, 4)
    assert (lite.videos_skipped, lite.videos_done) == (0, 6)
    single = run(tmp_path / "single", videos, TINY)
    assert again.frames_sampled == single.frames_sampled  # 6 videos, each decoded once
    assert_same_rows(rows(store, first.featureset), rows(tmp_path / "single", first.featureset))
    done = run(store, videos, TINY, LITE)  # nothing left: no part runs
    assert (done.videos_done, done.also[0].videos_done, done.parts) == (0, 0, 0)


def test_a_broken_video_fails_in_every_set_with_the_same_reason(
    videos: list[Path], broken_files: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    broken, kind = broken_files["truncated_50"]
    both = run(tmp_path / "s", [videos[0], broken], TINY, LITE)
    sets = [both, *both.also]
    reasons = [{f.video_id: (f.kind, f.message) for f in r.failures} for r in sets]
    assert reasons[0] == reasons[1] and reasons[0][broken.name][0] == kind
    for r in sets:
        catalog = open_store(str(tmp_path / "s")).get_featureset(r.featureset).catalog()
        failure = catalog.failure(broken.name)
        assert failure is not None and (failure.kind, failure.message) == reasons[0][broken.name]
        assert catalog.video_ids() == [videos[0].name]


def test_the_command_line_takes_a_list_and_refuses_what_would_be_ambiguous(
    videos: list[Path], tmp_path: Path
) -> None:
    runner = CliRunner()
    config = tmp_path / "run.toml"
    config.write_text('backbone = ["tiny", "efficientnet_lite0"]\nweights = ["none", "DEFAULT"]\n')
    flags = ["--config", str(config), "-q", "--frames", "3", "--report", str(tmp_path / "r.json")]
    ok = runner.invoke(app, ["extract", str(videos[0]), "-s", str(tmp_path / "s"), *flags])
    assert ok.exit_code == 0, ok.output
    lines = [line for line in ok.stdout.splitlines() if "→" in line]
    assert [line.split(":")[0].split("-")[0] for line in lines] == ["tiny", "efficientnet_lite0"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["featureset"] for r in report["also"]] == [lines[1].split(":")[0]]
    for flags, message in [
        (["--backbone", "tiny", "--backbone", "tiny"], "The same --backbone is given twice"),
        (
            ["--backbone", "tiny", "--backbone", "resnet18", "--weights", "none"],
            "--weights is given 1 time(s) for 2 --backbone",
        ),
        (
            ["--backbone", "tiny", "--backbone", "resnet18", "--name", "x"],
            "--name names one feature set",
        ),
    ]:
        command = [str(BIN / "vidfeat"), "extract", str(videos[0]), "-s", str(tmp_path / "t")]
        bad = subprocess.run([*command, *flags], capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and bad.stderr.count("error:") == 1, bad.stderr
        assert message in bad.stderr and "Traceback" not in bad.stderr
        assert not (tmp_path / "t").exists()
    with pytest.raises(ConfigError, match="--preprocess is given 2 time"):
        extract(
            inputs=[str(videos[0])],
            store=str(tmp_path / "u"),
            backbone="tiny",
            preprocess=["a", "b"],
        )
