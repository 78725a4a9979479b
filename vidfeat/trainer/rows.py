"""The rows the trainer, the PyTorch dataset and ``evaluate`` read: one type, two sources.

``MemoryRows`` holds one copy of the rows (the stored dtype, loaded once); ``DiskRows`` reads
the rows a batch asks for straight from the parts (``FeatureSet.row_reader``), for sets larger
than memory; ``ProjectedRows`` applies a PCA to either as it reads. All answer ``take(rows)``
with the same values for the same row indices. ``open_rows`` picks the source (``auto``:
memory when the set fits), and refuses before loading what cannot fit.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from vidfeat.errors import TrainError
from vidfeat.store import FeatureSet, open_store
from vidfeat.store.random_access import RowReader

GiB = 1 << 30
# What the trainer holds besides the rows (torch, the head, batches), as measured on the
# UCF101-scale sets: about 0.55 GiB; auto keeps this much free on top.
OVERHEAD = GiB
PCA_SAMPLE_ROWS = 200_000  # PCA is fitted on at most this many training rows


class MemoryRows:
    """Every row in one (R, D) tensor, in the stored dtype (float16 by default)."""

    def __init__(self, values: torch.Tensor) -> None:
        self.values = values

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return self.values[rows]

    def share_memory_(self) -> None:
        self.values.share_memory_()


class DiskRows:
    """Rows read on demand from the parts of a feature set; nothing is loaded. Pickles as the
    store, feature set and video ids, so a sweep's worker process opens its own reader."""

    def __init__(self, fset: FeatureSet | str, video_ids: Sequence[str], store: str = "") -> None:
        if isinstance(fset, str):
            fset = open_store(store, mode="r").get_featureset(fset)
        self.store, self.featureset, self.video_ids = fset.fs.url, fset.name, list(video_ids)
        self.reader = fset.row_reader(self.video_ids)

    def __reduce__(self) -> tuple[Any, ...]:
        return (DiskRows, (self.featureset, self.video_ids, self.store))

    @property
    def dim(self) -> int:
        return self.reader.dim

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.reader.take(rows.numpy()))

    def share_memory_(self) -> None:
        pass  # every process reads the parts itself


@dataclass(slots=True)
class ProjectedRows:
    """``source``'s rows through a PCA fitted on the training split, projected as read."""

    source: MemoryRows | DiskRows
    mean: torch.Tensor
    components: torch.Tensor  # (D, k)

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def take(self, rows: torch.Tensor) -> torch.Tensor:
        return (self.source.take(rows).float() - self.mean) @ self.components

    def share_memory_(self) -> None:
        self.source.share_memory_()


RowSource = MemoryRows | DiskRows | ProjectedRows


def project(
    source: RowSource, mean: torch.Tensor, components: torch.Tensor
) -> MemoryRows | ProjectedRows:
    """A PCA applied to ``source``: in memory projected once (smaller than the rows it
    replaces for k < D/2), from disk projected as each batch is read."""
    if isinstance(source, MemoryRows):
        return MemoryRows((source.values.float() - mean) @ components)
    if isinstance(source, ProjectedRows):
        raise TrainError("These rows are projected already.")
    return ProjectedRows(source, mean, components)


def available_memory() -> int:
    """Bytes this process can still take: the kernel's MemAvailable, or less where a cgroup
    (a container, a batch job) caps the memory."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            cap = Path(limit).read_text().strip()
            used = int(Path(usage).read_text())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:
            available = min(available, int(cap) - used)
    return max(0, available)


def choose_source(mode: str, nbytes: int, featureset: str, available: int | None = None) -> str:
    """``memory`` or ``disk`` for ``mode`` (auto, memory, disk) and a set of ``nbytes``;
    ``memory`` for a set that cannot fit is refused here, before anything is loaded."""
    if mode == "disk":
        return "disk"
    free = available_memory() if available is None else available
    fits = nbytes + OVERHEAD <= free
    if mode == "auto":
        return "memory" if fits else "disk"
    if not fits:
        raise TrainError(
            f"Feature set {featureset!r} needs {nbytes / GiB:.1f} GiB in memory (plus "
            f"{OVERHEAD / GiB:.1f} GiB to train) and {free / GiB:.1f} GiB is available: "
            "train it from the parts with --rows-from disk (or auto)."
        )
    return "memory"


def open_rows(
    fset: FeatureSet, video_ids: Sequence[str], reader: RowReader, mode: str
) -> MemoryRows | DiskRows:
    """The rows of ``video_ids`` (in this order) from memory or disk as ``mode`` decides;
    ``reader`` is the feature set's reader of exactly these videos (its size decides)."""
    if choose_source(mode, reader.nbytes, fset.name) == "disk":
        return DiskRows(fset, video_ids)
    loaded = fset.load(video_ids, with_pts=False)
    return MemoryRows(torch.from_numpy(loaded.values))


def gather_rows(
    source: RowSource, offsets: torch.Tensor, clips: np.ndarray, limit: int, seed: int
) -> torch.Tensor:
    """float32 rows of ``clips`` (every row, or a seeded sample of ``limit`` rows when they
    are more), for fitting a PCA without reading a whole set."""
    starts, stops = offsets[clips].numpy(), offsets[clips + 1].numpy()
    counts = stops - starts
    total = int(counts.sum())
    if total > limit:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(total, size=limit, replace=False))
    else:
        pick = np.arange(total)
    first = np.repeat(starts - np.r_[0, np.cumsum(counts)[:-1]], counts)  # row - position
    rows = torch.from_numpy(first[pick] + pick)
    out = [source.take(rows[i : i + 65536]).float() for i in range(0, len(rows), 65536)]
    return torch.cat(out) if out else torch.zeros(0, source.dim)


T = TypeVar("T")


def background(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items`` made by a background thread, up to ``depth`` ahead of the consumer: batches
    are read and assembled while the model trains on the one before (disk reads and torch
    ops release the GIL). An exception in the thread is raised in the consumer."""
    slots: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((True, item)):
                    return
            offer((False, None))
        except BaseException as e:
            offer((False, e))

    thread = threading.Thread(target=produce, name="vidfeat-batches", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = slots.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()
