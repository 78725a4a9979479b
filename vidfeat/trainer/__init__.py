"""Head-only training on cached features: data, the loop, metrics, runs, sweeps. Public names
load on first use."""

from __future__ import annotations

from vidfeat.lazy import lazy_exports

_PUBLIC = {
    **dict.fromkeys(["train", "RunResult", "load_run", "evaluate"], "vidfeat.trainer.loop"),
    **dict.fromkeys(["FeatureData", "load_data", "sequence_positions"], "vidfeat.trainer.data"),
    "sweep": "vidfeat.trainer.sweep",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
