"""The functions the extract client has its workers run, and the worker plugin that prepares
every worker of a run. Free of torch at import: the client imports this module, never the
engine, so that it starts in a fraction of a second; the functions import the engine on the
worker."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

from distributed import WorkerPlugin, get_worker

from vidfeat.config import BackboneConfig
from vidfeat.errors import WorkerRefused
from vidfeat.pipeline.tasks import Admission, PartSummary, PartTask, Verdict, identity_differences


def run_part(task: PartTask) -> tuple[PartSummary, ...]:
    """The Dask task of one part (vidfeat.pipeline.engine.run_part), telling the client of
    each video as it finishes; a summary per feature set, with this worker's address."""
    from vidfeat.pipeline import engine

    worker = _worker()
    address = _address(worker) if worker is not None else ""
    try:
        summaries = engine.run_part(task, _progress_sender(task, worker))
    except WorkerRefused as e:  # never sent here by the run (PrepareWorker): say who refused
        raise WorkerRefused(f"worker {address or '(no Dask worker)'}: {e}") from None
    return tuple(dataclasses.replace(s, worker=address) for s in summaries)


def _worker() -> Any:
    try:
        return get_worker()
    except ValueError:  # not in a Dask worker
        return None


def _address(worker: Any) -> str:
    """The worker's address as the scheduler knows it (--contact-address, else its own)."""
    return str(worker.contact_address or worker.address)


def _progress_sender(task: PartTask, worker: Any) -> Callable[[int, int, int], None] | None:
    """Running totals of this attempt at the part, as Dask worker events on the task's topic
    (the client subscribes to it). A retried part starts a new attempt: the client replaces
    the old attempt's totals instead of adding to them."""
    if not task.progress_topic or worker is None:  # nobody to tell
        return None
    import uuid

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


class PrepareWorker(WorkerPlugin):
    """prepare_worker on every worker of a run: Dask runs ``setup`` on the workers present
    when the client registers the plugin and on each that joins later (a SLURM job scaled up,
    a restarted worker), so a late joiner is prepared exactly as the first ones were.

    Registered first without an ``admission`` (the backbones load; their descriptions make the
    feature sets' specs), then again under the same name with one: from then on a worker is
    admitted only if every backbone it holds describes exactly its feature set's spec. Only an
    admitted worker gets the run's Dask resource, which every part task asks for, so the
    scheduler never gives a part to a refused worker (another weights file under the same name,
    another precision): its parts run on the others. (Failing the part there and counting on
    Dask's retries would not do: a retry may land on the same idle worker again.) Each verdict
    goes to the client as an event on the admission's topic; the report lists refused workers."""

    def __init__(
        self,
        backbones: tuple[BackboneConfig, ...],
        decode_threads: int,
        torch_threads: int | None,
        part_format: str,
        own_worker: bool,
        admission: Admission | None = None,
    ) -> None:
        self.args = (backbones, decode_threads, torch_threads, part_format, own_worker)
        self.admission = admission
        self.prepared: dict[str, Any] | None = None  # prepare_worker's answer on this worker

    async def setup(self, worker: Any) -> None:
        if self.admission is None:  # an error reaches the client (register_plugin raises it)
            self.prepared = prepare_worker(*self.args)
            return
        admission = self.admission
        try:
            self.prepared = prepare_worker(*self.args)
            several = len(admission.specs) > 1  # then each difference names its feature set
            why = "; ".join(
                f"{name}: {d}" if several else d
                for name, spec, described in zip(
                    admission.featuresets, admission.specs, self.prepared["backbones"], strict=True
                )
                for d in identity_differences(spec, described)
            )
        except Exception as e:  # a joiner that cannot load the backbone is refused, not fatal
            why = f"could not load the backbone: {type(e).__name__}: {e}"
        nthreads = worker.state.nthreads
        if not why:
            await worker.set_resources(**{admission.resource: nthreads})
        verdict = Verdict(_address(worker), not why, nthreads, why)
        worker.log_event(admission.topic, verdict.to_event())

    async def teardown(self, worker: Any) -> None:
        """The run is over (the client unregistered the plugin): its resource goes with it, so
        a long-lived worker carries nothing of this run into the next."""
        if self.admission is not None and self.admission.resource in worker.state.total_resources:
            await worker.set_resources(**{self.admission.resource: 0})


def prepared_by(plugin: str, dask_worker: Any) -> dict[str, Any] | None:
    """What PrepareWorker ``plugin`` prepared on this worker (None: not yet, or it failed);
    for Client.run."""
    return getattr(dask_worker.plugins.get(plugin), "prepared", None)


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
