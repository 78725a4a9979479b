"""A run's figures: curves.png and confusion.png, bounded in size and time at any number of
classes, and never the reason a trained run is lost."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

# Up to this many classes confusion.png is the matrix with its counts; above, it shows the most
# confused pairs and the per-class accuracy, at a fixed size (the full matrix: confusion.csv).
FULL_MATRIX_CLASSES = 40
TOP_PAIRS = 25


def save_figures(path: Path, history: list[dict[str, float]], metrics: dict[str, Any]) -> bool:
    """curves.png and confusion.png, after everything else of the run is written: a figure
    that fails (a missing matplotlib, memory) is one line on stderr, never a lost run.
    Returns whether every figure was drawn."""
    failed = []
    for name, draw in (("curves.png", plot_curves), ("confusion.png", plot_confusion)):
        try:
            draw(path, history, metrics)
        except Exception as e:  # MemoryError included: the run is saved already
            message = " ".join(str(e).split())[:200]
            failed.append(f"{name}: {type(e).__name__}" + (f": {message}" if message else ""))
    if failed:
        print(
            f"warning: figures not drawn ({'; '.join(failed)}); the run in {path} is complete "
            "without them",
            file=sys.stderr,
        )
    return not failed


def plot_run(path: Path, history: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    """Both figures; raises if one fails (``save_figures`` is the run's safe entry)."""
    plot_curves(path, history, metrics)
    plot_confusion(path, history, metrics)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path: Path, history: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    try:
        a.plot(epochs, [h["train_loss"] for h in history], label="train")
        a.plot(epochs, [h["val_loss"] for h in history], label="val")
        a.set(xlabel="epoch", ylabel="loss", title="loss")
        a.legend()
        b.plot(epochs, [h["val_top1"] for h in history])
        b.set(xlabel="epoch", ylabel="top-1", title="validation accuracy", ylim=(0, 1))
        fig.tight_layout()
        fig.savefig(path / "curves.png", dpi=100)
    finally:
        plt.close(fig)


def plot_confusion(path: Path, history: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    if len(metrics["classes"]) > FULL_MATRIX_CLASSES:
        _plot_confusion_summary(path, metrics)
        return
    plt = _pyplot()
    classes = metrics["classes"]
    fig, ax = plt.subplots(figsize=(max(4, len(classes) * 0.6), max(4, len(classes) * 0.6)))
    try:
        ax.imshow(metrics["confusion"], cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=90)
        ax.set_yticks(range(len(classes)), classes)
        ax.set(xlabel="predicted", ylabel="true", title="confusion (validation)")
        darkest = max((max(row) for row in metrics["confusion"]), default=0)
        for i, row in enumerate(metrics["confusion"]):
            for j, v in enumerate(row):
                colour = "white" if v > darkest / 2 else "black"  # readable on any cell
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color=colour)
        fig.tight_layout()
        fig.savefig(path / "confusion.png", dpi=100)
    finally:
        plt.close(fig)


def _plot_confusion_summary(path: Path, metrics: dict[str, Any]) -> None:
    """Many classes: the TOP_PAIRS most confused (true → predicted) pairs and every class's
    accuracy, sorted, with the worst named; one fixed-size figure whatever the class count."""
    plt = _pyplot()
    classes = metrics["classes"]
    confusion = np.asarray(metrics["confusion"], np.int64)
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:TOP_PAIRS]
    pairs = [(int(i), int(j)) for i, j in zip(*np.unravel_index(flat, off.shape), strict=True)]
    pairs = [(i, j) for i, j in pairs if off[i, j] > 0]
    support = confusion.sum(1)
    present = np.flatnonzero(support > 0)
    accuracy = np.diag(confusion)[present] / support[present]
    order = np.argsort(accuracy, kind="stable")
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 7), width_ratios=(1, 1.2))
    try:
        labels = [f"{_short(classes[i])} → {_short(classes[j])}" for i, j in pairs]
        a.barh(range(len(pairs)), [off[i, j] for i, j in pairs], color="tab:red")
        a.set_yticks(range(len(pairs)), labels, fontsize=7)
        a.invert_yaxis()
        a.set(
            xlabel="validation clips",
            title=f"{len(pairs)} most confused pairs (true → predicted)",
        )
        b.plot(range(len(order)), accuracy[order], color="tab:blue")
        b.set(
            xlabel=f"class, worst first ({len(present)} with validation clips)",
            ylabel="accuracy",
            ylim=(0, 1.05),
            title="per-class accuracy (full matrix: confusion.csv)",
        )
        worst = "\n".join(f"{accuracy[k]:.2f}  {_short(classes[present[k]])}" for k in order[:15])
        box = {"facecolor": "white", "alpha": 0.8}
        b.text(0.02, 0.98, "worst:\n" + worst, transform=b.transAxes, ha="left", va="top",
               fontsize=7, family="monospace", bbox=box)  # fmt: skip
        fig.tight_layout()
        fig.savefig(path / "confusion.png", dpi=100)
    finally:
        plt.close(fig)


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
