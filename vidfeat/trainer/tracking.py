"""Experiment tracking: a training run also goes to MLflow (``--mlflow``) and/or TensorBoard
event files in its run directory (``--tensorboard``). Both libraries are optional extras,
imported only when asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidfeat.config import TrainConfig
from vidfeat.errors import ConfigError
from vidfeat.trainer.data import FeatureData

RUN_ARTIFACTS = (
    "config.json",
    "metrics.json",
    "history.csv",
    "confusion.csv",
    "curves.png",
    "confusion.png",
)
SCALARS = ("top1", "top5", "macro_f1")


class Tracker:
    """What the training loop tells a tracker; the base class tells nobody."""

    def start(self, cfg: TrainConfig, data: FeatureData, run_dir: Path) -> None: ...

    def epoch(self, epoch: int, values: dict[str, float]) -> None: ...

    def finish(self, run_dir: Path, metrics: dict[str, Any], status: str) -> None: ...


def _need(module: str, flag: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{flag} needs {extra}: pip install 'vidfeat[{extra}]' (or pip install {extra})."
        ) from None


class MLflowTracker(Tracker):
    """One MLflow run per training run, in the experiment named after the feature set, at
    MLFLOW_TRACKING_URI (MLflow's default: ./mlruns): the config as params, the feature set's
    name, hash and spec as tags, per-epoch and final metrics, and the run directory's files
    (config, metrics, history, plots, checkpoint) as artifacts."""

    def __init__(self) -> None:
        self.mlflow = _need("mlflow", "--mlflow", "mlflow")

    def start(self, cfg: TrainConfig, data: FeatureData, run_dir: Path) -> None:
        mlflow = self.mlflow
        mlflow.set_experiment(data.featureset)
        mlflow.start_run(run_name=run_dir.name)
        mlflow.log_params({k: "" if v is None else v for k, v in cfg.to_dict().items()})
        spec = data.featureset_meta.get("spec", {})
        mlflow.set_tags(
            {
                "vidfeat.featureset": data.featureset,
                "vidfeat.featureset_config_hash": data.config_hash,
                "vidfeat.featureset_spec": json.dumps(spec, sort_keys=True),
                "vidfeat.split": data.split_source,
                "vidfeat.run_dir": str(run_dir.resolve()),
            }
        )

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics({k: v for k, v in values.items() if k != "epoch"}, step=epoch)

    def finish(self, run_dir: Path, metrics: dict[str, Any], status: str) -> None:
        mlflow = self.mlflow
        if status != "FAILED":
            mlflow.log_metrics({f"final_{k}": float(metrics[k]) for k in SCALARS})
            mlflow.set_tag("vidfeat.interrupted", str(metrics.get("interrupted", False)))
            for name in (*RUN_ARTIFACTS, "model.pt"):
                if (run_dir / name).exists():
                    mlflow.log_artifact(str(run_dir / name))
        mlflow.end_run(status)


class TensorBoardTracker(Tracker):
    """Event files under ``<run dir>/tensorboard``: the per-epoch curves, the final metrics
    and the config as text (``tensorboard --logdir runs`` shows every run)."""

    def __init__(self) -> None:
        _need("tensorboard", "--tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        self.writer: Any = None

    def start(self, cfg: TrainConfig, data: FeatureData, run_dir: Path) -> None:
        self.writer = self._writer_class(log_dir=str(run_dir / "tensorboard"))
        config = json.dumps(cfg.to_dict(), indent=1)
        self.writer.add_text("config", f"featureset {data.featureset}\n\n    {config}")

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            if k != "epoch":
                self.writer.add_scalar(k, v, epoch)

    def finish(self, run_dir: Path, metrics: dict[str, Any], status: str) -> None:
        if status != "FAILED":
            for k in SCALARS:
                self.writer.add_scalar(f"final/{k}", float(metrics[k]), metrics["best_epoch"])
        self.writer.close()


def trackers(cfg: TrainConfig) -> list[Tracker]:
    """The trackers ``cfg`` asks for (checked before any training: a missing library is one
    line now, not after the epochs)."""
    out: list[Tracker] = []
    if cfg.mlflow:
        out.append(MLflowTracker())
    if cfg.tensorboard:
        out.append(TensorBoardTracker())
    return out
