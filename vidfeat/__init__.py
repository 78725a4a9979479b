"""vidfeat: videos → sharded feature store → fast temporal heads.

The public API::

    import vidfeat

    report = vidfeat.extract(inputs=["videos/"], store="store", frames=16)
    fset = vidfeat.open_store("store", mode="r").get_featureset(report.featureset)
    values, pts = fset.read("class_a/clip01.mp4")
    result = vidfeat.train(store="store", featureset=report.featureset, head="gru")

(docs/python.md has the whole API: sequences, xarray, a PyTorch dataset, export and import.)

Names load their modules on first use, so ``import vidfeat`` (and ``vidfeat --help``) stays
instant and imports neither torch, dask nor av.
"""

from __future__ import annotations

from vidfeat.lazy import lazy_exports
from vidfeat.version import __version__

_ERRORS = [
    "VidfeatError",
    "ConfigError",
    "InputError",
    "StoreError",
    "FeatureSetNotFound",
    "VideoNotFound",
    "SpecMismatch",
    "BackboneError",
    "WeightsUnavailable",
    "VideoDecodeError",
    "ExtractError",
    "TrainError",
]
_PUBLIC = {
    **dict.fromkeys(
        ["open_store", "Store", "FeatureSet", "FeatureSetSpec", "LoadedFeatures"], "vidfeat.store"
    ),
    **dict.fromkeys(["VideoRecord", "FailureRecord"], "vidfeat.store"),
    **dict.fromkeys(["extract", "ExtractReport"], "vidfeat.pipeline.runner"),
    **dict.fromkeys(["train", "RunResult"], "vidfeat.trainer.loop"),
    "create_backbone": "vidfeat.models.factory",
    **dict.fromkeys(
        ["ExtractConfig", "SamplingConfig", "BackboneConfig", "TrainConfig"], "vidfeat.config"
    ),
    **dict.fromkeys(_ERRORS, "vidfeat.errors"),
}
__all__ = ["__version__", *_PUBLIC]
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
