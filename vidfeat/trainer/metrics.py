"""Classification metrics from logits: top-1, top-5, macro-F1, per-class accuracy, confusion."""

from __future__ import annotations

from typing import Any

import torch


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[str]
) -> dict[str, Any]:
    n = len(classes)
    pred = logits.argmax(1)
    k = min(5, n)
    top5 = (logits.topk(k, 1).indices == labels.unsqueeze(1)).any(1).float().mean().item()
    confusion = torch.zeros(n, n, dtype=torch.int64)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)
    tp = confusion.diag().float()
    support = confusion.sum(1).float()
    predicted = confusion.sum(0).float()
    precision = tp / predicted.clamp_min(1)
    recall = tp / support.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    present = support > 0
    return {
        "top1": (pred == labels).float().mean().item(),
        "top5": top5,
        "macro_f1": f1[present].mean().item() if present.any() else 0.0,
        "per_class_accuracy": {c: recall[i].item() for i, c in enumerate(classes) if present[i]},
        "confusion": confusion.tolist(),
        "classes": classes,
        "n": len(labels),
    }
