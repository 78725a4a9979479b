"""timm models as ``timm:<name>``: pooled pre-logit features, preprocessing from the model's
pretrained config. Weights: a local file, none, or DEFAULT (the hub, when online)."""

from __future__ import annotations

import math
from typing import Any

from vidfeat.errors import BackboneError, WeightsUnavailable
from vidfeat.models.backbone import Preprocess
from vidfeat.models.registry import Built
from vidfeat.models.weights import (
    file_sha256,
    is_weights_file,
    load_state_dict_file,
    load_strict,
    seeded_init,
    state_dict_sha256,
)


def _preprocess(cfg: dict[str, object]) -> Preprocess:
    size = int(cfg["input_size"][-1])  # type: ignore[index]
    crop_pct = float(cfg.get("crop_pct") or 0.875)  # type: ignore[arg-type]
    return Preprocess(
        size,
        math.floor(size / crop_pct),  # as timm's eval transform computes it
        str(cfg.get("interpolation") or "bicubic"),
        tuple(float(v) for v in cfg["mean"]),  # type: ignore[arg-type, attr-defined]
        tuple(float(v) for v in cfg["std"]),  # type: ignore[arg-type, attr-defined]
    )


def build_timm(name: str, weights: str, preprocess: str | None = None) -> Built:
    import timm

    model: Any
    if not timm.is_model(name):
        raise BackboneError(f"Unknown timm model {name!r}. See timm.list_models().")
    is_file = is_weights_file(weights)
    if weights == "DEFAULT":
        try:
            model = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as e:
            raise WeightsUnavailable(
                f"Could not get pretrained weights for timm:{name} ({type(e).__name__}: {e}). "
                "Offline? Pass --weights /path/to/file.pth or .safetensors, or --weights none."
            ) from None
        weights_id = state_dict_sha256(model.state_dict())
    elif weights == "none" or is_file:
        with seeded_init():
            model = timm.create_model(name, pretrained=False, num_classes=0)
        if is_file:
            state = load_state_dict_file(weights)
            head = str(model.pretrained_cfg.get("classifier", "classifier"))
            state = {k: v for k, v in state.items() if not k.startswith(head + ".")}
            load_strict(model, state, weights)
            weights_id = file_sha256(weights)
        else:
            weights_id = state_dict_sha256(model.state_dict())
    else:
        raise BackboneError(
            f"Invalid --weights {weights!r} for timm:{name}: use DEFAULT, none or a weights file."
        )
    cfg = model.pretrained_cfg
    if preprocess:
        if weights == "DEFAULT":
            raise BackboneError(
                "--weights DEFAULT brings its own preprocessing; --preprocess is for weights files."
            )
        cfg = _tagged_cfg(name, preprocess)
    return Built(model, int(model.num_features), _preprocess(cfg), weights_id)


def _tagged_cfg(name: str, tag: str) -> dict[str, object]:
    """timm's pretrained config ``name.tag`` (its input size, crop, interpolation, mean, std)."""
    import timm

    base = name.split(".", 1)[0]
    try:
        found = timm.models.get_pretrained_cfg(f"{base}.{tag}", allow_unregistered=False)
    except RuntimeError:  # timm: "Invalid pretrained tag"
        found = None
    if found is None:
        tags = sorted(n.split(".", 1)[1] for n in timm.list_pretrained(f"{base}.*"))
        raise BackboneError(
            f"Unknown --preprocess {tag!r} for timm:{base}. Choices: {', '.join(tags) or 'none'}."
        )
    cfg: dict[str, object] = found.to_dict()
    return cfg
