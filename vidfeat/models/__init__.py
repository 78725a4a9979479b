"""Backbones (registry, families, factory) and the temporal heads. Public names load on
first use."""

from __future__ import annotations

from vidfeat.lazy import lazy_exports

_PUBLIC = {
    **dict.fromkeys(
        ["create_backbone", "build_module", "list_backbones", "registered_names"],
        "vidfeat.models.factory",
    ),
    **dict.fromkeys(["Backbone", "Preprocess"], "vidfeat.models.backbone"),
    "build_head": "vidfeat.models.heads",
}
__all__ = list(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
