"""Helpers shared by the benchmarks: timing, ratios against measured bounds, test specs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``repeats`` runs (the machines are shared and noisy)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed_fresh(
    write: Callable[[int], object], cleanup: Callable[[int], object], repeats: int = 3
) -> float:
    """Median time of ``write(i)`` into a fresh location, removing it after each run so that
    every candidate writes the same amount of new data (dirty page-cache throttling otherwise
    punishes whoever runs later)."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        write(i)
        times.append(time.perf_counter() - start)
        cleanup(i)
    return statistics.median(times)


def verdict(ratio: float, target: float, higher_is_better: bool = True) -> str:
    ok = ratio >= target if higher_is_better else ratio <= target
    return "PASS" if ok else "MISS"


def interleaved(
    candidates: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Times of each candidate, run round by round (a, b, c, a, b, c, …) so that a candidate and
    its bound see the same machine state; compare them round by round."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bench_spec(dim: int, frames: int = 16, part_format: str = "zarr") -> Any:
    """A feature-set spec for synthetic features (no backbone behind them)."""
    from vidfeat.store import FeatureSetSpec

    return FeatureSetSpec(
        "bench",
        "none",
        dim,
        224,
        256,
        "bicubic",
        (0.5,) * 3,
        (0.5,) * 3,
        {"mode": "frames", "frames": frames},
        part_format=part_format,
    )
