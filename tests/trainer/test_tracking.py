"""Runs go to the trackers teams use, read back through their own readers: a real MLflow
tracking server on 127.0.0.1 (MLflow's client), and TensorBoard's event reader."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from vidfeat.config import TrainConfig
from vidfeat.errors import ConfigError
from vidfeat.store import open_store
from vidfeat.store.exchange import Rows, import_rows
from vidfeat.trainer.loop import train

pytestmark = pytest.mark.slow  # an MLflow server takes seconds to start


def separable_rows(n_videos: int = 16, rows: int = 8, dim: int = 16) -> Rows:
    """Two classes whose features differ in their mean: a head learns them in a few epochs."""
    rng = np.random.default_rng(0)
    labels = ["a" if i % 2 else "b" for i in range(n_videos)]
    values = rng.normal(size=(n_videos * rows, dim)).astype(np.float32)
    for i, label in enumerate(labels):
        values[i * rows : (i + 1) * rows, 0] += 3.0 if label == "a" else -3.0
    offsets = np.arange(0, n_videos * rows + 1, rows)
    splits: list[str | None] = ["val" if i % 4 == 0 or i % 4 == 1 else "train" for i in range(16)]
    ids = [f"clip{i:02d}" for i in range(n_videos)]
    return Rows(values, offsets, ids, list(labels), splits)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    store = str(tmp_path_factory.mktemp("tracking") / "store")
    import_rows(open_store(store), "ext", separable_rows(), source="a test's random features")
    return store, "ext"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the MLflow server did not start in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_a_run_reads_back_from_mlflow_and_tensorboard(
    imported: tuple[str, str], mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    store, name = imported
    result = train(
        store=store,
        featureset=name,
        head="gru",
        hidden=8,
        epochs=3,
        patience=0,
        runs_dir=str(tmp_path / "runs"),
        mlflow=True,
        tensorboard=True,
    )
    assert result.metrics["top1"] == 1.0  # the classes are separable

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name(name)
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == result.run_dir.name
    assert run.data.params["head"] == "gru" and run.data.params["hidden"] == "8"
    assert run.data.metrics["final_top1"] == pytest.approx(result.metrics["top1"])
    history = client.get_metric_history(run.info.run_id, "val_top1")
    assert [m.step for m in history] == [1, 2, 3]
    spec = json.loads(run.data.tags["vidfeat.featureset_spec"])
    assert spec == open_store(store, "r").get_featureset(name).spec.to_json()
    assert spec["kind"] == "external"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "curves.png", "confusion.png", "config.json"} <= artifacts

    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("val_top1")] == [1, 2, 3]
    assert events.Scalars("final/top1")[0].value == pytest.approx(result.metrics["top1"])


def test_tracking_without_its_library_is_refused_before_training(
    imported: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    store, name = imported
    cfg = TrainConfig(store=store, featureset=name, runs_dir=str(tmp_path / "runs"), mlflow=True)
    with pytest.raises(ConfigError, match=r"pip install 'vidfeat\[mlflow\]'"):
        train(cfg)
    assert not (tmp_path / "runs").exists()


def test_400_classes_go_to_mlflow(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from tests.trainer.test_figures import many_class_rows

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    store = str(tmp_path / "store")
    import_rows(open_store(store), "k400", many_class_rows(400), source="a test")
    result = train(
        store=store,
        featureset="k400",
        head="meanpool",
        epochs=2,
        runs_dir=str(tmp_path / "runs"),
        mlflow=True,
    )
    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("k400").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final_top1"] == pytest.approx(result.metrics["top1"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "confusion.png", "confusion.csv", "metrics.json"} <= artifacts
