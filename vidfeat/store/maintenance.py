"""verify, gc and summaries: the store's housekeeping, shared by the CLI and tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vidfeat.errors import StoreError
from vidfeat.hashing import file_sha256
from vidfeat.store.catalog import candidates, stats_of, winners
from vidfeat.store.featureset import FeatureSet
from vidfeat.store.formats import get_format
from vidfeat.store.leases import active_writers, stale_leases
from vidfeat.store.parts import PartFormat
from vidfeat.store.records import CommitRecord
from vidfeat.store.snapshot import (
    SNAPSHOTS,
    Manifest,
    is_manifest,
    manifest_name,
    manifest_seqs,
    read_manifest,
    snapshot_folder,
)
from vidfeat.store.store import Store

VERIFY_BLOCK_ROWS = 65536


Progress = Callable[[int, int], None]  # (parts checked, parts in all)


def verify_featureset(
    fset: FeatureSet, progress: Progress | None = None, threads: int = 8
) -> list[str]:
    """One line per problem; empty means clean. Parts are checked concurrently."""
    try:
        commits = fset.commits()
    except StoreError as e:
        return [f"{fset.name}: {e}"]
    try:
        problems = _check_snapshot(fset, commits)
    except StoreError as e:
        problems = [f"{fset.name}: {e}"]
    fmt = get_format(fset.spec.part_format)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for n, found in enumerate(pool.map(lambda c: _check_part(fset, fmt, c), commits), 1):
            problems += found
            if progress is not None:
                progress(n, len(commits))
    return problems


def _check_part(fset: FeatureSet, fmt: PartFormat, c: CommitRecord) -> list[str]:
    where = f"{fset.name}/commits/{c.part_id}.json"
    try:
        path = fset.fs.local_copy(f"{fset.prefix}/{c.path}")
    except FileNotFoundError:
        return [f"{where}: part {c.path} is missing"]
    try:
        reader = fmt.open(path)
    except StoreError as e:
        return [f"{where}: {e}"]
    problems = []
    try:
        offsets = reader.read_1d("offsets")
        expected = np.concatenate([[0], np.cumsum([v.n_rows for v in c.videos])])
        if reader.dim != fset.spec.feature_dim:
            problems.append(f"{where}: feature dim {reader.dim} != {fset.spec.feature_dim}")
        if len(offsets) != len(c.videos) + 1 or not np.array_equal(offsets, expected):
            problems.append(f"{where}: offsets disagree with the commit's video records")
        if reader.n_rows != c.n_rows or int(expected[-1]) != c.n_rows:
            problems.append(f"{where}: {reader.n_rows} rows stored, commit says {c.n_rows}")
        if c.layout and c.layout != reader.layout():
            problems.append(f"{where}: its layout disagrees with where the part's rows lie")
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


def _check_snapshot(fset: FeatureSet, commits: list[CommitRecord]) -> list[str]:
    """The newest snapshot must equal a rebuild from the commits it says it covers."""
    cat = fset.catalog(refresh=True)
    snap = cat.snapshot
    if snap is None:
        return []
    m = snap.manifest
    where = f"{fset.name}/{manifest_name(m.seq)}"
    problems = []
    for f in (m.videos, m.parts):
        if file_sha256(fset.fs.local_copy(f"{fset.prefix}/{f.path}")) != f.sha256:
            problems.append(f"{where}: {f.path} does not match its sha256")
    covered = [c for c in commits if c.part_id in snap.covered]
    if len(covered) != len(snap.covered):
        problems.append(f"{where}: covers {len(snap.covered) - len(covered)} missing commit(s)")
    rebuilt = winners(candidates(covered))
    if not rebuilt.equals(snap.read_all().cast(rebuilt.schema)):
        problems.append(f"{where}: its videos differ from a rebuild from the commit records")
    elif stats_of(rebuilt) != m.stats:
        problems.append(f"{where}: its counts differ from its videos")
    if problems:
        problems[-1] += "; run `vidfeat compact --rebuild` to write a correct one"
    return problems


def verify_store(
    store: Store, name: str | None = None, progress: Progress | None = None
) -> list[str]:
    names = [name] if name else store.featuresets()
    problems: list[str] = []
    for n in names:
        problems += verify_featureset(store.get_featureset(n), progress)
    return problems


def compact_store(
    store: Store, name: str | None = None, rebuild: bool = False
) -> dict[str, Manifest | None]:
    """A snapshot of every feature set (or ``name``); upgrades a format 1 store to 2."""
    names = [name] if name else store.featuresets()
    written = {n: store.get_featureset(n).compact(rebuild) for n in names}
    if name is None:
        store.upgrade()
    return written


def gc_featureset(fset: FeatureSet, older_than_s: float, dry_run: bool) -> list[str]:
    """Remove part attempts no commit references, stray temporary files, snapshots that a
    newer one replaced at least ``older_than_s`` ago, and snapshot files no manifest names."""
    if not dry_run:
        fset.check_writable("remove leftovers")
    referenced = set(fset.catalog(refresh=True).part_paths())
    candidates_ = [f"parts/{n}" for n in fset.fs.listdir(f"{fset.prefix}/parts")]
    candidates_ += [f"commits/{n}" for n in fset.fs.listdir(f"{fset.prefix}/commits")]
    garbage = [
        rel
        for rel in candidates_
        if (rel.startswith("parts/") and rel not in referenced) or rel.startswith("commits/.tmp-")
    ]
    garbage += _snapshot_garbage(fset, older_than_s)
    garbage += stale_leases(fset.fs, fset.prefix, older_than_s)
    removed: list[str] = []
    for rel in garbage:
        full = f"{fset.prefix}/{rel}"
        try:
            old_enough = fset.fs.age_s(full) >= older_than_s
        except FileNotFoundError:
            continue  # gone meanwhile
        if old_enough:
            removed.append(full)
            if not dry_run:
                fset.fs.remove(full)
    return removed


def _snapshot_garbage(fset: FeatureSet, older_than_s: float) -> list[str]:
    seqs = manifest_seqs(fset.fs, fset.prefix)
    # A snapshot goes once the one after it has existed for older_than_s: readers that chose
    # it before then are long done. Folders that no kept manifest names are a killed or
    # losing compaction's (the age rule in gc spares one still being written).
    dropped = {
        seq
        for seq, after in itertools.pairwise(seqs)
        if fset.fs.age_s(f"{fset.prefix}/{manifest_name(after)}") >= older_than_s
    }
    live = {
        snapshot_folder(read_manifest(fset.fs, fset.prefix, seq))
        for seq in seqs
        if seq not in dropped
    }
    out = [manifest_name(seq) for seq in sorted(dropped)]
    for name in fset.fs.listdir(f"{fset.prefix}/{SNAPSHOTS}"):
        rel = f"{SNAPSHOTS}/{name}"
        if not is_manifest(name) and rel not in live:
            out.append(rel)
    return out


def remove_featureset(store: Store, name: str) -> None:
    """Delete feature set ``name`` and all its data; StoreError (nothing removed) while a run
    writes to it. Its identity file goes first, so readers stop seeing it at once."""
    store.check_writable(f"remove feature set {name!r}")
    fset = store.get_featureset(name)
    referenced = set(fset.catalog(refresh=True).part_paths())
    busy = active_writers(fset.fs, fset.prefix, referenced)
    if busy:
        raise StoreError(
            f"Feature set {name!r} in {store.url} is being written ({busy[0]}"
            f"{f' and {len(busy) - 1} more' if len(busy) > 1 else ''}): let the extract "
            "finish or stop it, then run `vidfeat rm` again."
        )
    store.fs.remove(f"{fset.prefix}/featureset.json")
    store.fs.remove(fset.prefix)


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
    stats = cat.stats()
    sampling = ", ".join(f"{k}={v}" for k, v in fset.spec.sampling.items() if v is not None)
    return Summary(
        name=fset.name,
        backbone=fset.spec.backbone,
        sampling=sampling,
        videos=stats.videos,
        rows=stats.rows,
        failures=stats.failures,
        failures_by_kind=stats.failures_by_kind,
        parts=cat.n_parts,
        bytes_on_disk=fset.part_bytes(),
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
