"""``--batch-size auto``: frames per backbone batch, chosen for the device.

On the CPU it is the measured default (docs/performance.md). On CUDA a short probe runs the
backbone on growing batches and keeps the smallest one within a few percent of the best
throughput (smaller batches keep less work in flight and less memory), stopping at the first
that does not fit. The answer is cached per backbone, precision, GPU model and torch version
in ``$VIDFEAT_CACHE`` (default ``~/.cache/vidfeat``), so the probe runs once per machine type.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CPU_BATCH = 16
CANDIDATES = (32, 64, 128, 256, 512)
NEAR_BEST = 0.95  # the smallest batch with at least this share of the best images/s
_LOCK = threading.Lock()
_MEMO: dict[str, int] = {}  # this process's answers: the file is read once per key


class OutOfMemory(Exception):
    """A probe batch did not fit on the device."""


def choose(candidates: tuple[int, ...], seconds_per_batch: Callable[[int], float]) -> int:
    """The smallest candidate within NEAR_BEST of the best images/s; a candidate that does not
    fit (OutOfMemory) ends the probe. ``seconds_per_batch(n)``: one warm batch of n."""
    rates: dict[int, float] = {}
    for n in candidates:
        try:
            rates[n] = n / max(seconds_per_batch(n), 1e-9)
        except OutOfMemory:
            break
    if not rates:
        return candidates[0]
    best = max(rates.values())
    return min(n for n, rate in rates.items() if rate >= NEAR_BEST * best)


def cache_path() -> Path:
    root = os.environ.get("VIDFEAT_CACHE") or os.path.join(Path.home(), ".cache", "vidfeat")
    return Path(root) / "batch-sizes.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # absent or damaged: probe again
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(f.name, path)
    except OSError:
        pass  # a read-only home: the probe's answer still serves this process


def cached_choice(key: str, probe: Callable[[], int], path: Path | None = None) -> int:
    """The cached batch size of ``key``, else ``probe()``'s, cached."""
    path = path or cache_path()
    with _LOCK:
        memo = _MEMO.get(f"{path}|{key}")
        if memo is not None:
            return memo
        cached = _read_cache(path).get(key)
        if isinstance(cached, int) and cached > 0:
            chosen = cached
        else:
            chosen = probe()
            _write_cache(path, {**_read_cache(path), key: chosen})
        _MEMO[f"{path}|{key}"] = chosen
        return chosen


def auto_batch_size(backbone: Any) -> int:
    """The batch size of ``backbone`` (a models.backbone.Backbone) on its device."""
    import torch

    if backbone.device.type != "cuda":
        return CPU_BATCH
    size = backbone.preprocess.input_size
    gpu = torch.cuda.get_device_name(backbone.device)
    key = "|".join(
        [backbone.name, backbone.weights_id, backbone.precision, str(size), gpu, torch.__version__]
    )

    def seconds_per_batch(n: int) -> float:
        frames = torch.zeros((n, size, size, 3), dtype=torch.uint8, device=backbone.device)
        try:
            backbone(frames)  # warm: kernels chosen, memory grown
            torch.cuda.synchronize(backbone.device)
            start = time.perf_counter()
            for _ in range(3):
                backbone(frames)
            torch.cuda.synchronize(backbone.device)
            return (time.perf_counter() - start) / 3
        except torch.cuda.OutOfMemoryError:
            raise OutOfMemory from None
        finally:
            del frames
            torch.cuda.empty_cache()

    return cached_choice(key, lambda: choose(CANDIDATES, seconds_per_batch))
