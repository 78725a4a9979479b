"""Resize and centre-crop on the backbone's device (``--resize-on device``).

The decoder sends displayed frames at a bounded size (Geometry.on_device); here they are
resized so that the shorter side is ``geometry.resize`` and centre-cropped, in the order and
with the rounding of the weights' reference transform on a uint8 tensor (torchvision's
``Resize(antialias=True)`` → ``CenterCrop``): interpolate in float, round back to uint8.
Frames of different videos have different shapes; each run of one shape is resized at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidfeat.pipeline.decode import Geometry
from vidfeat.pipeline.sampling import center_crop_box, resize_dims

_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area"}


def _to_device(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x


def resize_crop(x: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """uint8 (B, H, W, 3) displayed frames → uint8 (B, crop, crop, 3), on x's device."""
    h, w = int(x.shape[1]), int(x.shape[2])
    new_w, new_h = resize_dims(w, h, geometry.resize)
    mode = _MODES[geometry.interpolation]
    smooth = mode in ("bilinear", "bicubic")
    y = F.interpolate(
        x.permute(0, 3, 1, 2).float(),
        size=(new_h, new_w),
        mode=mode,
        antialias=smooth,
        align_corners=False if smooth else None,
    )
    x0, y0 = center_crop_box(new_w, new_h, geometry.crop)
    y = y[..., y0 : y0 + geometry.crop, x0 : x0 + geometry.crop]
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def device_batch(
    chunks: Sequence[np.ndarray], geometry: Geometry, device: torch.device
) -> torch.Tensor:
    """The chunks' frames (each chunk one shape), resized and cropped on ``device``, in order:
    uint8 (sum of k, crop, crop, 3) there, ready for the backbone."""
    out: list[torch.Tensor] = []
    run: list[np.ndarray] = []
    for frames in chunks:
        if run and frames.shape[1:] != run[0].shape[1:]:
            out.append(resize_crop(_to_device(np.concatenate(run), device), geometry))
            run = []
        run.append(frames)
    if run:
        out.append(resize_crop(_to_device(np.concatenate(run), device), geometry))
    return torch.cat(out)
