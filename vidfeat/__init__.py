"""vidfeat: videos → sharded feature store → fast temporal heads.

Only light names are imported eagerly so that ``vidfeat --help`` stays instant; the public API
functions load their heavy modules on first use.
"""

from __future__ import annotations

from typing import Any

from vidfeat.version import __version__

__all__ = ["__version__", "create_backbone", "extract", "open_store", "train"]


def __getattr__(name: str) -> Any:
    if name == "open_store":
        from vidfeat.store import open_store

        return open_store
    if name == "extract":
        from vidfeat.pipeline.runner import extract

        return extract
    if name == "train":
        from vidfeat.trainer.loop import train

        return train
    if name == "create_backbone":
        from vidfeat.models.factory import create_backbone

        return create_backbone
    raise AttributeError(f"module 'vidfeat' has no attribute {name!r}")
