"""The feature store (format 2, see docs/store-format.md). Never imports torch or dask."""

from vidfeat.store.catalog import Catalog, Done, Stats, VideoEntry
from vidfeat.store.featureset import FeatureSet, LazyFeatures, LoadedFeatures
from vidfeat.store.maintenance import (
    compact_store,
    gc_store,
    remove_featureset,
    summarize,
    verify_featureset,
    verify_store,
)
from vidfeat.store.records import CommitRecord, FailureRecord, VideoRecord
from vidfeat.store.spec import FeatureSetSpec, check_name
from vidfeat.store.store import Store, open_store
from vidfeat.store.writer import CommitResult, PartWriter

__all__ = [
    "Catalog",
    "CommitRecord",
    "CommitResult",
    "Done",
    "FailureRecord",
    "FeatureSet",
    "FeatureSetSpec",
    "LazyFeatures",
    "LoadedFeatures",
    "PartWriter",
    "Stats",
    "Store",
    "VideoEntry",
    "VideoRecord",
    "check_name",
    "compact_store",
    "gc_store",
    "open_store",
    "remove_featureset",
    "summarize",
    "verify_featureset",
    "verify_store",
]
