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

from typing import TYPE_CHECKING

from vidfeat.lazy import lazy_exports
from vidfeat.version import __version__

if TYPE_CHECKING:  # the real types for mypy and IDEs; at run time _PUBLIC loads them lazily
    from vidfeat.config import (  # noqa: F401
        BackboneConfig,
        ExtractConfig,
        SamplingConfig,
        TrainConfig,
    )
    from vidfeat.errors import (  # noqa: F401
        BackboneError,
        ConfigError,
        ExtractError,
        FeatureSetNotFound,
        InputError,
        SpecMismatch,
        StoreError,
        TrainError,
        VideoDecodeError,
        VideoNotFound,
        VidfeatError,
        WeightsUnavailable,
        WorkerRefused,
    )
    from vidfeat.models.factory import create_backbone  # noqa: F401
    from vidfeat.pipeline.runner import ExtractReport, extract  # noqa: F401
    from vidfeat.store import (  # noqa: F401
        FailureRecord,
        FeatureSet,
        FeatureSetSpec,
        LoadedFeatures,
        Store,
        VideoRecord,
        open_store,
    )
    from vidfeat.trainer.loop import RunResult, train  # noqa: F401

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
    "WorkerRefused",
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
# tests/test_package.py checks that the imports above name exactly these modules and names.
__all__ = ["__version__", *_PUBLIC]
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
