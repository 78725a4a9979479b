"""Grid sweeps over training configs: features loaded once, configs that share a batch stream
trained together on one pass over the data (or in parallel processes with ``jobs > 1``),
leaderboard."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from vidfeat.config import TrainConfig
from vidfeat.errors import ConfigError
from vidfeat.trainer.data import FeatureData, load_data, with_split
from vidfeat.trainer.loop import RunResult, train
from vidfeat.trainer.multi import group_configs, train_together

# Keys that decide what is loaded; a sweep loads once, so they cannot vary within one.
LOAD_KEYS = ("store", "featureset", "labels", "rows_from")

SweepResult = tuple[dict[str, Any], RunResult]


@dataclasses.dataclass(slots=True)
class SweepReport:
    results: list[SweepResult]  # in completion order
    load_seconds: float  # reading the features from the store, paid once
    total_seconds: float


def _coerce(key: str, text: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if key not in fields:
        raise ConfigError(f"Unknown sweep key {key!r}. Keys: {', '.join(sorted(fields))}.")
    if key in LOAD_KEYS:
        raise ConfigError(
            f"Sweep key {key!r} changes which features are loaded; a sweep loads them once. "
            "Run one sweep per value instead."
        )
    kind = str(fields[key].type)
    try:
        if "bool" in kind:
            return text.lower() in ("1", "true", "yes")
        if "int" in kind and "float" not in kind:
            return int(text)
        if "float" in kind:
            return float(text)
    except ValueError:
        raise ConfigError(f"Invalid value {text!r} for sweep key {key!r}.") from None
    return text


def parse_grid(items: list[str]) -> list[dict[str, Any]]:
    """['head=lstm,bilstm', 'hidden=128,256'] → the cross product as override dicts."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values:
            raise ConfigError(f"Invalid grid item {item!r}: use key=v1,v2.")
        axes.append([(key, _coerce(key, v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)]


def _init_job(threads: int) -> None:
    torch.set_num_threads(threads)


def _train_job(cfg: TrainConfig, data: FeatureData) -> RunResult:
    return train(cfg, data=with_split(data, cfg))


def sweep(
    base: TrainConfig,
    grid: list[dict[str, Any]],
    jobs: int = 1,
    on_result: Callable[[dict[str, Any], RunResult], None] | None = None,
    together: bool = True,
) -> SweepReport:
    """Run every config of ``grid`` on features loaded from the store once.

    With one job, configs that share a batch stream (the same seed, split, T, sampling, batch
    size, PCA: ``multi.STREAM_KEYS``) train together, every head stepping on each batch as it
    is read (``multi.train_together``): one pass over the data per epoch for the group, and
    each head's run exactly the run it gets alone. ``together=False``: one after another.

    With ``jobs > 1`` the configs run in that many spawned processes, each with an equal share
    of the cores; the feature tensor goes to them through shared memory, not a copy or a
    reload. Splits and PCA are recomputed per config (they depend on its seed and options)."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs}).")
    configs = [dataclasses.replace(base, **overrides) for overrides in grid]
    start = time.perf_counter()
    data = load_data(base)
    load_seconds = time.perf_counter() - start
    results: list[SweepResult] = []

    def done(overrides: dict[str, Any], result: RunResult) -> None:
        results.append((overrides, result))
        if on_result is not None:
            on_result(overrides, result)

    if (jobs == 1 or len(configs) == 1) and not together:
        for overrides, cfg in zip(grid, configs, strict=True):
            done(overrides, _train_job(cfg, data))
        return SweepReport(results, load_seconds, time.perf_counter() - start)
    if jobs == 1 or len(configs) == 1:
        overrides_of = {id(c): o for c, o in zip(configs, grid, strict=True)}
        for group in group_configs(configs):
            members = [configs[i] for i in group]
            train_together(members, data, lambda c, r: done(overrides_of[id(c)], r))
        return SweepReport(results, load_seconds, time.perf_counter() - start)
    data.values.share_memory_()  # rows read from disk: each process reads the parts itself
    data.offsets.share_memory_()
    data.labels.share_memory_()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        min(jobs, len(configs)), mp_context=ctx, initializer=_init_job, initargs=(threads,)
    ) as pool:
        futures = {
            pool.submit(_train_job, cfg, data): overrides
            for overrides, cfg in zip(grid, configs, strict=True)
        }
        for future in as_completed(futures):
            done(futures[future], future.result())
    return SweepReport(results, load_seconds, time.perf_counter() - start)
