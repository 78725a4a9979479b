"""``--resize-on device``: frames travel at a bounded size and are resized and cropped on the
backbone's device. The features match the host path (cosine >= 0.99 per row) on camera-like
footage and on files shaped like real ones (SAR, rotation); it is its own feature set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from vidfeat.config import BackboneConfig, SamplingConfig
from vidfeat.encode import encode_video
from vidfeat.pipeline.decode import Geometry, decode_selected, probe
from vidfeat.pipeline.device_resize import device_batch, resize_crop
from vidfeat.pipeline.discovery import discover
from vidfeat.pipeline.engine import get_backbone, run_videos
from vidfeat.store import FeatureSetSpec
from vidfeat.synth import camera_like


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("footage")
    out = {}
    for h, w in ((240, 320), (360, 640), (1080, 1920)):
        out[f"{h}p"] = folder / f"camera_{h}p.mp4"
        options = {"crf": "18", "preset": "ultrafast"}
        encode_video(out[f"{h}p"], camera_like(h, w, 6, seed=h), 25, "libx264", "yuv420p", options)
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resize_crop_is_torchvisions_resize_then_centre_crop(interpolation: str) -> None:
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 180, 320, 3), np.uint8))
    geometry = Geometry(64, 56, interpolation)
    mode = (
        v2.InterpolationMode.BILINEAR
        if interpolation == "bilinear"
        else v2.InterpolationMode.BICUBIC
    )
    reference = v2.Compose([v2.Resize(64, interpolation=mode, antialias=True), v2.CenterCrop(56)])
    ours = resize_crop(frames, geometry).permute(0, 3, 1, 2).int()
    theirs = reference(frames.permute(0, 3, 1, 2)).int()
    assert ours.shape == theirs.shape == (3, 3, 56, 56)
    assert (ours - theirs).abs().max() <= 1  # uint8 rounding of two implementations


def test_device_batch_keeps_the_order_of_chunks_of_different_shapes() -> None:
    geometry = Geometry(32, 32)
    rng = np.random.default_rng(1)
    chunks = [
        rng.integers(0, 256, (k, h, w, 3), np.uint8)
        for k, h, w in [(2, 64, 96), (3, 48, 48), (1, 64, 96)]
    ]
    batch = device_batch(chunks, geometry, torch.device("cpu"))
    one_by_one = torch.cat([resize_crop(torch.from_numpy(c), geometry) for c in chunks])
    assert batch.shape == (6, 32, 32, 3) and torch.equal(batch, one_by_one)


def test_the_decoder_sends_the_displayed_frame_bounded_to_twice_the_resize(
    footage: dict[str, Path], files: dict[str, Path]
) -> None:
    geometry = Geometry(128, 112, on_device=True)
    for name, path, shape in [
        ("240p", footage["240p"], (240, 320)),  # under the bound: its own size, no host resize
        ("1080p", footage["1080p"], (256, 455)),  # over: the shorter side becomes 2 x 128
        ("sar", files["h264_sar.mp4"], (64, 114)),  # 96 x 64 at SAR 32/27 displays 114 x 64
        ("rotated", files["h264_rotated.mp4"], (96, 64)),  # a quarter turn: portrait
    ]:
        index = probe(str(path))
        frames = next(decode_selected(str(path), index, np.arange(2), geometry)).frames
        assert frames.shape[1:3] == shape, name


@pytest.mark.slow
def test_device_resize_features_match_the_host_path(
    footage: dict[str, Path], files: dict[str, Path], tmp_path: Path
) -> None:
    paths = [*footage.values(), files["h264_sar.mp4"], files["h264_rotated.mp4"]]
    videos = discover([str(p) for p in paths], "none")
    sampling = SamplingConfig(frames=4)
    host = get_backbone(BackboneConfig(device="cpu"))
    device = get_backbone(BackboneConfig(device="cpu", resize_on="device"))
    a, _ = run_videos(videos, host, sampling, 16)
    b, _ = run_videos(videos, device, sampling, 16)
    for x, y in zip(a, b, strict=True):
        assert x.error is None and y.error is None
        fa, pa, ia = x.rows()
        fb, pb, ib = y.rows()
        assert np.array_equal(ia, ib) and np.array_equal(pa, pb)
        cos = cosine(fa, fb)
        print(f"{x.video.video_id}: cosine per row min {cos.min():.5f}")
        assert cos.min() >= 0.99, x.video.video_id


def test_device_resize_is_its_own_feature_set_and_host_hashes_are_unchanged() -> None:
    host = get_backbone(BackboneConfig("tiny", weights="none", device="cpu"))
    device = get_backbone(BackboneConfig("tiny", weights="none", device="cpu", resize_on="device"))
    sampling = SamplingConfig().identity()
    spec_host = FeatureSetSpec(**host.describe(), sampling=sampling)
    spec_device = FeatureSetSpec(**device.describe(), sampling=sampling)
    assert "resize_on" not in spec_host.identity()  # sets made before the option keep their key
    assert spec_device.identity()["resize_on"] == "device"
    assert spec_host.default_name() != spec_device.default_name()
    assert FeatureSetSpec.from_json(spec_device.to_json()) == spec_device
    assert spec_device.diff(spec_host) == ["resize_on: 'device' != 'host'"]


@pytest.mark.needs_cuda
def test_device_resize_on_cuda_matches_the_host_path_on_the_cpu(footage: dict[str, Path]) -> None:
    videos = discover([str(p) for p in footage.values()], "none")
    sampling = SamplingConfig(frames=4)
    host = get_backbone(BackboneConfig(device="cpu", precision="float32"))
    gpu = get_backbone(BackboneConfig(device="cuda", resize_on="device"))
    a, _ = run_videos(videos, host, sampling, 16)
    b, _ = run_videos(videos, gpu, sampling, 16)
    for x, y in zip(a, b, strict=True):
        cos = cosine(x.rows()[0], y.rows()[0])
        print(f"{x.video.video_id}: cuda device resize vs cpu host, cosine min {cos.min():.5f}")
        assert cos.min() >= 0.99
