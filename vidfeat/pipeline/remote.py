"""The functions the extract client has its workers run. Free of torch at import: the client
imports this module, never the engine, so that it starts in a fraction of a second; the
functions import the engine on the worker."""

from __future__ import annotations

import contextlib
from typing import Any

from vidfeat.config import BackboneConfig
from vidfeat.pipeline.tasks import PartSummary, PartTask


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
    or abandoned by then), skip the interpreter's teardown: with torch and timm loaded it is
    most of the cluster's close (docs/performance.md), and nothing in it is needed. Registered
    last, the handler runs first; the exit status becomes 0."""
    import atexit
    import os
    import sys

    def exit_now() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    atexit.register(exit_now)
