"""The functions the extract client has its workers run. Free of torch at import: the client
imports this module, never the engine, so that it starts in a fraction of a second; the
functions import the engine on the worker."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from vidfeat.config import BackboneConfig
from vidfeat.pipeline.tasks import PartSummary, PartTask


def run_part(task: PartTask) -> tuple[PartSummary, ...]:
    """The Dask task of one part (vidfeat.pipeline.engine.run_part), telling the client of
    each video as it finishes; a summary per feature set."""
    from vidfeat.pipeline import engine

    return engine.run_part(task, _progress_sender(task))


def _progress_sender(task: PartTask) -> Callable[[int, int, int], None] | None:
    """Running totals of this attempt at the part, as Dask worker events on the task's topic
    (the client subscribes to it). A retried part starts a new attempt: the client replaces
    the old attempt's totals instead of adding to them."""
    if not task.progress_topic:
        return None
    import uuid

    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not in a Dask worker: nobody to tell
        return None
    attempt = uuid.uuid4().hex[:12]

    def send(videos: int, failed: int, frames: int) -> None:
        msg = {"part": task.part_id, "attempt": attempt, "videos": videos, "failed": failed}
        worker.log_event(task.progress_topic, msg | {"frames": frames})

    return send


def prepare_worker(
    backbones: tuple[BackboneConfig, ...],
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

    if own_worker:
        _leave_ctrl_c_to_the_client()
    POOL.warm(decode_threads)
    if own_worker:
        _exit_without_teardown()
    from vidfeat.pipeline import engine

    return engine.prepare_worker(backbones, torch_threads, part_format)


def _leave_ctrl_c_to_the_client() -> None:
    """Ctrl-C in a terminal reaches the whole process group, this worker and its decoders too;
    the client alone handles it (it cancels the parts, then closes the cluster), where each
    worker would print its own traceback. Decoders started after this inherit the ignore."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


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
