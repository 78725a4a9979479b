"""The OpenVINO engine (vidfeat/models/openvino_engine.py): the same values as eager torch at
the store's precision, a recorded fallback to torch, and a conversion cache that is rebuilt,
never used, when it is damaged or another model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vidfeat.errors import BackboneError
from vidfeat.models import openvino_engine
from vidfeat.models.backbone import Backbone
from vidfeat.models.factory import create_backbone
from vidfeat.models.tiny import TINY_PREPROCESS
from vidfeat.store.spec import identity_fields

pytest.importorskip("openvino")


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDFEAT_CACHE", str(tmp_path / "cache"))


def frames(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def within_one_float16_step(got: np.ndarray, want: np.ndarray) -> bool:
    """After the store's float16 rounding, no value is further from the reference than one
    float16 step at the scale of the features (values near 0 have finer steps, which a 1e-6
    difference crosses many of; that is not a difference the store can tell from noise)."""
    step = float(np.spacing(np.float16(np.abs(want).max())))
    diff = np.abs(got.astype(np.float16).astype(np.float32) - want.astype(np.float16))
    return float(diff.max()) <= step


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "efficientnet_lite0"])
def test_openvino_float32_gives_eager_values_at_float16(name: str) -> None:
    ov = create_backbone(name, device="cpu", engine="openvino")
    eager = create_backbone(name, device="cpu", engine="torch")
    assert (ov.engine, eager.engine) == ("openvino", "torch")
    assert ov.engine_note.startswith("openvino float32") and "converted" in ov.engine_note
    x = frames(16, ov.input_size)
    got, want = ov(x), eager(x)
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(got), torch.from_numpy(want))
    assert float(cos.min()) > 0.99999
    assert within_one_float16_step(got, want)
    assert float((got.astype(np.float16) == want.astype(np.float16)).mean()) > 0.98
    # float32 computed, float16 stored: one feature set for both engines; float32 stored: not
    assert identity_fields(ov.describe(), "float16") == identity_fields(eager.describe(), "float16")
    assert identity_fields(ov.describe(), "float32")["engine"] == "openvino"
    assert identity_fields(eager.describe(), "float32")["engine"] == ""
    assert ov._openvino is not None and "float32" in ov._openvino.runtime_precision  # pinned
    again = create_backbone(name, device="cpu", engine="openvino")
    assert "from its cache" in again.engine_note
    np.testing.assert_array_equal(again(x), got)


def test_every_load_is_checked_against_eager_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs at each load, from the cache too: it catches what no cache key sees, a
    backbone whose code changed under the same name and weights."""
    checks: list[str] = []
    original = Backbone._parity

    def counted(self: Backbone, compiled: object) -> str:
        checks.append(original(self, compiled))
        return checks[-1]

    monkeypatch.setattr(Backbone, "_parity", counted)
    for _ in range(2):
        assert _backbone(_Doubled(), "auto").engine == "openvino"
    assert checks == ["", ""]
    # Same name, same weights id, another forward: the cached model is the old one.
    stale = _backbone(_Tripled(), "auto")
    assert "from its cache" not in stale.engine_note
    assert stale.engine == "torch" and "differ from eager torch" in stale.engine_note


class _Doubled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (2 * x).mean(dim=(2, 3))


class _Tripled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (3 * x - 1).mean(dim=(2, 3))


def test_auto_falls_back_on_any_openvino_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the CPU plugin is unhappy")

    monkeypatch.setattr(openvino_engine, "compile_module", broken)
    b = create_backbone("tiny", device="cpu", engine="auto")
    assert (b.engine, b.engine_note) == (
        "torch",
        "torch: OpenVINO failed: RuntimeError: the CPU plugin is unhappy",
    )


def test_an_unwritable_cache_costs_a_conversion_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VIDFEAT_CACHE", str(blocker))
    for _ in range(2):
        b = create_backbone("tiny", device="cpu", engine="auto")
        assert b.engine == "openvino" and "converted" in b.engine_note


def test_bfloat16_through_openvino_is_its_own_feature_set() -> None:
    bf16 = create_backbone("tiny", device="cpu", precision="bfloat16", engine="auto")
    f32 = create_backbone("tiny", device="cpu", precision="float32", engine="auto")
    assert bf16.engine == "openvino" and bf16.describe()["engine"] == "openvino"
    assert f32.engine == "openvino"
    assert bf16._openvino is not None and "bfloat16" in bf16._openvino.runtime_precision
    torch_bf16 = create_backbone("tiny", device="cpu", precision="bfloat16", engine="torch")
    assert torch_bf16.describe()["engine"] == ""  # eager torch: as every older set


class _Untraceable(nn.Module):
    """Its output depends on the input through numpy: a trace bakes in the example's values,
    so the converted model gives the same features for every input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.detach().numpy().mean(axis=(2, 3)).copy())


def _backbone(module: nn.Module, engine: str) -> Backbone:
    return Backbone("odd", module, 3, TINY_PREPROCESS, "sha256:odd", "cpu", engine=engine)


@pytest.mark.slow
def test_older_feature_sets_keep_their_identity() -> None:
    """The engine field leaves every set made before it (eager torch, any precision) with its
    hash, and makes OpenVINO bf16 its own set."""
    from vidfeat.store.spec import FeatureSetSpec

    for precision in ("float32", "bfloat16"):
        b = create_backbone("tiny", device="cpu", precision=precision, engine="torch")
        described = identity_fields(b.describe(), "float16")
        old = {k: v for k, v in described.items() if k != "engine"}  # as written before
        new = FeatureSetSpec(**described, sampling={"mode": "all"})
        assert new.config_hash() == FeatureSetSpec(**old, sampling={"mode": "all"}).config_hash()
    ov_bf16 = create_backbone("tiny", device="cpu", precision="bfloat16", engine="openvino")
    spec = FeatureSetSpec(**identity_fields(ov_bf16.describe(), "float16"), sampling={})
    assert spec.identity()["engine"] == "openvino"


def test_auto_falls_back_to_torch_with_the_reason() -> None:
    b = _backbone(_Untraceable(), "auto")
    assert b.engine == "torch"
    assert b.engine_note.startswith("torch: its features differ from eager torch (cosine")
    with pytest.raises(BackboneError, match=r"--engine openvino for odd: its features differ"):
        _backbone(_Untraceable(), "openvino")


def test_a_module_that_does_not_convert_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Cannot convert operation aten::frobnicate\nmore detail")

    monkeypatch.setattr(openvino, "convert_model", refuse)
    b = create_backbone("tiny", device="cpu", engine="auto")
    assert b.engine == "torch"
    assert b.engine_note == (
        "torch: OpenVINO could not convert tiny: Cannot convert operation aten::frobnicate"
    )


def test_without_openvino_auto_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_engine, "available", lambda: "OpenVINO is not installed (x)")
    b = create_backbone("tiny", device="cpu", engine="auto")
    assert (b.engine, b.engine_note) == ("torch", "torch: OpenVINO is not installed (x)")


def _entry() -> Path:
    (folder,) = [p for p in (openvino_engine.cache_root()).iterdir() if p.is_dir()]
    return folder


@pytest.mark.parametrize("damage", ["cut", "garbage", "other key", "no key"])
def test_a_damaged_or_stale_cache_entry_is_rebuilt_never_used(damage: str) -> None:
    first = create_backbone("tiny", device="cpu", engine="openvino")
    x = frames(4, first.input_size)
    want = first(x)
    entry = _entry()
    xml, key = entry / "model.xml", entry / "key.json"
    if damage == "cut":
        xml.write_bytes(xml.read_bytes()[: xml.stat().st_size // 2])
    elif damage == "garbage":
        (entry / "model.bin").write_bytes(b"\0" * 16)
    elif damage == "other key":
        key.write_text(json.dumps({**json.loads(key.read_text()), "weights_id": "sha256:other"}))
    else:
        key.unlink()
    again = create_backbone("tiny", device="cpu", engine="openvino")
    assert "converted" in again.engine_note, again.engine_note
    np.testing.assert_array_equal(again(x), want)
    assert json.loads(key.read_text())["weights_id"] == first.weights_id


@pytest.mark.needs_cuda
def test_explicit_openvino_on_cuda_is_refused_in_one_line() -> None:
    with pytest.raises(BackboneError, match="OpenVINO runs on the CPU here"):
        create_backbone("tiny", device="cuda", engine="openvino")
