"""The command line as a new user meets it: every refusal is one ``error:`` line without a
traceback and changes nothing on disk; progress moves video by video; runs work from any
folder; tables never cut a name; help reads plainly."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.config import ExtractConfig
from vidfeat.pipeline.runner import extract
from vidfeat.synth import SynthConfig, make_dataset

BIN = Path(sys.executable).parent
runner = CliRunner()


def vidfeat(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "vidfeat"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ | env,
        timeout=240,
    )


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and mtime: what a refused command must keep."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def assert_refused(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 1, exactly one ``error:`` line, no traceback, and the line says what it must."""
    assert res.returncode == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only: by its modes, or (as root, whom modes do not stop) through a
    read-only bind mount of it."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield folder
        finally:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)
        return
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(view)]).returncode:
        pytest.skip("cannot make a read-only folder here (root without mount rights)")
    try:
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)
        view.rmdir()


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A store with one feature set of 8 labelled videos (tiny backbone) and one run on it."""
    root = tmp_path_factory.mktemp("trust")
    make_dataset(root / "videos", SynthConfig(classes=2, videos_per_class=4, frames=12, size=48))
    (root / "videos/manifest.csv").unlink()  # folders: labels from the class folders
    make_dataset(root / "more", SynthConfig(classes=2, videos_per_class=1, frames=8, size=48))
    (root / "more/manifest.csv").unlink()
    for p in (root / "more").rglob("*.mp4"):  # other ids than those in videos/
        p.rename(p.with_name("extra_" + p.name))
    report = extract(
        ExtractConfig(
            inputs=(str(root / "videos"),),
            store=str(root / "store"),
            name="feats",
            backbone=_tiny(),
            progress=False,
        )
    )
    assert report.videos_done == 8
    res = vidfeat(
        "train", "store", "feats", "--epochs", "2", "--hidden", "8", "--name", "r1", cwd=root
    )
    assert res.returncode == 0, res.stderr
    return {"root": root, "store": root / "store", "videos": root / "videos", "run": "r1"}


def _tiny() -> object:
    from vidfeat.config import BackboneConfig

    return BackboneConfig(name="tiny", weights="none")


TINY = ("--backbone", "tiny", "--weights", "none")


# ------------------------------------------------------------------ one-line refusals


def test_backbone_without_local_weights_says_which_file(tmp_path: Path, extracted: dict) -> None:
    start = time.perf_counter()
    res = vidfeat(
        "extract",
        str(extracted["videos"]),
        "-s",
        str(tmp_path / "store"),
        "--backbone",
        "resnet18",
        "-q",
        TORCH_HOME=str(tmp_path / "empty"),
        VIDFEAT_OFFLINE="1",
    )
    assert_refused(res, str(tmp_path / "empty/hub/checkpoints/resnet18-"), "--weights")
    assert time.perf_counter() - start < 120
    assert not (tmp_path / "store").exists()  # a refused run creates no store


def test_an_unreachable_host_is_known_at_once() -> None:
    from vidfeat.models.torchvision_zoo import _unreachable

    start = time.perf_counter()
    why = _unreachable("https://127.0.0.1/weights.pth", 2.0)  # nothing serves HTTPS here
    assert why is not None and "127.0.0.1 is unreachable" in why
    assert time.perf_counter() - start < 5


def test_unreachable_scheduler_names_address_and_timeout(tmp_path: Path, extracted: dict) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.perf_counter()
    res = vidfeat(
        "extract",
        str(extracted["videos"]),
        "-s",
        str(tmp_path / "store"),
        "--scheduler",
        address,
        "--connect-timeout",
        "2",
        "-q",
    )
    assert_refused(res, address, "within 2 s", "--connect-timeout")
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "store").exists()


def test_read_only_store_succeeds_when_nothing_is_left_to_write(
    tmp_path: Path, extracted: dict
) -> None:
    store = tmp_path / "store"
    shutil.copytree(extracted["store"], store)
    with read_only(store) as view:
        before = tree(view)
        args = ("-s", str(view), "--name", "feats", *TINY, "-q")
        done = vidfeat("extract", str(extracted["videos"]), *args)
        assert done.returncode == 0, done.stderr
        assert "8 already stored" in done.stdout
        assert "Traceback" not in done.stderr
        refused = vidfeat("extract", str(extracted["root"] / "more"), *args)
        assert_refused(refused, "is not writable", "--store")
        assert tree(view) == before


def test_read_only_runs_dir_is_refused_before_training(tmp_path: Path, extracted: dict) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    with read_only(runs) as view:
        res = vidfeat("train", str(extracted["store"]), "--epochs", "1", "--runs-dir", str(view))
        assert_refused(res, str(view), "--runs-dir")
        assert tree(view) == {}


def test_train_on_a_corrupt_part_names_it_and_points_to_verify(
    tmp_path: Path, extracted: dict
) -> None:
    store = tmp_path / "store"
    shutil.copytree(extracted["store"], store)
    chunk = next(p for p in (store / "featuresets/feats/parts").rglob("values/c/*/*"))
    chunk.write_bytes(chunk.read_bytes()[:50])
    res = vidfeat("train", str(store), "feats", "--epochs", "1", "--runs-dir", str(tmp_path / "r"))
    part = chunk.relative_to(store / "featuresets/feats").parts[:2]
    assert_refused(res, "/".join(part), f"vidfeat verify {store} feats")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_in_train_saves_the_best_epoch_so_far(
    tmp_path: Path, extracted: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidfeat.trainer import loop

    real = loop.train_one_epoch
    calls = {"n": 0}

    def interrupted_at_epoch_3(*args: object) -> float:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "train_one_epoch", interrupted_at_epoch_3)
    runs = tmp_path / "runs"
    args = ["train", str(extracted["store"]), "--epochs", "9", "--runs-dir", str(runs)]
    res = runner.invoke(app, [*args, "--name", "cut", "--hidden", "8"])
    assert res.exit_code == 130, res.output
    assert f"saved in {runs / 'cut'}, marked interrupted" in res.output
    metrics = json.loads((runs / "cut/metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["epochs_run"] == 2
    assert (runs / "cut/model.pt").exists()
    assert json.loads((runs / "index.jsonl").read_text())["interrupted"] is True

    calls["n"] = 2  # the next epoch is the first of the run, and it is interrupted
    res = runner.invoke(app, [*args, "--name", "none", "--hidden", "8"])
    assert res.exit_code == 130 and "nothing saved" in res.output
    assert not (runs / "none").exists()


# ------------------------------------------------------------------ progress, dashboard


def test_progress_counts_videos_within_one_part(tmp_path: Path) -> None:
    videos = tmp_path / "videos"  # long enough that each video is seen to finish
    make_dataset(videos, SynthConfig(classes=2, videos_per_class=4, frames=250, size=96))
    res = vidfeat(
        "extract",
        str(videos),
        "-s",
        str(tmp_path / "store"),
        *TINY,
        "--all",
        "--videos-per-part",
        "8",
        "--decode-threads",
        "1",
        FORCE_COLOR="1",  # rich draws the live bar as on a terminal
        COLUMNS="160",
    )
    assert res.returncode == 0, res.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", res.stderr)
    counts = {int(n) for n in re.findall(r"(\d+)/8 videos", plain)}
    assert len(counts & set(range(1, 8))) >= 3, sorted(counts)  # not 0 → 8 in one jump
    assert re.search(r"\d:\d\d:\d\d eta", plain), plain[-400:]


def test_dashboard_link_serves_the_status_page() -> None:
    import urllib.request

    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
        url = cluster.dashboard_link
        body = urllib.request.urlopen(url, timeout=60).read().decode()
    assert "bokeh" in body.lower() and "needs bokeh" not in body.lower()


# ------------------------------------------------------------------ runs that travel


def test_run_evaluates_and_predicts_from_another_folder(tmp_path: Path, extracted: dict) -> None:
    run = extracted["root"] / "runs" / extracted["run"]
    config = json.loads((run / "config.json").read_text())
    assert config["store"] == str(extracted["store"])  # absolute, though typed as "store"
    assert config["spec"]["backbone"] == "tiny" and config["classes"] == ["ramp_down", "ramp_up"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ev = vidfeat("evaluate", str(run), cwd=elsewhere)
    assert ev.returncode == 0, ev.stderr
    # The run alone predicts: the store may be gone. A folder is taken as extract takes it.
    moved = shutil.copytree(run, tmp_path / "run-copy")
    cfg = json.loads((moved / "config.json").read_text()) | {"store": str(tmp_path / "gone")}
    (moved / "config.json").write_text(json.dumps(cfg))
    pred = vidfeat("predict", str(moved), str(extracted["videos"] / "ramp_up"), cwd=elsewhere)
    assert pred.returncode == 0, pred.stderr
    assert len(pred.stdout.splitlines()) == 4 and "ramp_" in pred.stdout


def test_predict_fails_loudly(tmp_path: Path, extracted: dict) -> None:
    run = str(extracted["root"] / "runs" / extracted["run"])
    assert_refused(vidfeat("predict", run, str(tmp_path / "nope.mp4")), "nope.mp4")
    assert_refused(vidfeat("predict", run, str(extracted["videos"]), "--top-k", "0"), "--top-k")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    res = vidfeat("predict", run, str(broken))
    assert_refused(res, "1 of 1 videos")
    assert f"{broken}: failed:" in res.stderr


def test_runs_shows_featureset_and_split_and_filters(tmp_path: Path, extracted: dict) -> None:
    runs = extracted["root"] / "runs"
    res = vidfeat("runs", str(runs))
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()
    assert "featureset" in header and "split" in header
    assert all("feats" in r and "random 0.2 seed 0" in r for r in rows)
    assert vidfeat("runs", str(runs), "--featureset", "other").stdout.startswith("no runs")
    entries = json.loads(vidfeat("runs", str(runs), "--json", "--featureset", "feats").stdout)
    assert entries and {e["featureset"] for e in entries} == {"feats"}


# ------------------------------------------------------------------ output and flags


def test_piped_tables_keep_every_name_whole(extracted: dict) -> None:
    models = vidfeat("models", COLUMNS="40")
    assert models.returncode == 0
    assert re.search(r"^efficientnet_lite0\s", models.stdout, re.M), models.stdout[:300]
    assert "…" not in models.stdout
    listing = vidfeat("ls", str(extracted["store"]), COLUMNS="40")
    assert re.search(r"^feats\s+tiny\s+mode=frames, frames=16\s+8\s", listing.stdout, re.M)
    for command in (["models"], ["ls", str(extracted["store"])]):
        doc = json.loads(vidfeat(*command, "--json").stdout)
        assert isinstance(doc, list) and doc


def test_info_prints_readable_fields_and_failure_reasons(tmp_path: Path, extracted: dict) -> None:
    store = tmp_path / "store"
    shutil.copytree(extracted["store"], store)
    bad = tmp_path / "in/bad"
    bad.mkdir(parents=True)
    for i in range(5):
        (bad / f"broken{i}.mp4").write_bytes(b"garbage" * (i + 1))
    res = vidfeat("extract", str(tmp_path / "in"), "-s", str(store), "--name", "feats", *TINY, "-q")
    assert res.returncode == 0, res.stderr
    out = vidfeat("info", str(store), "feats").stdout
    spec = out[out.index("spec:") : out.index("videos:")]
    assert not re.search(r"None|[{}'\[\]]", spec), spec  # no Python reprs
    assert "sampling: mode=frames, frames=16" in out
    assert re.search(r"^    bad/broken0\.mp4: ", out, re.M)  # a reason, not just a count
    assert "… and 2 more (--json lists all)" in out


def test_help_reads_plainly() -> None:
    for command in (["extract"], ["info"], ["train"], ["rm"]):
        res = vidfeat(*command, "-h", COLUMNS="120")
        assert res.returncode == 0, res.stderr
        assert "<bool>" not in res.stdout and "{" not in res.stdout, res.stdout
    assert "Usage: vidfeat info [OPTIONS] STORE NAME" in vidfeat("info", "-h").stdout
    assert "Usage: vidfeat [OPTIONS] COMMAND" in vidfeat("-h").stdout


def test_trainer_knobs_are_flags(tmp_path: Path, extracted: dict) -> None:
    store, runs = str(extracted["store"]), tmp_path / "runs"
    args = ["train", store, "--runs-dir", str(runs), "--hidden", "8", "--epochs", "4"]
    res = vidfeat(
        *args,
        "--name",
        "knobs",
        "--schedule",
        "constant",
        "--warmup-epochs",
        "0",
        "--patience",
        "0",
        "--grad-clip",
        "0.5",
        "--head",
        "transformer",
        "--attention-heads",
        "2",
        "--lr",
        "0.01",
    )
    assert res.returncode == 0, res.stderr
    config = json.loads((runs / "knobs/config.json").read_text())
    assert (config["schedule"], config["grad_clip"], config["attention_heads"]) == (
        "constant",
        0.5,
        2,
    )
    history = (runs / "knobs/history.csv").read_text().splitlines()[1:]
    assert len(history) == 4  # patience 0: no early stop
    assert {row.split(",")[-1] for row in history} == {"0.01"}  # constant: no decay
    assert_refused(vidfeat(*args, "--schedule", "linear"), "--schedule")
    toml = tmp_path / "base.toml"
    toml.write_text('hidden = 8\nschedule = "constant"\n')
    sweep = vidfeat(
        "sweep", store, "--grid", "head=meanpool", "--epochs", "1", "--runs-dir", str(runs),
        "--config", str(toml),
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    newest = max(runs.glob("*meanpool*"), key=lambda p: p.stat().st_mtime)
    assert json.loads((newest / "config.json").read_text())["schedule"] == "constant"


def test_rm_asks_refuses_while_written_and_removes(tmp_path: Path, extracted: dict) -> None:
    from vidfeat.store import open_store
    from vidfeat.store.leases import writer_lease

    store = tmp_path / "store"
    shutil.copytree(extracted["store"], store)
    before = tree(store)
    assert_refused(vidfeat("rm", str(store), "feats"), "--yes")  # stdin is not a terminal
    assert_refused(vidfeat("rm", str(store), "nope", "--yes"), "nope")
    fs = open_store(store).fs
    with writer_lease(fs, "featuresets/feats") as lease:
        assert (store / lease).exists()
        assert_refused(vidfeat("rm", str(store), "feats", "--yes"), "is being written")
        assert (store / "featuresets/feats/featureset.json").exists()
    assert not (store / lease).exists()
    unleased = {k: v for k, v in tree(store).items() if "writers" not in k}
    assert unleased == {k: v for k, v in before.items() if "writers" not in k}
    stale = store / "featuresets/feats/writers/old.json"  # a killed run's lease
    stale.write_text("{}")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    res = vidfeat("rm", str(store), "feats", "--yes")
    assert res.returncode == 0, res.stderr
    assert "removed feature set feats (8 videos" in res.stdout
    assert not (store / "featuresets/feats").exists()
    assert vidfeat("ls", str(store)).stdout.startswith("no feature sets")


def test_confusion_counts_are_readable_on_dark_cells(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from vidfeat.trainer import runs

    texts: list[tuple[str, str]] = []
    real_text = plt.Axes.text

    def record(self: plt.Axes, x: float, y: float, s: str, **kw: object) -> object:
        texts.append((s, str(kw.get("color"))))
        return real_text(self, x, y, s, **kw)

    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_top1": 0.5}]
    metrics = {"classes": ["a", "b"], "confusion": [[9, 1], [0, 4]]}
    plt.Axes.text = record  # type: ignore[method-assign]
    try:
        runs.plot_run(tmp_path, history, metrics)
    finally:
        plt.Axes.text = real_text  # type: ignore[method-assign]
    assert dict(texts) == {"9": "white", "1": "black", "0": "black", "4": "black"}
