"""The client side of ``vidfeat extract``: plan, run parts on Dask, show progress, report.
With pipeline.remote (the functions its workers run), the only module that imports
dask.distributed."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from vidfeat.config import BackboneConfig, ExtractConfig
from vidfeat.errors import ConfigError, ExtractError, StoreError, VidfeatError
from vidfeat.options import EXTRACT_KEYS, build_extract_config, extract_options
from vidfeat.pipeline.discovery import VideoInput, check_inputs, discover
from vidfeat.pipeline.resume import plan_videos
from vidfeat.pipeline.sizing import CPU_DECODE_THREADS, Sizing, plan_sizing, visible_gpus
from vidfeat.pipeline.tasks import Admission, PartSummary, PartTarget, PartTask, Verdict
from vidfeat.store import FailureRecord, FeatureSet, FeatureSetSpec, open_store
from vidfeat.store.leases import writer_lease
from vidfeat.store.spec import identity_fields
from vidfeat.store.store import creation_meta


@dataclass(slots=True)
class ExtractReport:
    featureset: str
    store: str
    videos_found: int
    videos_skipped: int
    videos_done: int = 0
    rows: int = 0
    failures: list[FailureRecord] = field(default_factory=list)
    parts: int = 0
    parts_lost: int = 0
    wall_s: float = 0.0
    frames_per_s: float = 0.0  # from the first task submitted to the last result
    workers_ready_s: float = 0.0  # start → backbone loaded and decoders started everywhere
    peak_worker_rss_mib: float = 0.0  # the largest worker process (model, batches, part)
    peak_decoder_rss_mib: float = 0.0  # the largest decoder child process
    videos_same_content: int = 0  # of the skipped: changed size/mtime, same bytes as stored
    failed_inputs: list[str] = field(default_factory=list)  # this run's or earlier runs'
    seeks: int = 0  # seeks and reopens of the decoders (each late landing costs one more)
    frames_sampled: int = 0  # rows asked of the decoders
    dashboard: str | None = None
    snapshot: int | None = None  # the catalog snapshot written at the end (its number)
    snapshot_note: str = ""  # why none was written, when none was
    hwaccel: str = "none"
    videos_hw_decoded: int = 0
    decode_fallbacks: list[str] = field(default_factory=list)  # "video_id: why", --hwaccel
    weights_mib: float = 0.0  # the backbone's weights in each worker's memory
    # The engine the first worker runs the backbone on, and how it was chosen: "openvino
    # float32, 2 threads, from its cache in 0.1 s", or "torch: <why not openvino>" (auto)
    engine: str = ""
    # "address: why" of each worker that joined but holds another backbone than the spec's
    # (another weights file under the same name, …): it was given no part (docs/cluster.md).
    refused_workers: list[str] = field(default_factory=list)
    parts_by_worker: dict[str, int] = field(default_factory=dict)  # parts each worker ran
    # With several --backbone: the reports of the other feature sets (one decode for all).
    also: list[ExtractReport] = field(default_factory=list)

    def add(self, part: PartSummary) -> None:
        """Count one committed part in."""
        self.videos_done += part.videos
        self.rows += part.rows
        self.seeks += part.seeks
        self.frames_sampled += part.targets
        self.failures += part.failures
        self.parts_lost += 0 if part.won else 1
        self.peak_worker_rss_mib = max(self.peak_worker_rss_mib, part.worker_rss_mib)
        self.peak_decoder_rss_mib = max(self.peak_decoder_rss_mib, part.decoder_rss_mib)
        self.videos_hw_decoded += part.hw_decoded
        self.decode_fallbacks += part.decode_fallbacks
        if part.worker:
            self.parts_by_worker[part.worker] = self.parts_by_worker.get(part.worker, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _prepare_workers(client: Any, cfg: ExtractConfig, admissions: _Admissions) -> dict[str, Any]:
    """Load the backbones and start the decoders on every worker now, in parallel, and on
    every worker that joins later (the run's worker plugin), and return what the backbones
    are (engine.prepare_worker). The workers' own descriptions make the feature sets'
    identities: the weights they really have, the precision their device really runs."""
    try:
        client.wait_for_workers(1, timeout=cfg.worker_wait_s)
    except TimeoutError:
        raise ExtractError(
            f"No Dask worker joined the scheduler {cfg.scheduler} within {cfg.worker_wait_s:g} s. "
            "Start workers (dask worker ADDRESS) or check the address."
        ) from None
    try:
        prepared: dict[str, dict[str, Any]] = admissions.prepare()
    except VidfeatError:
        raise  # the worker's own message (missing weights, unknown backbone) says what to do
    except Exception as e:
        names = ", ".join(repr(b.name) for b in cfg.backbones)
        raise ExtractError(
            f"A worker could not load the backbone {names}: {type(e).__name__}: {e}"
        ) from None
    if not prepared:  # each worker present joined as the plugin came: none had run it
        raise ExtractError("No Dask worker had loaded the backbone yet: run the extract again.")
    described = {
        w: [identity_fields(d, cfg.dtype) for d in p["backbones"]] for w, p in prepared.items()
    }
    distinct = {json.dumps(d, sort_keys=True) for d in described.values()}
    if len(distinct) > 1:
        lines = "\n".join(f"  {w}: {d}" for w, d in sorted(described.items()))
        raise ExtractError(
            "Workers disagree on what the backbone is (different weights files, devices or "
            f"precisions), so their features would not be comparable:\n{lines}\n"
            "Give every worker the same weights and device, or pin --precision."
        )
    return next(iter(prepared.values()))


class _Admissions:
    """The run's worker plugin (remote.PrepareWorker) and its verdicts: which workers may run
    parts (admitted: their threads) and which were refused (why). Every part asks for one unit
    of the run's resource, which only admitted workers have."""

    def __init__(self, client: Any, cfg: ExtractConfig, torch_threads: int | None) -> None:
        token = f"{os.getpid()}-{time.time_ns()}"
        self.client = client
        self.name = f"vidfeat-prepare-{token}"  # the plugin's: one per run on a shared cluster
        self.resource = f"vidfeat-{token}"
        self.topic = f"vidfeat-admission-{token}"
        self.args = (
            cfg.backbones,
            cfg.decode_threads or CPU_DECODE_THREADS,
            torch_threads,
            cfg.format,
            cfg.scheduler is None,
        )
        self.admitted: dict[str, int] = {}
        self.refused: dict[str, str] = {}
        self.live: dict[str, int] = {}  # the admitted workers present at the last look
        self.closed = False
        self._idle: set[str] = set()  # parts no worker was running at the last look
        self._none_since: float | None = None  # since when no admitted worker is present

    def prepare(self) -> dict[str, dict[str, Any]]:
        """Register the plugin (it prepares the workers present, and any that join); what each
        worker present prepared."""
        from vidfeat.pipeline.remote import PrepareWorker, prepared_by

        self.client.register_plugin(PrepareWorker(*self.args), name=self.name)
        prepared = self.client.run(prepared_by, self.name)
        return {w: p for w, p in prepared.items() if p is not None}  # None: joined just now

    def admit(self, fsets: list[FeatureSet]) -> None:
        """Register the plugin again, now with the feature sets' specs: from here on a worker
        runs parts only if its backbones are exactly theirs (the workers present, then every
        one that joins, each when it has loaded them)."""
        from vidfeat.pipeline.remote import PrepareWorker

        specs = tuple(f.spec for f in fsets)
        admission = Admission(self.resource, self.topic, specs, tuple(f.name for f in fsets))
        self.client.register_plugin(PrepareWorker(*self.args, admission), name=self.name)
        self._look()

    def window(self, max_in_flight: int | None) -> int:
        """Parts in flight: each admitted worker's threads and one more waiting on it."""
        return max_in_flight or max(2, sum(self.live.values()) + len(self.live))

    def check(self, in_flight: dict[str, Any], wait_s: float) -> list[str]:
        """About once a second while parts run: read the verdicts and which admitted workers
        are present; return the keys of parts to submit anew. Those are the parts that no
        worker ran at this look nor the last although an admitted worker is present: a part
        that found no admitted worker (they all left) waits for one in the scheduler, which
        does not look at it again when a worker that joins later gains the run's resource.
        Raises ExtractError when no admitted worker has been present for ``wait_s``."""
        self._look()
        now = time.monotonic()
        if not self.live:
            self._none_since = self._none_since or now
            if now - self._none_since > wait_s:
                refused = "".join(f"\n  refused {line}" for line in self.refused_lines())
                raise ExtractError(
                    f"For {wait_s:g} s no worker present has held the feature set's backbone, "
                    f"so no part could run.{refused}\nStart workers with the same weights "
                    "and device; committed parts are intact, a rerun resumes."
                )
            return []
        self._none_since = None
        running = {k for keys in self.client.processing().values() for k in keys}
        idle = {k for k, f in in_flight.items() if f.status == "pending" and k not in running}
        stuck, self._idle = idle & self._idle, idle
        return sorted(stuck)

    def _look(self) -> None:
        """The verdicts so far, and which admitted workers are present now (``live``)."""
        self.poll()
        present = self.client.nthreads()
        self.live = {w: n for w, n in self.admitted.items() if w in present}

    def poll(self) -> None:
        """Read the verdicts so far (the scheduler keeps the topic's events; the last verdict
        of an address counts)."""
        for _, msg in self.client.get_events(self.topic):
            v = Verdict.from_event(msg)
            if v.admitted:
                self.admitted[v.worker] = v.nthreads
                self.refused.pop(v.worker, None)
            else:
                self.refused[v.worker] = v.why
                self.admitted.pop(v.worker, None)

    def refused_lines(self) -> list[str]:
        self.poll()
        return [f"{w}: {why}" for w, why in sorted(self.refused.items())]

    def close(self) -> None:
        """Workers that join after the run prepare nothing for it."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # the scheduler may be gone: nothing to undo
            self.client.unregister_worker_plugin(self.name)


def _spec(cfg: ExtractConfig, described: dict[str, Any]) -> FeatureSetSpec:
    return FeatureSetSpec(
        **identity_fields(described, cfg.dtype),
        sampling=cfg.sampling.identity(),
        dtype=cfg.dtype,
        part_format=cfg.format,
    )


def part_id(videos: tuple[VideoInput, ...]) -> str:
    """A part's id hashes its videos and fingerprints, so two jobs that plan the same work
    race on the same commit (one wins) instead of duplicating it."""
    h = hashlib.sha256()
    for v in videos:
        h.update(f"{v.video_id}\0{v.size}\0{v.mtime_ns}\n".encode())
    return f"p-{h.hexdigest()[:20]}"


def plan_parts(
    videos: list[VideoInput], workers: int, per_part: int | None
) -> list[tuple[str, tuple[VideoInput, ...]]]:
    """Group pending videos into parts: ~4 parts per worker for load balance, 8 to 64
    videos each, each with its ``part_id``."""
    if not videos:
        return []
    n = len(videos)
    # ~4 parts per worker, but at least 8 videos a part where each worker still gets one:
    # every part pays a pipeline fill and drain and a commit.
    size = per_part or min(64, max(-(-n // (4 * workers)), min(8, -(-n // workers))))
    groups = [tuple(videos[i : i + size]) for i in range(0, len(videos), size)]
    return [(part_id(group), group) for group in groups]


@dataclass(slots=True)
class _Target:
    """One feature set of the run: its backbone, the set, what it still needs, its report."""

    backbone: BackboneConfig
    fset: FeatureSet
    plan: Any  # resume.VideoPlan
    report: ExtractReport
    pending: set[str] = field(default_factory=set)
    frames: int = 0

    def part_target(self, pid: str, group: tuple[VideoInput, ...]) -> PartTarget | None:
        """This set's share of a part (None: it has every video of the group already). The
        whole group keeps the group's id: with one backbone, parts are what they always were."""
        mine = tuple(v for v in group if v.video_id in self.pending)
        if not mine:
            return None
        pid = pid if len(mine) == len(group) else part_id(mine)
        return PartTarget(self.fset.name, pid, self.backbone, tuple(v.video_id for v in mine))


def _pending_union(targets: list[_Target]) -> list[VideoInput]:
    """The videos any feature set still needs: the first set's order, then the others'."""
    seen: set[str] = set()
    out: list[VideoInput] = []
    for t in targets:
        for v in t.plan.pending:
            if v.video_id not in seen:
                seen.add(v.video_id)
                out.append(v)
    return out


PARTS_PER_WORKER = 1
SNAPSHOT_EVERY = 1000  # commits: long runs also write catalog snapshots on the way
_NANNY_ENV_UNSET = (
    "MALLOC_TRIM_THRESHOLD_",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


class _Cluster:
    """The Dask client (and the LocalCluster behind it, without --scheduler), started in a
    thread as soon as a run begins, so that workers start while the inputs are discovered and
    checked against the store; and closed in a thread while the catalog snapshot is written."""

    def __init__(self, cfg: ExtractConfig, gpus: tuple[str, ...] = ()) -> None:
        self._cfg = cfg
        self._gpus = gpus
        self._cluster: Any = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vidfeat-cluster")
        self._started = self._pool.submit(self._start)
        self._closed: Future[None] | None = None
        self.admissions: _Admissions | None = None  # the run's worker plugin, once registered

    def client(self) -> Any:
        """The connected client (waits for the start)."""
        return self._started.result()

    def close(self) -> None:
        """Begin closing, if not begun: parts in flight are cancelled by the close."""
        if self._closed is None:
            self._closed = self._pool.submit(self._close)

    def wait_closed(self) -> None:
        self.close()
        assert self._closed is not None
        self._closed.result()
        self._pool.shutdown()

    def _start(self) -> Any:
        from dask.distributed import Client

        cfg = self._cfg
        if cfg.scheduler:
            try:
                return Client(cfg.scheduler, timeout=f"{cfg.connect_timeout_s}s")
            except (OSError, TimeoutError) as e:
                raise ExtractError(
                    f"Could not reach the Dask scheduler at {cfg.scheduler} within "
                    f"{cfg.connect_timeout_s:g} s ({type(e).__name__}). Check that `dask "
                    "scheduler` runs there, the address and port (tcp://HOST:8786) and any "
                    "firewall; --connect-timeout waits longer."
                ) from None
        self._cluster = _local_cluster(cfg.workers or 1, self._gpus)
        return Client(self._cluster)

    def _close(self) -> None:
        if self.admissions is not None:  # a run that ended early: before the client goes
            self.admissions.close()
        if self._started.exception() is None:  # else the start's error is raised by client()
            self._started.result().close()
        if self._cluster is not None:  # also when the client failed to connect to it
            self._cluster.close(timeout=15)  # a worker stuck in a part must not hold up Ctrl-C


def _local_cluster(workers: int, gpus: tuple[str, ...] = ()) -> Any:
    """A LocalCluster of ``workers`` processes; with ``gpus``, worker i sees only GPU
    ``gpus[i]`` (its own CUDA_VISIBLE_DEVICES, set by its nanny before the process starts)."""
    import copy

    import dask
    from dask.distributed import LocalCluster

    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 and OMP/MKL/OpenBLAS
    # threads = 1. vidfeat sizes torch's threads itself (prepare_worker), and that malloc
    # setting slows CPU inference (vidfeat/runtime.py), so workers start without them.
    environ: dict[str, str | None] = {
        f"distributed.nanny.pre-spawn-environ.{k}": None for k in _NANNY_ENV_UNSET
    }
    # One malloc arena per worker from its first allocation on: vidfeat/runtime.py.
    environ["distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX"] = "1"
    user_arena_max = os.environ.get("MALLOC_ARENA_MAX")
    with dask.config.set(environ):
        cluster = LocalCluster(
            n_workers=0 if gpus else workers,
            # One part at a time per process; its decoders run alongside the model. Two
            # parts at once (overlapping one's decoding with the other's inference) was slower:
            # more decoders competing with torch's threads (docs/performance.md, "What did
            # not help").
            threads_per_worker=PARTS_PER_WORKER,
            processes=True,
            dashboard_address=":0",
            silence_logs=50,  # no teardown heartbeat noise in the user's terminal
        )
        for i, gpu in enumerate(gpus):  # one spec per worker: the spec's env is the nanny's
            spec = copy.deepcopy(cluster.new_spec)
            spec["options"]["env"] = {**spec["options"].get("env", {}), "CUDA_VISIBLE_DEVICES": gpu}
            cluster.worker_spec[f"gpu{i}-{gpu}"] = spec
        if gpus:  # start them here: each nanny reads the environ settings above as it starts
            cluster.scale(len(gpus))
            cluster.wait_for_workers(len(gpus))
    if user_arena_max is None:  # the nanny set it in this process too, for its children
        os.environ.pop("MALLOC_ARENA_MAX", None)
    return cluster


@contextmanager
def _cluster(cfg: ExtractConfig, gpus: tuple[str, ...] = ()) -> Iterator[_Cluster]:
    cluster = _Cluster(cfg, gpus)
    try:
        yield cluster
    finally:
        cluster.wait_closed()


def extract(
    cfg: ExtractConfig | None = None, /, progress: bool | None = None, **options: Any
) -> ExtractReport:
    """Extract features of ``cfg.inputs`` into the feature set of ``cfg`` in ``cfg.store``
    (created on first use, named from the config unless ``cfg.name`` is given).

    Instead of a config, the options of ``vidfeat extract`` as keyword arguments (names with
    ``_``, checked as the CLI checks them)::

        extract(inputs=["videos/"], store="store", frames=16, backbone="resnet50", workers=2)

    Videos already committed with the same fingerprint or bytes are skipped, so a rerun
    resumes; a video that fails is recorded with its reason and the run goes on. Runs on a
    LocalCluster of ``cfg.workers`` processes, or on the Dask cluster at ``cfg.scheduler``.
    ``progress`` shows the progress bar (default: ``cfg.progress``). Returns an
    ``ExtractReport`` (counts, failures, timings). Raises ``InputError``, ``SpecMismatch``,
    ``ExtractError`` (all ``VidfeatError``) with one-line messages.
    """
    if cfg is None:
        cfg = build_extract_config(extract_options(EXTRACT_KEYS, {}, options, ""))
    elif options:
        raise ConfigError(f"Give a config or options, not both ({', '.join(options)}).")
    show = cfg.progress if progress is None else progress
    start = time.perf_counter()
    cores = os.cpu_count() or 1
    sizing = _sizing(cfg, cores)
    cfg = dataclasses.replace(cfg, workers=sizing.workers, decode_threads=sizing.decode_threads)
    torch_threads = sizing.torch_threads if cfg.scheduler is None else None
    check_inputs(cfg.inputs)
    if show and cfg.scheduler is None:
        from rich.console import Console

        Console(stderr=True).print(sizing.describe(cores), highlight=False)
    with _cluster(cfg, sizing.gpus) as cluster:
        videos = discover(cfg.inputs, cfg.label_from)
        from rich.console import Console

        status = Console(stderr=True).status("starting workers: backbones, decoders")
        with status if show else contextlib.nullcontext():
            client = cluster.client()
            admissions = cluster.admissions = _Admissions(client, cfg, torch_threads)
            prepared = _prepare_workers(client, cfg, admissions)
        specs = [_spec(cfg, d) for d in prepared["backbones"]]
        if show:
            _print_preprocessing(specs, prepared["weights_mib"], prepared["engines"])
        store = open_store(cfg.store, mode="a")  # after the workers: a refused run creates none
        targets = []
        described = zip(specs, prepared["weights_mib"], prepared["engines"], strict=True)
        for backbone, (spec, mib, engine) in zip(cfg.backbones, described, strict=True):
            name = cfg.name or spec.default_name()
            extra = {"backbone_config": asdict(backbone)}  # predict rebuilds the backbone
            extra["engine"] = engine  # provenance: each video's record names its engine
            extra |= creation_meta(cfg.description, cfg.tags)
            fset = store.create_featureset(name, spec, extra=extra)
            plan = plan_videos(videos, fset.catalog(), cfg.retry_failed, cfg.update)
            report = ExtractReport(name, store.url, len(videos), plan.skipped, hwaccel=cfg.hwaccel)
            report.videos_same_content = plan.same_content
            report.failures += plan.conflicts
            report.weights_mib, report.engine = mib, engine
            pending = {v.video_id for v in plan.pending}
            targets.append(_Target(backbone, fset, plan, report, pending))
        admissions.admit([t.fset for t in targets])
        ready = time.perf_counter() - start
        n_workers = len(client.scheduler_info().get("workers", {})) or sizing.workers
        parts = plan_parts(_pending_union(targets), n_workers, cfg.videos_per_part)
        for t in targets:
            t.report.workers_ready_s = ready
            t.report.parts = sum(t.part_target(pid, group) is not None for pid, group in parts)
        if parts:
            with contextlib.ExitStack() as leases:
                for t in targets:
                    store.fs.check_writable(t.fset.prefix)  # one line now, not a failed part
                    leases.enter_context(writer_lease(store.fs, t.fset.prefix))  # `rm` waits
                _run(
                    client, cfg, targets, parts, show, torch_threads, store.version >= 2, admissions
                )
        for t in targets:
            t.report.refused_workers = admissions.refused_lines()
        admissions.close()  # workers that join from now on prepare nothing for this run
        cluster.close()  # the workers go while the snapshots are written
        for t in targets:
            _snapshot(store.version, t.fset, t.report)
    wall_s = time.perf_counter() - start
    for t in targets:
        report = t.report
        report.wall_s = wall_s
        # --strict is about the inputs: failures recorded by earlier runs count too. Inputs
        # this run extracted are judged by this run alone (a retried video may have succeeded).
        earlier = t.plan.failed_before
        report.failed_inputs = sorted({f.video_id for f in report.failures} | earlier - t.pending)
    first = targets[0].report
    first.also = [t.report for t in targets[1:]]
    if cfg.report:
        with open(cfg.report, "w") as f:
            json.dump(first.to_json(), f, indent=2)
    return first


def _print_preprocessing(
    specs: list[FeatureSetSpec], weights_mib: list[float], engines: list[str]
) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    for spec, mib, engine in zip(specs, weights_mib, engines, strict=True):
        who = f"{spec.backbone}: " if len(specs) > 1 else ""
        weights = f", weights {mib:.3g} MiB per worker" if len(specs) > 1 else ""
        console.print(
            f"{who}preprocessing: shorter side {spec.resize_size} ({spec.interpolation}), "
            f"centre crop {spec.input_size}, mean {list(spec.mean)}, std {list(spec.std)}"
            + (" (resized on the device)" if spec.resize_on == "device" else "")
            + weights,
            highlight=False,
        )
        console.print(f"{who}engine: {engine}", highlight=False)


def _sizing(cfg: ExtractConfig, cores: int) -> Sizing:
    """Workers, decoders and GPUs of this run. With --scheduler the workers are the user's:
    an auto decoder count is the CPU's (a GPU worker's cores are not known here)."""
    if cfg.scheduler:
        return Sizing(cfg.workers or 1, cfg.decode_threads or CPU_DECODE_THREADS, 1)
    gpus = visible_gpus() if cfg.backbone.device != "cpu" else []
    return plan_sizing(cores, gpus, cfg.backbone.device, cfg.workers, cfg.decode_threads)


def _snapshot(store_version: int, fset: FeatureSet, report: ExtractReport) -> None:
    """A catalog snapshot of everything committed so far, so that the next reader does not
    read every commit record. The commits are safe whatever happens here: a failure is noted
    in the report, not raised."""
    if store_version < 2:
        report.snapshot_note = (
            f"the store is format {store_version}: no catalog snapshot written; run "
            "`vidfeat compact STORE` once to upgrade it"
        )
        return
    try:
        manifest = fset.compact()
    except (StoreError, OSError) as e:
        report.snapshot_note = f"catalog snapshot not written: {e}"
        return
    newest = fset.catalog().snapshot
    report.snapshot = manifest.seq if manifest else newest.manifest.seq if newest else None


@contextmanager
def _sigint_flag() -> Iterator[threading.Event]:
    """Ctrl-C sets a flag that the wait loop checks, instead of raising KeyboardInterrupt at
    whatever point the main thread is in Dask's client code: on fresh clones a run now and then
    went on after the SIGINT (tests/pipeline/test_faults.py). Outside the main thread (no
    signal handlers there) the flag is never set and Ctrl-C behaves as before."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:  # a second Ctrl-C while the cluster closes interrupts as usual
        signal.signal(signal.SIGINT, previous)


def _part_tasks(
    cfg: ExtractConfig,
    store_url: str,
    targets: list[_Target],
    parts: list[tuple[str, tuple[VideoInput, ...]]],
    torch_threads: int | None,
    progress_topic: str,
) -> list[PartTask]:
    tasks = []
    for pid, group in parts:
        shares = tuple(s for t in targets if (s := t.part_target(pid, group)) is not None)
        tasks.append(
            PartTask(
                store_url,
                pid,
                group,
                shares,
                cfg.sampling,
                cfg.decode_threads or CPU_DECODE_THREADS,  # sized by extract() before this
                cfg.timeout_s,
                torch_threads,
                progress_topic,
                None if cfg.hwaccel == "none" else cfg.hwaccel,
            )
        )
    return tasks


class _LiveProgress:
    """What the workers say they have done in parts not yet committed, from their progress
    events (Dask's worker-to-client events: vidfeat.pipeline.remote); a part's committed
    summary then replaces its live totals. Events arrive on the client's event-loop thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, tuple[str, int, int, int]] = {}  # part → attempt, totals
        self._finished: set[str] = set()

    def on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        part, attempt = msg["part"], msg["attempt"]
        totals = (attempt, msg["videos"], msg["failed"], msg["frames"])
        with self._lock:
            if part in self._finished:
                return  # late news of a committed part
            old = self._live.get(part)
            if old is None or old[0] != attempt or old[1:] <= totals[1:]:
                self._live[part] = totals  # a retry's totals replace the lost attempt's

    def finish(self, part: str) -> None:
        with self._lock:
            self._finished.add(part)
            self._live.pop(part, None)

    def totals(self) -> tuple[int, int, int]:
        """(videos done, failed, frames) in parts still running."""
        with self._lock:
            live = list(self._live.values())
        return (sum(t[1] for t in live), sum(t[2] for t in live), sum(t[3] for t in live))


def _progress_bar(console: Any, show: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("videos  {task.fields[fps]:.1f} frames/s  {task.fields[failures]} failed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
    )


def _run(
    client: Any,
    cfg: ExtractConfig,
    targets: list[_Target],
    parts: list[tuple[str, tuple[VideoInput, ...]]],
    show: bool,
    torch_threads: int | None,
    snapshots: bool,
    admissions: _Admissions,
) -> None:
    """Run the part tasks on the admitted workers, at most ``window`` in flight (it grows as
    workers are admitted), counting each summary in as it comes; Ctrl-C cancels what is in
    flight (committed parts stay)."""
    from dask.distributed import as_completed
    from rich.console import Console

    from vidfeat.pipeline.remote import run_part

    topic = f"vidfeat-progress-{os.getpid()}-{time.time_ns()}"
    url = targets[0].fset.fs.url
    tasks = _part_tasks(cfg, url, targets, parts, torch_threads, topic if show else "")
    total_videos = sum(len(t.videos) for t in tasks)
    console = Console(stderr=True)
    dashboard = client.dashboard_link
    by_name = {t.fset.name: t for t in targets}
    for t in targets:
        t.report.dashboard = dashboard
    bar = _progress_bar(console, show)
    frames = parts_done = videos_committed = 0
    task_of: dict[str, PartTask] = {}  # by task key
    in_flight: dict[str, Any] = {}  # task key → future, of the parts not yet counted in
    live = _LiveProgress()
    if show:
        client.subscribe_topic(topic, live.on_event)
    t0 = time.perf_counter()
    with bar:
        if show and dashboard:
            console.print(f"dashboard: {dashboard}")
        job = bar.add_task("extract", total=total_videos, fps=0.0, failures=0)
        rows = {  # one line per feature set when there are several: its videos and frames/s
            t.fset.name: bar.add_task(
                f"  {t.backbone.name}", total=len(t.pending), fps=0.0, failures=0
            )
            for t in targets
            if len(targets) > 1
        }
        queue_ = iter(tasks)
        futures = as_completed()

        def submit(task: PartTask) -> None:
            key = f"part-{task.part_id}-{time.time_ns()}"
            task_of[key] = task
            # Only admitted workers hold the resource: a refused one is never given a part.
            resources = {admissions.resource: 1}
            future = client.submit(
                run_part, task, key=key, retries=2, pure=False, resources=resources
            )
            in_flight[key] = future
            futures.add(future)

        def top_up() -> None:
            while len(in_flight) < admissions.window(cfg.max_in_flight):
                nxt = next(queue_, None)
                if nxt is None:
                    return
                submit(nxt)

        def resubmit(key: str) -> None:  # its cancelled future comes out of `futures`: skipped
            client.cancel([in_flight.pop(key)])
            submit(task_of.pop(key))

        def failures() -> int:
            return len({f.video_id for t in targets for f in t.report.failures})

        def show_progress() -> None:
            videos, failed, live_frames = live.totals()
            elapsed = max(time.perf_counter() - t0, 1e-9)
            bar.update(
                job,
                completed=min(total_videos, videos_committed + videos + failed),
                fps=(frames + live_frames) / elapsed,
                failures=failures() + failed,
            )

        def record(key: str, summaries: tuple[PartSummary, ...]) -> None:
            nonlocal frames, parts_done, videos_committed
            task = task_of.pop(key)
            del in_flight[key]
            videos_committed += len(task.videos)
            elapsed = max(time.perf_counter() - t0, 1e-9)
            for summary in summaries:
                t = by_name[summary.featureset]
                frames += summary.frames
                t.frames += summary.frames
                t.report.add(summary)
                if summary.featureset in rows:
                    bar.update(
                        rows[summary.featureset],
                        advance=summary.videos + len(summary.failures),
                        fps=t.frames / elapsed,
                        failures=len(t.report.failures),
                    )
            live.finish(task.part_id)
            show_progress()
            top_up()
            parts_done += 1
            if snapshots and parts_done % SNAPSHOT_EVERY == 0:
                for t in targets:
                    _snapshot(2, t.fset, t.report)

        top_up()
        next_check = time.monotonic() + 1.0
        try:
            with _sigint_flag() as interrupted:
                while not futures.is_empty():
                    if interrupted.is_set():
                        raise KeyboardInterrupt
                    done = futures.next_batch(block=False)
                    if not done:
                        interrupted.wait(0.05)
                        if show:
                            show_progress()
                    for future in done:
                        if future.key in in_flight:  # else resubmitted: the new one counts
                            record(future.key, future.result())
                    if time.monotonic() >= next_check:  # workers joined, refused, or left
                        next_check = time.monotonic() + 1.0
                        for key in admissions.check(in_flight, cfg.worker_wait_s):
                            resubmit(key)
                        top_up()
        except KeyboardInterrupt:
            client.cancel(list(futures.futures))
            raise
        finally:
            if show:
                client.unsubscribe_topic(topic)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        for t in targets:
            t.report.frames_per_s = t.frames / elapsed
