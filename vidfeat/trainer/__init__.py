"""Head-only training on cached features: data (rows from memory or from disk), the loop,
metrics, runs and figures, sweeps (many heads on one pass). Public names load on first use."""

from __future__ import annotations

from vidfeat.lazy import lazy_exports

_PUBLIC = {
    **dict.fromkeys(["train", "RunResult", "load_run", "evaluate"], "vidfeat.trainer.loop"),
    **dict.fromkeys(["FeatureData", "load_data", "sequence_positions"], "vidfeat.trainer.data"),
    **dict.fromkeys(["MemoryRows", "DiskRows", "ProjectedRows"], "vidfeat.trainer.rows"),
    "sweep": "vidfeat.trainer.sweep",
    "train_together": "vidfeat.trainer.multi",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
