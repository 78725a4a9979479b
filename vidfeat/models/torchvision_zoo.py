"""torchvision classification models by name, cut at the penultimate layer.

``--weights``: DEFAULT, a weight enum name (IMAGENET1K_V2), none (random init), or a local
.pth/.safetensors file. Preprocessing comes from the weight enum's metadata (its transforms).
Offline with nothing in TORCH_HOME, the error names the missing file and the alternatives.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from vidfeat.errors import BackboneError, WeightsUnavailable
from vidfeat.models.backbone import Preprocess
from vidfeat.models.registry import BackboneInfo, Built
from vidfeat.models.weights import (
    file_sha256,
    is_weights_file,
    last_linear_to_identity,
    load_state_dict_file,
    load_strict,
    seeded_init,
    state_dict_sha256,
)

FAMILIES = (
    "resnet",
    "wide_resnet",
    "resnext",
    "efficientnet_",
    "mobilenet_v",
    "convnext_",
    "regnet_",
    "vit_",
    "swin_",
    "maxvit",
    "densenet",
)


@lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return tuple(sorted(n for n in names if n.startswith(FAMILIES)))


def _weights_enum(name: str, weights: str) -> Any:
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    if weights == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[weights]
    except KeyError:
        choices = ", ".join(["DEFAULT", *enum.__members__, "none", "/path/to/weights.pth"])
        raise BackboneError(
            f"Unknown --weights {weights!r} for {name}. Choices: {choices}."
        ) from None


def _preprocess(enum_value: Any) -> Preprocess:
    t = enum_value.transforms()
    resize = t.resize_size[0] if isinstance(t.resize_size, list | tuple) else t.resize_size
    crop = t.crop_size[0] if isinstance(t.crop_size, list | tuple) else t.crop_size
    return Preprocess(
        int(crop),
        int(resize),
        str(t.interpolation.value),
        tuple(float(v) for v in t.mean),  # type: ignore[arg-type]
        tuple(float(v) for v in t.std),  # type: ignore[arg-type]
    )


def checkpoint_path(enum_value: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum_value.url)


def _offline() -> bool:
    return os.environ.get("VIDFEAT_OFFLINE", "") not in ("", "0") or bool(
        os.environ.get("HF_HUB_OFFLINE")
    )


def _unreachable(url: str, timeout_s: float = 3.0) -> str | None:
    """Why the host of ``url`` cannot be reached now, or None. A quick probe, so that an
    offline machine says at once what is missing instead of waiting on a download."""
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as e:
        return f"{host} is unreachable ({e.strerror or type(e).__name__}): no download tried"
    return None


def _load_enum_weights(name: str, enum_value: Any) -> tuple[dict[str, torch.Tensor], str]:
    path = checkpoint_path(enum_value)
    if not path.exists():
        hint = (
            f"Weights {enum_value} for {name} are not in TORCH_HOME: expected {path}. "
            "Copy the file there (or set TORCH_HOME), pass --weights /path/to/file.pth, "
            "use --weights none for random init, or the offline default backbone "
            "efficientnet_lite0."
        )
        if _offline():
            raise WeightsUnavailable(hint + " (VIDFEAT_OFFLINE is set: no download tried.)")
        why = _unreachable(enum_value.url)
        if why:
            raise WeightsUnavailable(f"{hint} ({why}.)")
        try:
            torch.hub.load_state_dict_from_url(enum_value.url, progress=False, check_hash=True)
        except Exception as e:  # no network, proxy, DNS: all mean the same to the user
            raise WeightsUnavailable(f"{hint} Download failed: {type(e).__name__}: {e}") from None
    return load_state_dict_file(path), file_sha256(path)


def _recipe(name: str, preprocess: str | None) -> Any:
    """The weights enum whose transforms a weights file (or random init) is paired with: the one
    named by --preprocess, else the family's classic recipe, its first (V1) weights."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    if preprocess is None:
        return next(iter(enum))
    try:
        return enum[preprocess]
    except KeyError:
        choices = ", ".join(enum.__members__)
        raise BackboneError(
            f"Unknown --preprocess {preprocess!r} for {name}. Choices: {choices}."
        ) from None


def build_torchvision(name: str, weights: str, preprocess: str | None = None) -> Built:
    import torchvision

    if name not in torchvision_names():
        raise BackboneError(f"Unknown torchvision backbone {name!r}.")
    with seeded_init():
        model = torchvision.models.get_model(name, weights=None)
    if weights == "none":
        enum_value = _recipe(name, preprocess)
        weights_id = ""
    elif is_weights_file(weights):
        enum_value = _recipe(name, preprocess)
        load_strict(model, load_state_dict_file(weights), weights)
        weights_id = file_sha256(weights)
    else:
        enum_value = _weights_enum(name, weights)
        if preprocess and preprocess != enum_value.name:
            raise BackboneError(
                f"--weights {weights} brings its own preprocessing ({enum_value.name}); "
                "--preprocess is for weights files."
            )
        state, weights_id = _load_enum_weights(name, enum_value)
        load_strict(model, state, str(checkpoint_path(enum_value)))
    dim = last_linear_to_identity(model)
    if weights == "none":
        weights_id = state_dict_sha256(model.state_dict())
    return Built(model, dim, _preprocess(enum_value), weights_id)


def torchvision_infos() -> list[BackboneInfo]:
    import torchvision

    infos = []
    for name in torchvision_names():
        default = _weights_enum(name, "DEFAULT")
        dim: int | None = None
        try:  # the meta device builds without allocating memory or time
            with torch.device("meta"):
                dim = last_linear_to_identity(torchvision.models.get_model(name, weights=None))
        except NotImplementedError:
            pass  # regnet builders need real tensors; building them all takes ~20 s

        infos.append(
            BackboneInfo(
                name,
                dim,
                _preprocess(default).input_size,
                str(default).split(".", 1)[-1],
                checkpoint_path(default).exists(),
                "torchvision",
            )
        )
    return infos
