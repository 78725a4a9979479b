"""The tensor vidfeat feeds a backbone equals what the weights' own reference transform makes
of the same decoded frame (timm's pretrained config through timm's transforms, torchvision's
``weights.transforms()``), on camera-like footage, downscaling from 720p and 1080p included."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidfeat.encode import encode_video
from vidfeat.models.backbone import Backbone, Preprocess
from vidfeat.models.efficientnet_lite import PREPROCESS as DEFAULT_PREPROCESS
from vidfeat.pipeline.decode import Geometry, decode_selected, probe
from vidfeat.synth import camera_like

MAX_MEAN_ABS = 2 / 255  # per pixel, in [0, 1] units


def timm_reference() -> tuple[Preprocess, object]:
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    return DEFAULT_PREPROCESS, create_transform(**resolve_data_config({}, model=model))


def torchvision_reference() -> tuple[Preprocess, object]:
    from torchvision.models import ResNet50_Weights

    from vidfeat.models.torchvision_zoo import _preprocess

    weights = ResNet50_Weights.IMAGENET1K_V1
    return _preprocess(weights), weights.transforms()


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("footage")
    out = {}
    for h, w in ((240, 320), (720, 1280), (1080, 1920)):
        out[h] = folder / f"camera_{h}p.mp4"
        options = {"crf": "18", "preset": "ultrafast"}
        encode_video(out[h], camera_like(h, w, 2, seed=h), 25, "libx264", "yuv420p", options)
    return out


@pytest.mark.parametrize("height", [240, 720, 1080])
@pytest.mark.parametrize("which", ["timm", "torchvision"])
def test_model_input_matches_the_weights_reference_transform(
    footage: dict[int, Path], height: int, which: str
) -> None:
    preprocess, transform = timm_reference() if which == "timm" else torchvision_reference()
    path = footage[height]
    index = probe(str(path))
    geometry = Geometry(preprocess.resize_size, preprocess.input_size, preprocess.interpolation)
    crops = next(decode_selected(str(path), index, np.arange(2), geometry)).frames
    backbone = Backbone("identity", torch.nn.Identity(), 3, preprocess, "", device="cpu")
    ours = backbone.normalise(crops)
    std = torch.tensor(preprocess.std).view(1, 3, 1, 1)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][:2]
    if which == "timm":  # PIL in, tensor out
        ref = torch.stack([transform(Image.fromarray(rgb)) for rgb in decoded])  # type: ignore[operator]
    else:  # uint8 tensor in, like torchvision.io.decode_* gives
        ref = torch.stack(
            [transform(torch.from_numpy(rgb).permute(2, 0, 1)) for rgb in decoded]  # type: ignore[operator]
        )
    assert ours.shape == ref.shape
    mean_abs = float(((ours - ref).abs() * std).mean())  # back to [0, 1] pixel units
    assert mean_abs <= MAX_MEAN_ABS, f"{which} {height}p: {mean_abs * 255:.2f}/255 per pixel"
