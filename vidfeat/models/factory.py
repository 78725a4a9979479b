"""Backbones by name: ``create_backbone(name, weights=..., device=..., precision=...)``.

Names: registered ones (``efficientnet_lite0``, ``tiny``), any torchvision classification
model (``resnet50``, ``efficientnet_b0``, ``vit_b_16``, …) and ``timm:<model name>``.
"""

from __future__ import annotations

from vidfeat.errors import BackboneError
from vidfeat.models import efficientnet_lite, tiny  # noqa: F401 - importing registers them
from vidfeat.models.backbone import Backbone
from vidfeat.models.registry import BackboneInfo, Built, registered, registered_infos
from vidfeat.models.registry import registered_names as registered_names
from vidfeat.runtime import tune_malloc


def create_backbone(
    name: str,
    weights: str = "DEFAULT",
    device: str = "auto",
    precision: str = "auto",
    preprocess: str | None = None,
    resize_on: str = "host",
    engine: str = "torch",
) -> Backbone:
    """A backbone ready for the pipeline. ``engine``: torch, openvino, or auto (OpenVINO on
    the CPU where it converts and matches eager torch; Backbone.engine says which ran)."""
    tune_malloc()  # before the first forward pass: see vidfeat/runtime.py
    built = build_module(name, weights, preprocess)
    return Backbone(
        name,
        built.module,
        built.feature_dim,
        built.preprocess,
        built.weights_id,
        device,
        precision,
        resize_on=resize_on,
        engine=engine,
    )


def build_module(name: str, weights: str = "DEFAULT", preprocess: str | None = None) -> Built:
    """The plain torch module of a backbone with its weights, preprocessing and identity, and
    nothing else (``create_backbone`` wraps it for the pipeline). ``preprocess``: whose
    reference transform a weights file was trained with (a torchvision weights enum name such
    as IMAGENET1K_V1, or a timm pretrained tag)."""
    family = registered(name)
    if family is not None:
        if preprocess:
            raise BackboneError(
                f"--preprocess is for torchvision and timm backbones; {name} has one fixed "
                "preprocessing."
            )
        built = family[0](weights)
    elif name.startswith("timm:"):
        from vidfeat.models.timm_zoo import build_timm

        built = build_timm(name.removeprefix("timm:"), weights, preprocess)
    else:
        from vidfeat.models.torchvision_zoo import build_torchvision, torchvision_names

        if name not in torchvision_names():
            choices = ", ".join(registered_names())
            raise BackboneError(
                f"Unknown backbone {name!r}. Choices: {choices}, any torchvision classification "
                f"model (e.g. resnet50, efficientnet_b0, vit_b_16; see `vidfeat models`), or "
                f"timm:<name>."
            )
        built = build_torchvision(name, weights, preprocess)
    return built


def list_backbones(include_zoo: bool = True) -> list[BackboneInfo]:
    infos = registered_infos()
    if include_zoo:
        from vidfeat.models.torchvision_zoo import torchvision_infos

        infos += torchvision_infos()
    return infos
