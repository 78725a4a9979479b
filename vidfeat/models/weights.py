"""Loading weight files safely (weights_only, clear errors) and identifying them by sha256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidfeat import hashing
from vidfeat.errors import BackboneError


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return hashing.file_sha256(path)  # size and mtime key the cache: a changed file rehashes


def file_sha256(path: str | Path) -> str:
    st = os.stat(path)
    return "sha256:" + _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Identity of weights that have no file (random init): hash of names, shapes and bytes."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


@contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Random init that is the same every time (so 'none' weights have a stable identity)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


WEIGHTS_SUFFIXES = (".pth", ".pt", ".safetensors")


def is_weights_file(weights: str) -> bool:
    """Whether a --weights value names a file (rather than DEFAULT, none or an enum name)."""
    return weights.endswith(WEIGHTS_SUFFIXES) or os.sep in weights


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A .pth/.pt (weights_only=True: never unpickles code) or .safetensors state dict."""
    p = Path(path)
    if not p.is_file():
        raise BackboneError(f"Weights file not found: {p}")
    state: Any
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file: corrupt, pickle with code, wrong format
        raise BackboneError(
            f"Cannot load weights file {p}: {type(e).__name__}: {str(e).splitlines()[0]}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(
            f"Weights file {p} does not hold a state dict (a mapping of names to tensors)."
        )
    return state


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True) with an error that names the file and the first problems."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"{len(wrong)} with wrong shapes (e.g. {'; '.join(wrong[:3])})")
        raise BackboneError(
            f"Weights from {source} do not fit the model: " + ", ".join(parts) + "."
        )
    module.load_state_dict(state, strict=True)


def last_linear_to_identity(module: nn.Module) -> int:
    """Cut the classifier: replace the last nn.Linear with Identity and return its in_features
    (the penultimate layer's width)."""
    last: tuple[nn.Module, str, nn.Linear] | None = None
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, name, child)
    if last is None:
        raise BackboneError("Model has no Linear classifier to remove.")
    parent, name, linear = last
    setattr(parent, name, nn.Identity())
    return int(linear.in_features)
