"""verify, gc and summaries: the store's housekeeping, shared by the CLI and tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.store.featureset import FeatureSet
from vidfeat.store.formats import get_format
from vidfeat.store.store import Store

VERIFY_BLOCK_ROWS = 65536


def verify_featureset(fset: FeatureSet) -> list[str]:
    """One line per problem; empty means clean."""
    problems: list[str] = []
    try:
        commits = fset.commits()
    except StoreError as e:
        return [f"{fset.name}: {e}"]
    fmt = get_format(fset.spec.part_format)
    for c in commits:
        where = f"{fset.name}/commits/{c.part_id}.json"
        try:
            path = fset.fs.local_copy(f"{fset.prefix}/{c.path}")
        except FileNotFoundError:
            problems.append(f"{where}: part {c.path} is missing")
            continue
        try:
            reader = fmt.open(path)
        except StoreError as e:
            problems.append(f"{where}: {e}")
            continue
        try:
            offsets = reader.read_1d("offsets")
            expected = np.concatenate([[0], np.cumsum([v.n_rows for v in c.videos])])
            if reader.dim != fset.spec.feature_dim:
                problems.append(f"{where}: feature dim {reader.dim} != {fset.spec.feature_dim}")
            if len(offsets) != len(c.videos) + 1 or not np.array_equal(offsets, expected):
                problems.append(f"{where}: offsets disagree with the commit's video records")
            if reader.n_rows != c.n_rows or int(expected[-1]) != c.n_rows:
                problems.append(f"{where}: {reader.n_rows} rows stored, commit says {c.n_rows}")
            for name in ("pts", "frame_index"):
                if len(reader.read_1d(name)) != reader.n_rows:
                    problems.append(f"{where}: {name} length != {reader.n_rows} rows")
            for start in range(0, reader.n_rows, VERIFY_BLOCK_ROWS):
                block = reader.read_values(start, min(reader.n_rows, start + VERIFY_BLOCK_ROWS))
                if not np.isfinite(block).all():
                    problems.append(f"{where}: NaN or inf in rows from {start}")
                    break
        except (StoreError, OSError, ValueError, KeyError) as e:
            problems.append(f"{where}: unreadable part {c.path}: {e}")
        finally:
            reader.close()
    return problems


def verify_store(store: Store, name: str | None = None) -> list[str]:
    names = [name] if name else store.featuresets()
    problems: list[str] = []
    for n in names:
        problems += verify_featureset(store.get_featureset(n))
    return problems


def gc_featureset(fset: FeatureSet, older_than_s: float, dry_run: bool) -> list[str]:
    """Remove part attempts no commit references, and stray temporary files."""
    referenced = {c.path for c in fset.commits()}
    removed: list[str] = []
    candidates = [f"parts/{n}" for n in fset.fs.listdir(f"{fset.prefix}/parts")]
    candidates += [f"commits/{n}" for n in fset.fs.listdir(f"{fset.prefix}/commits")]
    for rel in candidates:
        is_garbage = rel.startswith("parts/") and rel not in referenced
        is_garbage |= rel.startswith("commits/.tmp-")
        full = f"{fset.prefix}/{rel}"
        if is_garbage and fset.fs.age_s(full) >= older_than_s:
            removed.append(full)
            if not dry_run:
                fset.fs.remove(full)
    return removed


def gc_store(store: Store, older_than_s: float = 86400.0, dry_run: bool = False) -> list[str]:
    removed: list[str] = []
    for n in store.featuresets():
        removed += gc_featureset(store.get_featureset(n), older_than_s, dry_run)
    return removed


@dataclass(frozen=True, slots=True)
class Summary:
    name: str
    backbone: str
    sampling: str
    videos: int
    rows: int
    failures: int
    failures_by_kind: dict[str, int]
    parts: int
    bytes_on_disk: int


def summarize(fset: FeatureSet) -> Summary:
    cat = fset.catalog(refresh=True)
    sampling = ", ".join(f"{k}={v}" for k, v in fset.spec.sampling.items() if v is not None)
    return Summary(
        name=fset.name,
        backbone=fset.spec.backbone,
        sampling=sampling,
        videos=len(cat.videos),
        rows=cat.n_rows,
        failures=len(cat.failures),
        failures_by_kind=dict(Counter(f.kind for f in cat.failures.values())),
        parts=len(cat.commits),
        bytes_on_disk=fset.fs.disk_usage(fset.prefix),
    )


def parse_age(text: str) -> float:
    """'24h', '30m', '2d', '90s' or plain seconds → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        if t and t[-1] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise StoreError(f"Invalid age {text!r}: use e.g. 90s, 30m, 24h or 2d.") from None
