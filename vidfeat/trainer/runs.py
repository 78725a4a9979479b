"""Run directories (config, metrics, history, checkpoint, plots) and the runs leaderboard."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

from vidfeat.errors import TrainError
from vidfeat.uris import is_url


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


def plot_run(path: Path, history: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [h["train_loss"] for h in history], label="train")
    a.plot(epochs, [h["val_loss"] for h in history], label="val")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    a.legend()
    b.plot(epochs, [h["val_top1"] for h in history])
    b.set(xlabel="epoch", ylabel="top-1", title="validation accuracy", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path / "curves.png", dpi=100)
    plt.close(fig)
    classes = metrics["classes"]
    fig, ax = plt.subplots(figsize=(max(4, len(classes) * 0.6), max(4, len(classes) * 0.6)))
    ax.imshow(metrics["confusion"], cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (validation)")
    darkest = max((max(row) for row in metrics["confusion"]), default=0)
    for i, row in enumerate(metrics["confusion"]):
        for j, v in enumerate(row):
            colour = "white" if v > darkest / 2 else "black"  # readable on dark and light cells
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color=colour)
    fig.tight_layout()
    fig.savefig(path / "confusion.png", dpi=100)
    plt.close(fig)


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
