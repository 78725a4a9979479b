from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidfeat.errors import BackboneError, WeightsUnavailable
from vidfeat.models.efficientnet_lite import build_classifier, weights_file
from vidfeat.models.factory import create_backbone, registered_names


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDFEAT_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(
        BackboneError, match=r"Unknown backbone 'resnet9000'.*efficientnet_lite0, tiny"
    ):
        create_backbone("resnet9000")
    assert {"efficientnet_lite0", "tiny"} <= set(registered_names())


@pytest.mark.parametrize(
    ("name", "weights", "expect"),
    [
        ("efficientnet_lite0", "DEFAULT", (224, 256, "bicubic", (0.5, 0.5, 0.5), 1280)),
        ("resnet18", "none", (224, 256, "bilinear", (0.485, 0.456, 0.406), 512)),
        ("efficientnet_b0", "none", (224, 256, "bicubic", (0.485, 0.456, 0.406), 1280)),
        ("mobilenet_v3_small", "none", (224, 256, "bilinear", (0.485, 0.456, 0.406), 1024)),
        # timm floors 224 / crop_pct 0.95 = 235.8 (its own eval transform: Resize(235))
        ("timm:resnet18", "none", (224, 235, "bicubic", (0.485, 0.456, 0.406), 512)),
        ("tiny", "DEFAULT", (32, 36, "bilinear", (0.5, 0.5, 0.5), 32)),
    ],
)
def test_preprocessing_metadata_per_family(name: str, weights: str, expect: tuple) -> None:
    b = create_backbone(name, weights=weights, device="cpu")
    p = b.preprocess
    assert (p.input_size, p.resize_size, p.interpolation, p.mean, b.feature_dim) == expect
    out = b(frames(2, p.input_size))
    assert out.shape == (2, b.feature_dim) and out.dtype == np.float32
    assert b.weights_id.startswith("sha256:")


def test_default_weights_match_reference_implementation() -> None:
    """The name mapping onto timm loads strictly and gives the reference's logits."""
    from efficientnet_lite_pytorch import EfficientNet  # dev dependency: the reference

    ours, weights_id = build_classifier()
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_file())
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (ours.eval()(x) - ref.eval()(x)).abs().max().item()
    assert diff < 1e-4
    assert weights_id == "sha256:579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def test_deterministic_and_batch_equals_single_images() -> None:
    b = create_backbone("efficientnet_lite0", device="cpu")
    x = frames(4, 224, seed=1)
    batch = b(x)
    np.testing.assert_array_equal(batch, b(x))
    singles = np.concatenate([b(x[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(batch, singles, rtol=1e-4, atol=1e-4)


def test_offline_torchvision_default_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable, match=r"resnet18-f37072fd\.pth.*--weights none"):
        create_backbone("resnet18")
    with pytest.raises(BackboneError, match=r"Unknown --weights 'V9'.*IMAGENET1K_V1"):
        create_backbone("resnet18", weights="V9")


def test_bad_weight_files_get_clear_errors(tmp_path: Path) -> None:
    wrong_shapes = tmp_path / "wrong.pth"
    torch.save({"body.0.weight": torch.zeros(1, 1, 1, 1)}, wrong_shapes)
    with pytest.raises(BackboneError, match=r"wrong\.pth do not fit the model.*wrong shapes"):
        create_backbone("tiny", weights=str(wrong_shapes))
    not_a_dict = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_a_dict)
    with pytest.raises(BackboneError, match=r"list\.pth does not hold a state dict"):
        create_backbone("tiny", weights=str(not_a_dict))
    import pickle

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(BackboneError, match=r"Cannot load weights file .*evil\.pth"):
        create_backbone("tiny", weights=str(evil))
    good = tmp_path / "tiny.pth"
    torch.save(create_backbone("tiny").module.state_dict(), good)
    assert create_backbone("tiny", weights=str(good)).feature_dim == 32


def test_rejects_wrong_input() -> None:
    b = create_backbone("tiny")
    with pytest.raises(BackboneError, match=r"expects uint8 \(B, H, W, 3\)"):
        b(np.zeros((1, 32, 32, 3), np.float32))


@pytest.mark.needs_cuda
def test_default_backbone_cuda_bf16_matches_cpu_fp32() -> None:
    x = frames(16, 224, seed=2)
    cpu = create_backbone("efficientnet_lite0", device="cpu", precision="float32")(x)
    gpu_backbone = create_backbone("efficientnet_lite0", device="cuda", precision="bfloat16")
    gpu = gpu_backbone(x)
    cos = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    print(f"cosine per row: min {cos.min():.5f} mean {cos.mean():.5f}")
    assert cos.min() >= 0.99


def test_a_weights_file_takes_the_classic_or_the_named_preprocessing(tmp_path: Path) -> None:
    import torchvision

    from vidfeat.models.factory import build_module

    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    classic = build_module("resnet50", str(path)).preprocess
    assert (classic.resize_size, classic.input_size) == (256, 224)  # V1, not DEFAULT's V2 (232)
    v2 = build_module("resnet50", str(path), "IMAGENET1K_V2").preprocess
    assert (v2.resize_size, v2.interpolation) == (232, "bilinear")
    with pytest.raises(BackboneError, match=r"Unknown --preprocess 'V3'.*IMAGENET1K_V1"):
        build_module("resnet50", str(path), "V3")
    with pytest.raises(BackboneError, match="--preprocess is for torchvision and timm"):
        build_module("tiny", "DEFAULT", "IMAGENET1K_V1")


def test_a_timm_weights_file_takes_a_pretrained_tags_preprocessing(tmp_path: Path) -> None:
    import timm

    from vidfeat.models.factory import build_module

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    tagged = build_module("timm:resnet18", str(path), "a1_in1k").preprocess
    assert (tagged.resize_size, tagged.interpolation) == (235, "bicubic")  # crop_pct 0.95
    with pytest.raises(BackboneError, match=r"Unknown --preprocess 'nope'.*a1_in1k"):
        build_module("timm:resnet18", str(path), "nope")
