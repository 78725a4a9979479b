"""Grid sweeps over training configs: features loaded once, every config run, leaderboard."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from vidfeat.config import TrainConfig
from vidfeat.errors import ConfigError
from vidfeat.trainer.data import load_data
from vidfeat.trainer.loop import RunResult, train


def _coerce(key: str, text: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if key not in fields:
        raise ConfigError(f"Unknown sweep key {key!r}. Keys: {', '.join(sorted(fields))}.")
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
        if not sep or not values:
            raise ConfigError(f"Invalid grid item {item!r}: use key=v1,v2.")
        axes.append(
            [
                (key.strip().replace("-", "_"), _coerce(key.strip().replace("-", "_"), v))
                for v in values.split(",")
            ]
        )
    return [dict(combo) for combo in itertools.product(*axes)]


def sweep(base: TrainConfig, grid: list[dict[str, Any]]) -> list[tuple[dict[str, Any], RunResult]]:
    """Run every config on features loaded once (PCA and splits per config stay correct
    because they depend only on the config's own seed and options)."""
    data = load_data(base)
    results = []
    for overrides in grid:
        cfg = dataclasses.replace(base, **overrides)
        reuse = (
            data
            if (cfg.seed, cfg.split_file, cfg.val_fraction, cfg.group_pattern, cfg.labels)
            == (base.seed, base.split_file, base.val_fraction, base.group_pattern, base.labels)
            else None
        )
        results.append((overrides, train(cfg, data=reuse)))
    return results
