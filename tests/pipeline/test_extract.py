"""End to end: videos → LocalCluster → committed parts, resume, failures, reference features."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from tests.pipeline.cluster import BIN, dask_cluster, wait_for_workers
from vidfeat.cli import app
from vidfeat.config import BackboneConfig, ExtractConfig, SamplingConfig
from vidfeat.models.factory import create_backbone
from vidfeat.pipeline.runner import extract
from vidfeat.store import open_store, verify_store
from vidfeat.synth import SynthConfig, make_dataset


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "videos"
    make_dataset(root, SynthConfig(classes=2, videos_per_class=3, frames=12, size=64))
    (root / "manifest.csv").unlink()
    return root


def config(inputs: Path, store: Path, **kw: object) -> ExtractConfig:
    values: dict[str, object] = {
        "inputs": (str(inputs),),
        "store": str(store),
        "label_from": "parent",
        "backbone": BackboneConfig("tiny"),
        "sampling": SamplingConfig(frames=4),
        "progress": False,
    }
    values.update(kw)
    return ExtractConfig(**values)  # type: ignore[arg-type]


@pytest.mark.slow
def test_extract_resume_and_added_videos(dataset: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = extract(config(dataset, store))
    assert (first.videos_done, first.rows, first.failures) == (6, 24, [])
    fset = open_store(store).get_featureset(first.featureset)
    loaded = fset.load()
    assert loaded.values.shape == (24, 32)
    assert set(loaded.labels) == {"ramp_up", "ramp_down"}
    assert verify_store(open_store(store)) == []

    assert first.snapshot == 1 and fset.catalog().newer == ()  # readers skip the records

    again = extract(config(dataset, store))
    assert (again.videos_done, again.videos_skipped, again.parts) == (0, 6, 0)
    assert again.snapshot == 1  # nothing new: no new snapshot

    shutil.copy(dataset / "ramp_up/ramp_up_0000.mp4", dataset / "ramp_up/extra.mp4")
    third = extract(config(dataset, store))
    assert (third.videos_done, third.videos_skipped) == (1, 6)
    assert third.snapshot == 2
    assert len(fset.load().video_ids) == 7


@pytest.mark.slow
def test_broken_files_are_recorded_and_good_ones_commit(
    dataset: Path, tmp_path: Path, broken_files: dict[str, tuple[Path, str]]
) -> None:
    for path, _ in broken_files.values():
        if path.exists():
            shutil.copy(path, dataset / "ramp_up" / path.name)
    report = extract(config(dataset, tmp_path / "store", workers=2))
    assert report.videos_done == 6
    kinds = {f.video_id.split("/")[-1]: f.kind for f in report.failures}
    expected = {p.name: k for p, k in broken_files.values() if p.exists()}
    assert kinds == expected
    fset = open_store(tmp_path / "store").get_featureset(report.featureset)
    assert len(fset.catalog().failures()) == len(expected)
    # failures are skipped on rerun, retried on request
    assert extract(config(dataset, tmp_path / "store")).parts == 0
    retried = extract(config(dataset, tmp_path / "store", retry_failed=True))
    assert retried.videos_skipped == 6 and len(retried.failures) == len(expected)


@pytest.mark.slow
def test_spec_change_under_same_name_is_refused(dataset: Path, tmp_path: Path) -> None:
    extract(config(dataset, tmp_path / "s", name="feats"))
    with pytest.raises(Exception, match=r"(?s)different configuration.*sampling"):
        extract(config(dataset, tmp_path / "s", name="feats", sampling=SamplingConfig(frames=8)))


@pytest.mark.slow
def test_features_match_a_straightforward_reference(tmp_path: Path) -> None:
    """Decode at full size, resize in torch (bicubic, antialias), crop, run the backbone.
    320x320 clips, so the resize to 256 is a real downscale as with real videos."""
    dataset = tmp_path / "big"
    make_dataset(dataset, SynthConfig(classes=2, videos_per_class=1, frames=6, size=320))
    cfg = config(dataset, tmp_path / "s", backbone=BackboneConfig("efficientnet_lite0"))
    report = extract(cfg)
    fset = open_store(tmp_path / "s").get_featureset(report.featureset)
    backbone = create_backbone("efficientnet_lite0", device="cpu")
    for vid in fset.video_ids()[:2]:
        values, _ = fset.read(vid)
        record = fset.catalog().get(vid).record
        rows = fset._readers.get(fset.catalog().get(vid).part_path)
        e = fset.catalog().get(vid)
        frame_index = rows.read_1d("frame_index", e.row_start, e.row_stop)
        with av.open(record.uri) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        x = torch.from_numpy(np.stack([frames[i] for i in frame_index])).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(256, 256), mode="bicubic", antialias=True, align_corners=False)
        x = x[:, :, 16:240, 16:240].clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        ref = backbone(x.contiguous().numpy())
        got = values.astype(np.float32)
        cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        assert cos.min() >= 0.99, cos


def tiny_extract_args(inputs: Path, store: Path) -> list[str]:
    store_args = ["--store", str(store), "--backbone", "tiny", "--frames", "4", "-q"]
    return ["extract", str(inputs), *store_args]


@pytest.mark.slow
def test_cli_extract_strict_exit_code(dataset: Path, tmp_path: Path) -> None:
    (dataset / "ramp_up" / "bad.mp4").write_bytes(b"garbage" * 10)
    runner = CliRunner()
    args = tiny_extract_args(dataset, tmp_path / "s")
    out = runner.invoke(app, [*args, "--label-from", "parent"])
    assert out.exit_code == 0, out.output
    assert "6 videos" in out.output and "1 failed" in out.output
    out = runner.invoke(app, [*args, "--strict", "--retry-failed"])
    assert out.exit_code == 1
    cfg = tmp_path / "extract.toml"
    cfg.write_text(
        f'inputs = ["{dataset}"]\nstore = "{tmp_path / "s2"}"\nbackbone = "tiny"\nframes = 2\n'
    )
    out = runner.invoke(app, ["extract", "--config", str(cfg), "-q"])
    assert out.exit_code == 0 and "12 rows" in out.output
    cfg.write_text("framez = 2\n")
    out = runner.invoke(app, ["extract", "--config", str(cfg)])
    assert out.exit_code != 0 and "framez" in str(out.exception)


@pytest.mark.slow
@pytest.mark.cluster
def test_existing_scheduler_and_two_workers(dataset: Path, tmp_path: Path) -> None:
    with dask_cluster(2) as cluster:
        wait_for_workers(cluster.address, 2)
        out = subprocess.run(
            [
                str(BIN / "vidfeat"),
                *tiny_extract_args(dataset, tmp_path / "s"),
                *("--scheduler", cluster.address, "--videos-per-part", "1"),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert out.returncode == 0, out.stderr
    fset = open_store(tmp_path / "s").get_featureset(open_store(tmp_path / "s").featuresets()[0])
    assert len(fset.load().video_ids) == 6


def _malloc_env() -> dict[str, str | None]:
    import os

    return {k: os.environ.get(k) for k in ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_")}


@pytest.mark.slow
def test_local_workers_start_with_one_malloc_arena(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vidfeat/runtime.py: inference in a task thread needs the main malloc arena, from the
    worker's first allocation on; dask's own malloc setting is dropped; and the setting does
    not leak into the user's process."""
    import os

    from vidfeat.pipeline import runner

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    with runner._cluster(config(tmp_path, tmp_path / "store", workers=1)) as cluster:
        (env,) = cluster.client().run(_malloc_env).values()
    assert env == {"MALLOC_ARENA_MAX": "1", "MALLOC_TRIM_THRESHOLD_": None}
    assert "MALLOC_ARENA_MAX" not in os.environ


@pytest.mark.slow
def test_real_world_files_store_every_presented_frame(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """--all through the whole pipeline on ffmpeg-made files: no false failure, one row per
    presented frame at its pts, the displayed size in the record."""
    from tests.pipeline.real_world import sequential

    chosen = ["h264_cut.mp4", "h264_bframes.ts", "h264_raw.h264", "h264_bframes.avi"]
    chosen += ["h264_sar.mp4", "h264_rotated.mp4", "h264_vfr.mp4"]
    chosen += ["cover_first.mkv", "mpeg2_bframes.mpg", "h264_capture.ts", "vp8_altref.webm"]
    folder = tmp_path / "in"
    folder.mkdir()
    for name in chosen:
        shutil.copy(files[name], folder / name)
    report = extract(
        config(folder, tmp_path / "store", label_from="none", sampling=SamplingConfig("all"))
    )
    assert report.failures == [] and report.videos_done == len(chosen)
    fset = open_store(tmp_path / "store").get_featureset(report.featureset)
    catalog = fset.catalog()
    for name in chosen:
        presented = sequential(files[name])
        record = catalog.get(name).record
        _, pts = fset.read(name)
        assert record.n_rows == len(presented), name
        if presented[0][0] is not None and name != "h264_bframes.avi":
            np.testing.assert_allclose(pts, [t for t, _ in presented], atol=1e-9)
    assert (
        catalog.get("h264_sar.mp4").record.width,
        catalog.get("h264_sar.mp4").record.height,
    ) == (114, 64)
    rotated = catalog.get("h264_rotated.mp4").record
    assert (rotated.width, rotated.height) == (64, 96)
    assert catalog.get("h264_cut.mp4").record.duration_s == pytest.approx(27 / 25)
    # Which stream the rows are from, and how its frame list was made, per record.
    records = {v.video_id: v for c in fset.commits() for v in c.videos}
    assert (records["cover_first.mkv"].stream, records["cover_first.mkv"].codec) == (1, "h264")
    assert records["h264_bframes.ts"].stream == 0
    assert records["h264_bframes.ts"].index == "demux"
    assert records["h264_capture.ts"].index.startswith("decoded (the stream does not start")
    assert records["vp8_altref.webm"].index == "decoded (the stream has invisible frames)"
    assert verify_store(open_store(tmp_path / "store")) == []


@pytest.mark.slow
def test_a_different_file_under_a_stored_id_is_a_conflict_until_update(
    dataset: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    first = extract(config(dataset, store))
    fset = open_store(store).get_featureset(first.featureset)
    before = fset.read("ramp_up/ramp_up_0000.mp4")[0].copy()
    other = tmp_path / "teamB"
    shutil.copytree(dataset, other)  # same ids; one file with other content
    shutil.copyfile(dataset / "ramp_down/ramp_down_0000.mp4", other / "ramp_up/ramp_up_0000.mp4")
    refused = extract(config(other, store))
    assert refused.videos_done == 0
    assert [(f.video_id, f.kind) for f in refused.failures] == [
        ("ramp_up/ramp_up_0000.mp4", "conflict")
    ]
    assert "--update" in refused.failures[0].message
    assert refused.videos_skipped == 5  # copytree kept their mtimes: the same fingerprints
    fresh = open_store(store).get_featureset(first.featureset)
    np.testing.assert_array_equal(fresh.read("ramp_up/ramp_up_0000.mp4")[0], before)
    assert verify_store(open_store(store)) == []

    updated = extract(config(other, store, update=True))
    assert updated.failures == [] and updated.videos_done >= 1
    after = open_store(store).get_featureset(first.featureset)
    new = after.read("ramp_up/ramp_up_0000.mp4")[0]
    assert not np.array_equal(new, before)
    assert after.video_ids().count("ramp_up/ramp_up_0000.mp4") == 1
    assert after.catalog().get("ramp_up/ramp_up_0000.mp4").record.uri.startswith(str(other))
    assert verify_store(open_store(store)) == []


@pytest.mark.slow
def test_a_byte_identical_copy_with_new_mtimes_is_not_extracted_again(
    dataset: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    extract(config(dataset, store))
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy, copy_function=shutil.copyfile)  # new mtimes
    again = extract(config(copy, store))
    assert (again.videos_done, again.videos_skipped, again.videos_same_content) == (0, 6, 6)
    assert again.parts == 0 and again.failures == []


@pytest.mark.slow
def test_strict_counts_failures_of_earlier_runs(dataset: Path, tmp_path: Path) -> None:
    (dataset / "ramp_up" / "bad.mp4").write_bytes(b"garbage" * 10)
    runner = CliRunner()
    args = tiny_extract_args(dataset, tmp_path / "s")
    assert runner.invoke(app, args).exit_code == 0
    out = runner.invoke(app, [*args, "--strict"])  # nothing new to do, one input failed before
    assert out.exit_code == 1, out.output
    assert "7 already stored" in out.output
    assert "failed in earlier runs: ramp_up/bad.mp4" in out.output
    good = tmp_path / "good"
    shutil.copytree(dataset, good)
    (good / "ramp_up" / "bad.mp4").unlink()
    assert runner.invoke(app, [*tiny_extract_args(good, tmp_path / "s"), "--strict"]).exit_code == 0


def test_cli_collision_and_non_video_inputs_create_nothing(dataset: Path, tmp_path: Path) -> None:
    from vidfeat.errors import InputError

    other = tmp_path / "other" / "ramp_up"
    other.mkdir(parents=True)
    shutil.copyfile(dataset / "ramp_down/ramp_down_0000.mp4", other / "ramp_up_0000.mp4")
    runner = CliRunner()
    store = tmp_path / "s"
    out = runner.invoke(app, [*tiny_extract_args(dataset, store), str(tmp_path / "other")])
    assert isinstance(out.exception, InputError)
    assert "Two videos get the id 'ramp_up/ramp_up_0000.mp4'" in str(out.exception)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    out = runner.invoke(app, ["extract", str(notes), "--store", str(store), "-q"])
    assert isinstance(out.exception, InputError) and "neither a video" in str(out.exception)
    assert not store.exists()


def test_a_missing_input_fails_before_any_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster starts while inputs are discovered; a typo must not wait for it (nor leave
    a store behind)."""
    from vidfeat.errors import InputError
    from vidfeat.pipeline import runner

    def no_cluster(cfg: ExtractConfig) -> None:
        raise AssertionError("a cluster was started for a missing input")

    monkeypatch.setattr(runner, "_Cluster", no_cluster)
    with pytest.raises(InputError, match=r"Input not found: .*typo"):
        extract(config(tmp_path / "typo", tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_keyword_options_and_provenance(dataset: Path, tmp_path: Path) -> None:
    """``vidfeat.extract`` takes the CLI's options as keyword arguments, checked as the CLI
    checks them; the feature set records who made it, how, and the user's words."""
    import vidfeat
    from vidfeat.errors import ConfigError

    store = tmp_path / "store"
    kwargs = {"inputs": [str(dataset)], "store": str(store), "backbone": "tiny", "frames": 4}
    with pytest.raises(ConfigError, match=r"Invalid --frames \('4'\)"):
        vidfeat.extract(**(kwargs | {"frames": "4"}))
    with pytest.raises(ConfigError, match="not both"):
        vidfeat.extract(config(dataset, store), frames=4)
    report = vidfeat.extract(
        **kwargs, name="kw", description="ramps, 4 frames", tag=["demo", "v1"], progress=False
    )
    assert (report.featureset, report.videos_done, report.rows) == ("kw", 6, 24)
    p = open_store(store, "r").get_featureset("kw").provenance
    assert p["description"] == "ramps, 4 frames" and p["tags"] == ["demo", "v1"]
    assert "@" in p["created_by"] and p["vidfeat_version"] and p["created_at"] > 0
    out = CliRunner().invoke(app, ["info", str(store), "kw"])
    assert "description: ramps, 4 frames" in out.output and "tags: demo, v1" in out.output
    assert "created: " in out.output


@pytest.mark.slow
def test_stream_n_picks_the_stream_and_names_its_own_feature_set(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """--stream N decodes that stream (a file without it fails with the reason, the run goes
    on) and joins the identity; without it the identity, and so every set's name, is as
    before."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("preview_first.mkv", "h264_bframes.mp4"):
        shutil.copy(files[name], folder / name)
    store = tmp_path / "store"
    main = extract(config(folder, store, label_from="none"))
    assert main.failures == []
    assert "stream" not in SamplingConfig(frames=4).identity()
    runner = CliRunner()
    args = ["extract", str(folder), "--store", str(store), "--backbone", "tiny"]
    result = runner.invoke(app, [*args, "--frames", "4", "--stream", "1", "--label-from", "none"])
    assert result.exit_code == 0, result.output
    fsets = open_store(store).featuresets()
    assert len(fsets) == 2
    forced = next(f for f in fsets if f != main.featureset)
    fset = open_store(store).get_featureset(forced)
    assert fset.spec.sampling["stream"] == 1
    records = {v.video_id: v for c in fset.commits() for v in c.videos}
    failures = {f.video_id: f for c in fset.commits() for f in c.failures}
    assert records["preview_first.mkv"].stream == 1
    assert failures["h264_bframes.mp4"].kind == "no_video_stream"
    assert "--stream 1 is not a video stream" in failures["h264_bframes.mp4"].message
    preview = runner.invoke(app, [*args, "--frames", "4", "--stream", "0", "--name", "preview"])
    assert preview.exit_code == 0, preview.output
    rec = open_store(store).get_featureset("preview").catalog().get("preview_first.mkv").record
    assert (rec.width, rec.height) == (32, 24)
    bad = runner.invoke(app, [*args, "--stream", "-1"])
    assert bad.exit_code != 0 and "Invalid --stream (-1)" in str(bad.exception)


@pytest.mark.slow
def test_the_engine_is_chosen_recorded_and_shown(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--engine auto runs OpenVINO on the CPU and says so; on real-world files its float32 rows
    are eager torch's at the store's precision, so both engines fill one feature set; every
    record names its engine."""
    import json

    monkeypatch.setenv("VIDFEAT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("h264_bframes.mp4", "h264_cut.mp4", "hevc_bframes.ts", "h264_rotated.mp4"):
        shutil.copy(files[name], folder / name)
    store = tmp_path / "store"
    runner = CliRunner()
    args = ["extract", str(folder), "--store", str(store), "--backbone", "tiny", "--all"]
    args += ["--label-from", "none", "--name", "t"]
    first = runner.invoke(app, [*args, "--report", str(tmp_path / "r.json")])
    assert first.exit_code == 0, first.output
    assert "engine: openvino float32" in first.output
    assert json.loads((tmp_path / "r.json").read_text())["engine"].startswith("openvino")
    info = runner.invoke(app, ["info", str(store), "t"])
    assert "engine (the run that created it): openvino float32" in info.output
    eager = extract(
        config(
            folder,
            tmp_path / "eager",
            label_from="none",
            sampling=SamplingConfig("all"),
            backbone=BackboneConfig("tiny", engine="torch"),
            name="t",
        )
    )
    assert eager.engine == "torch" and eager.featureset == "t"
    fset, other = (open_store(s).get_featureset("t") for s in (store, tmp_path / "eager"))
    assert other.spec.config_hash() == fset.spec.config_hash()  # one identity for both engines
    for vid in fset.video_ids():
        got, want = fset.read(vid)[0], other.read(vid)[0]
        assert got.shape == want.shape and got.shape[0] > 20
        assert got.dtype == want.dtype == np.float16
        step = float(np.spacing(np.abs(want).max()))
        diff = np.abs(got.astype(np.float32) - want.astype(np.float32))
        assert float(diff.max()) <= step, vid  # at most one float16 step at the features' scale
    assert {v.engine for c in fset.commits() for v in c.videos} == {"openvino"}
    assert {v.engine for c in other.commits() for v in c.videos} == {"torch"}
