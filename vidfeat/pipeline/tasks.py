"""What the client sends to the workers and what comes back, free of torch: the extract client
imports this, never the engine, so that it starts in a fraction of a second. The functions
here run on the workers and import the engine there."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from vidfeat.config import BackboneConfig, SamplingConfig
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.store import FailureRecord


@dataclass(frozen=True, slots=True)
class PartTask:
    store: str
    featureset: str
    part_id: str
    videos: tuple[VideoInput, ...]
    backbone: BackboneConfig
    sampling: SamplingConfig
    decode_threads: int = 2
    timeout_s: float = 600.0
    torch_threads: int | None = None


@dataclass(frozen=True, slots=True)
class PartSummary:
    """What a part task returns to the client: counts and timings, never rows."""

    part_id: str
    won: bool  # False: another attempt committed this part first
    videos: int
    rows: int
    failures: tuple[FailureRecord, ...]
    frames: int  # frames through the backbone
    seeks: int
    targets: int  # rows asked of the decoders
    model_s: float
    wall_s: float
    worker_rss_mib: float  # peak resident memory of this worker process
    decoder_rss_mib: float  # and of its largest decoder child


def run_part(task: PartTask) -> PartSummary:
    """The Dask task of one part (vidfeat.pipeline.engine.run_part)."""
    from vidfeat.pipeline import engine

    return engine.run_part(task)


def prepare_worker(
    backbone: BackboneConfig,
    decode_threads: int,
    torch_threads: int | None,
    part_format: str,
    own_worker: bool,
) -> dict[str, Any]:
    """Run on every worker before the first part (vidfeat.pipeline.engine.prepare_worker).
    The decoder children start first, so that their start-up runs while torch is imported
    and the backbone loads. ``own_worker``: a worker of vidfeat's own LocalCluster, which
    skips the interpreter's teardown when it exits."""
    from vidfeat.pipeline.sandbox import POOL

    POOL.warm(decode_threads)
    if own_worker:
        _exit_without_teardown()
    from vidfeat.pipeline import engine

    return engine.prepare_worker(backbone, torch_threads, part_format)


def _exit_without_teardown() -> None:
    """When this worker process exits (its nanny closed it; every part it ran is committed
    or abandoned by then), skip the interpreter's teardown: with torch and timm loaded it
    took 0.9-1.7 s of every run's close here, and nothing in it is needed. Registered last,
    the handler runs first; the exit status becomes 0."""
    import atexit
    import os
    import sys

    def exit_now() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    atexit.register(exit_now)
