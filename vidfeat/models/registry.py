"""The backbone registry (timm style): families register themselves with
``@register_backbone``; ``factory`` imports the families and builds backbones by name.
This module imports no family, so families can import it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from vidfeat.models.backbone import Preprocess


@dataclass(frozen=True, slots=True)
class Built:
    """What a factory returns: the feature module and its identity."""

    module: nn.Module
    feature_dim: int
    preprocess: Preprocess
    weights_id: str


Factory = Callable[[str], Built]  # weights → Built


@dataclass(frozen=True, slots=True)
class BackboneInfo:
    name: str
    feature_dim: int | None  # None: only known once built
    input_size: int
    default_weights: str
    offline_ready: bool
    source: str


_REGISTRY: dict[str, tuple[Factory, Callable[[], BackboneInfo]]] = {}


def register_backbone(name: str, info: Callable[[], BackboneInfo]) -> Callable[[Factory], Factory]:
    def wrap(factory: Factory) -> Factory:
        _REGISTRY[name] = (factory, info)
        return factory

    return wrap


def registered(name: str) -> tuple[Factory, Callable[[], BackboneInfo]] | None:
    return _REGISTRY.get(name)


def registered_infos() -> list[BackboneInfo]:
    return [info() for _, info in _REGISTRY.values()]


def registered_names() -> list[str]:
    return sorted(_REGISTRY)
