"""Videos → features: discovery, frame-exact decoding, sampling, the worker engine and the
Dask runner. Public names load on first use (decoder processes import ``decode`` alone)."""

from __future__ import annotations

from vidfeat.lazy import lazy_exports

_PUBLIC = {
    **dict.fromkeys(["extract", "ExtractReport"], "vidfeat.pipeline.runner"),
    **dict.fromkeys(["discover", "VideoInput"], "vidfeat.pipeline.discovery"),
    **dict.fromkeys(["PartSummary", "PartTask"], "vidfeat.pipeline.tasks"),
    "run_part": "vidfeat.pipeline.remote",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
