"""A backbone: uint8 frames in, pooled feature vectors out, with exactly known preprocessing.

Frames arrive already resized (shorter side → ``resize_size``) and centre-cropped to
``input_size`` on the host, as uint8 NHWC. They travel to the device as uint8 (4x less traffic
than float32) and are normalised there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vidfeat.config import DEVICES, PRECISIONS, check_choice, check_interpolation
from vidfeat.errors import BackboneError, ConfigError


@dataclass(frozen=True, slots=True)
class Preprocess:
    input_size: int  # centre crop C
    resize_size: int  # shorter side S before the crop
    interpolation: str  # bilinear | bicubic | nearest | area
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        # The feature set records this name: it must be the filter the decoder applies.
        check_interpolation(self.interpolation)


def resolve_device(device: str) -> torch.device:
    """auto → cuda when there is one, else cpu. The one resolver of backbones and trainer."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but CUDA is not available here.")
    check_choice("device", device, DEVICES)
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    check_choice("precision", precision, PRECISIONS)
    if precision == "float16" and device.type == "cpu":
        raise BackboneError("float16 autocast is for CUDA; on the CPU use bfloat16 or float32.")
    return precision


class Backbone:
    """Call with a uint8 (B, H, W, 3) batch; get float32 (B, D) features as numpy."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        feature_dim: int,
        preprocess: Preprocess,
        weights_id: str,
        device: str = "auto",
        precision: str = "auto",
        channels_last: bool = True,
    ) -> None:
        self.name = name
        self.feature_dim = feature_dim
        self.preprocess = preprocess
        self.weights_id = weights_id
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = module.eval().to(self.device).to(memory_format=self.memory_format)
        mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(preprocess.std, dtype=torch.float32, device=self.device)
        # x/255 → (x/255 - mean)/std folded into one multiply-add
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
        self._shift = (-mean / std).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return (
            f"Backbone({self.name!r}, dim={self.feature_dim}, device={self.device.type}, "
            f"precision={self.precision}, input={self.preprocess.input_size})"
        )

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    def normalise(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (host) → normalised float32 NCHW on the device."""
        x = (
            torch.from_numpy(np.ascontiguousarray(batch))
            if isinstance(batch, np.ndarray)
            else batch
        )
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise BackboneError(
                f"Backbone {self.name} expects uint8 (B, H, W, 3) frames, got "
                f"{tuple(x.shape)} {x.dtype}."
            )
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()
        return (x * self._scale + self._shift).contiguous(memory_format=self.memory_format)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW → (B, D) float32."""
        with torch.inference_mode():
            if self.precision == "float32":
                out = self.module(x)
            else:
                dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float16
                with torch.autocast(self.device.type, dtype=dtype):
                    out = self.module(x)
            return out.float()

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            feats = self.forward_tensor(self.normalise(batch))
        result: np.ndarray = feats.cpu().numpy()
        return result

    def describe(self) -> dict[str, Any]:
        p = self.preprocess
        return {
            "backbone": self.name,
            "weights_id": self.weights_id,
            "feature_dim": self.feature_dim,
            "input_size": p.input_size,
            "resize_size": p.resize_size,
            "interpolation": p.interpolation,
            "mean": tuple(float(v) for v in p.mean),
            "std": tuple(float(v) for v in p.std),
            "precision": self.precision,
        }
