"""A tiny CNN with seeded random weights, for fast tests (never downloads anything)."""

from __future__ import annotations

import torch
from torch import nn

from vidfeat.errors import BackboneError
from vidfeat.models.backbone import Preprocess
from vidfeat.models.registry import BackboneInfo, Built, register_backbone
from vidfeat.models.weights import (
    is_weights_file,
    load_state_dict_file,
    load_strict,
    seeded_init,
    state_dict_sha256,
)

TINY_DIM = 32
TINY_PREPROCESS = Preprocess(32, 36, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, TINY_DIM, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def _info() -> BackboneInfo:
    return BackboneInfo("tiny", TINY_DIM, 32, "seeded random init", True, "vidfeat (tests)")


@register_backbone("tiny", _info)
def build_tiny(weights: str) -> Built:
    with seeded_init():
        module = TinyCNN()
    if weights not in ("DEFAULT", "none"):
        if not is_weights_file(weights):
            raise BackboneError(f"Invalid --weights {weights!r} for tiny: DEFAULT, none or a file.")
        load_strict(module, load_state_dict_file(weights), weights)
    return Built(module, TINY_DIM, TINY_PREPROCESS, state_dict_sha256(module.state_dict()))
