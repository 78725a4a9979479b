"""Figures never cost a trained run, and stay bounded at Kinetics-400 class counts: a figure
that fails is one line on stderr with the run complete; 400 classes end to end (train,
evaluate, runs, predict's scoring, TensorBoard); the figures at 1000 classes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vidfeat.cli import app
from vidfeat.predict import evaluate_run, score_rows
from vidfeat.store import open_store
from vidfeat.store.exchange import Rows, import_rows
from vidfeat.trainer import figures
from vidfeat.trainer.loop import load_run, train


def many_class_rows(classes: int, per_class: int = 3, rows: int = 4, dim: int = 16) -> Rows:
    """``classes`` classes told apart by which feature is raised; the first video of each
    class validates."""
    rng = np.random.default_rng(0)
    n = classes * per_class
    values = rng.normal(scale=0.5, size=(n * rows, dim)).astype(np.float32)
    labels, splits = [], []
    for i in range(n):
        c = i // per_class
        values[i * rows : (i + 1) * rows, c % dim] += 2.0 + c // dim
        labels.append(f"class_{c:04d}")
        splits.append("val" if i % per_class == 0 else "train")
    ids = [f"v{i:05d}" for i in range(n)]
    offsets = np.arange(0, n * rows + 1, rows)
    return Rows(values, offsets, ids, labels, splits)  # type: ignore[arg-type]


def peak_rss_growth(work: object) -> tuple[float, int]:
    """(seconds, bytes the process's peak RSS rose above its RSS before) of ``work()``."""

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the RSS now
    before = status("VmRSS:")
    start = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - start, status("VmHWM:") - before


def test_a_failing_figure_is_one_line_and_the_run_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib.figure

    store = str(tmp_path / "store")
    import_rows(open_store(store), "ten", many_class_rows(10), source="a test")

    def out_of_memory(*args: object, **kw: object) -> None:
        raise MemoryError("Unable to allocate 18.0 GiB for an array with shape (400, 400)")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", out_of_memory)
    runs = tmp_path / "runs"
    result = train(store=store, featureset="ten", head="meanpool", epochs=2, runs_dir=str(runs))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: figures not drawn"), err
    assert "confusion.png: MemoryError: Unable to allocate" in err
    assert f"the run in {result.run_dir} is complete" in err
    for name in ("config.json", "metrics.json", "history.csv", "model.pt", "confusion.csv"):
        assert (result.run_dir / name).exists(), name
    assert not (result.run_dir / "confusion.png").exists()
    assert (
        json.loads((result.run_dir / "metrics.json").read_text())["top1"]
        == (result.metrics["top1"])
    )
    assert json.loads((runs / "index.jsonl").read_text())["run"] == str(result.run_dir)
    assert evaluate_run(result.run_dir)["top1"] == pytest.approx(result.metrics["top1"])


@pytest.mark.slow
def test_400_classes_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    rows = many_class_rows(400)
    import_rows(open_store(store), "k400", rows, source="a test")
    runs = tmp_path / "runs"
    result = train(
        store=store,
        featureset="k400",
        head="meanpool",
        hidden=64,
        epochs=3,
        lr=1e-2,
        runs_dir=str(runs),
        tensorboard=True,
    )
    assert capsys.readouterr().err == ""
    run = result.run_dir
    assert result.metrics["top1"] > 0.02  # learning: chance is 0.0025
    for name in ("curves.png", "confusion.png", "confusion.csv", "model.pt"):
        assert (run / name).exists(), name
    import matplotlib.image

    height, width = matplotlib.image.imread(run / "confusion.png").shape[:2]
    assert (width, height) == (1400, 700)  # fixed, whatever the class count
    matrix = np.loadtxt(run / "confusion.csv", delimiter=",", skiprows=1, usecols=range(1, 401))
    assert matrix.shape == (400, 400) and matrix.sum() == 400
    assert (matrix == np.array(result.metrics["confusion"])).all()
    metrics_json = (run / "metrics.json").read_text()
    assert len(metrics_json.splitlines()) < 4 * 400  # a line a confusion row, not 160k cells

    again = evaluate_run(run)
    assert again["top1"] == pytest.approx(result.metrics["top1"]) and again["n"] == 400
    out = CliRunner().invoke(app, ["runs", str(runs)])
    assert out.exit_code == 0 and "k400" in out.output
    out = CliRunner().invoke(app, ["evaluate", str(run)])
    assert out.exit_code == 0 and "(n=400)" in out.output

    model, config, pca = load_run(run)
    probs = score_rows(model, config, pca, rows.values[:4].astype(np.float16))
    assert probs.shape == (400,) and torch.isclose(probs.sum(), torch.tensor(1.0))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_top1")] == [1, 2, 3]


@pytest.mark.parametrize("classes", [400, 1000])
def test_figures_stay_bounded_in_time_memory_and_size(tmp_path: Path, classes: int) -> None:
    """The old C x C drawing took 13 s and 1.25 GiB at 101 classes, and about 18 GiB at 400."""
    rng = np.random.default_rng(0)
    confusion = rng.poisson(0.02, size=(classes, classes)) + np.diag(rng.integers(0, 5, classes))
    names = [f"a long class name number {c}" for c in range(classes)]
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "val_top1": 0.1} for e in (1, 2)
    ]
    metrics = {"classes": names, "confusion": confusion.tolist()}
    figures.plot_curves(tmp_path, history, metrics)  # pays matplotlib's imports
    seconds, grown = peak_rss_growth(lambda: figures.save_figures(tmp_path, history, metrics))
    print(f"{classes} classes: figures in {seconds:.2f} s, peak RSS +{grown / 2**20:.0f} MiB")
    assert seconds < 10 and grown < 300 * 2**20
    assert (tmp_path / "confusion.png").stat().st_size < 1 << 20
