"""Run directories (config, metrics, history, checkpoint, plots) and the runs leaderboard."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from vidfeat.errors import TrainError
from vidfeat.trainer.figures import plot_run, save_figures
from vidfeat.uris import is_url

__all__ = [
    "absolute_store",
    "append_index",
    "leaderboard",
    "new_run_dir",
    "plot_run",
    "read_index",
    "save_figures",
    "write_history",
    "write_metrics",
]


def absolute_store(store: str) -> str:
    """The store as a run records it: a URL as given, a folder made absolute."""
    return store if is_url(store) else os.path.abspath(store)


def _unwritable(runs_dir: str, e: OSError) -> TrainError:
    return TrainError(
        f"Cannot write runs in {runs_dir} ({e.strerror or type(e).__name__}): "
        "pass --runs-dir a folder you can write."
    )


def new_run_dir(runs_dir: str, head: str, name: str | None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / (name or f"{stamp}-{head}")
    path, n = base, 1
    while True:  # mkdir is the claim: parallel sweep jobs never share a directory
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        except OSError as e:
            raise _unwritable(runs_dir, e) from None


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    with (path / "history.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, the confusion matrix one row a line (400 classes: 400 lines, not 160k),
    and confusion.csv: the full matrix with class names, for any number of classes."""
    confusion = metrics.get("confusion")
    if confusion is None:
        (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return
    text = json.dumps({**metrics, "confusion": "@CONFUSION@"}, indent=2)
    rows = ",\n    ".join(json.dumps(row) for row in confusion)
    (path / "metrics.json").write_text(
        text.replace('"@CONFUSION@"', f"[\n    {rows}\n  ]" if confusion else "[]")
    )
    with (path / "confusion.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *metrics["classes"]])
        for name, row in zip(metrics["classes"], confusion, strict=True):
            writer.writerow([name, *row])


def append_index(runs_dir: str, entry: dict[str, Any]) -> None:
    index = Path(runs_dir) / "index.jsonl"
    index.parent.mkdir(parents=True, exist_ok=True)
    with index.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def read_index(runs_dir: str) -> list[dict[str, Any]]:
    index = Path(runs_dir) / "index.jsonl"
    if not index.exists():
        raise TrainError(f"No runs in {runs_dir} (no index.jsonl). Train something first.")
    return [json.loads(line) for line in index.read_text().splitlines() if line.strip()]


def leaderboard(runs_dir: str) -> list[dict[str, Any]]:
    return sorted(read_index(runs_dir), key=lambda e: -e["val_top1"])
