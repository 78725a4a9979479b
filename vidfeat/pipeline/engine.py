"""The worker side: the run's backbones loaded once per process, decode threads feeding one
inference loop that batches frames across videos for each backbone, and the part writes +
commits. A part task runs in typed stages, ``extract_videos → list[VideoOutcome]`` per feature
set, ``write_part → CommitResult``, and returns a ``PartSummary`` per feature set only."""

from __future__ import annotations

import dataclasses
import os
import queue
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidfeat.config import BackboneConfig, SamplingConfig
from vidfeat.errors import ValueRangeError, VideoDecodeError, WorkerRefused
from vidfeat.models.backbone import Backbone, InFlight
from vidfeat.models.batch_size import auto_batch_size
from vidfeat.pipeline.decode import Geometry, VideoIndex
from vidfeat.pipeline.device_resize import device_batch
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.pipeline.sandbox import POOL
from vidfeat.pipeline.tasks import PartSummary, PartTask, identity_differences
from vidfeat.store import CommitResult, FailureRecord, FeatureSet, VideoRecord
from vidfeat.uris import is_remote, is_url

# Per-process cache, not configuration: one backbone per config (the batch size aside).
_MODELS: dict[BackboneConfig, Backbone] = {}
_MODELS_LOCK = threading.Lock()
_WARMED: set[int] = set()  # ids of the cached models warmed up
WARM_UP_FRAMES = 2
PROGRESS_EVERY_S = 1.0  # frames-only progress reports while videos are long
ProgressCallback = Callable[[int, int, int], None]  # (videos done, videos failed, frames)
# Workers started with several threads (dask worker --nthreads N) run several parts at once;
# their batches take turns on the one model instead of oversubscribing the cores.
_INFERENCE_LOCK = threading.Lock()


def get_backbone(cfg: BackboneConfig) -> Backbone:
    """The process's backbone for this config, loaded once."""
    from vidfeat.models.factory import create_backbone

    key = dataclasses.replace(cfg, batch_size=None)  # the batch size does not change the model
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = create_backbone(
                *(cfg.name, cfg.weights, cfg.device, cfg.precision, cfg.preprocess),
                resize_on=cfg.resize_on,
                engine=cfg.engine,
            )
        return _MODELS[key]


def prepare_worker(
    backbones: tuple[BackboneConfig, ...], torch_threads: int | None, part_format: str = "zarr"
) -> dict[str, Any]:
    """Run on every worker before the first part: size torch's threads, load every backbone,
    and warm them up in the background. Returns ``{"backbones": [description, ...]}`` (each
    feature set's identity as this worker sees it) and ``"weights_mib"``, the memory each
    backbone's weights take here. The decoder children are already starting
    (remote.prepare_worker)."""
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    described, weights_mib, engines = [], [], []
    for cfg in backbones:
        model = get_backbone(cfg)
        with _MODELS_LOCK:
            first = id(model) not in _WARMED
            _WARMED.add(id(model))
        if first:  # a long-lived worker (--scheduler) warms each model once
            probe = cfg.batch_size is None
            threading.Thread(
                target=_warm_up,
                args=(model, part_format, probe),
                name="vidfeat-warm-up",
                daemon=True,
            ).start()
        described.append(model.describe())
        weights_mib.append(model.weights_mib())
        engines.append(model.engine_note or model.engine)
    return {"backbones": described, "weights_mib": weights_mib, "engines": engines}


def _warm_up(model: Backbone, part_format: str, probe_batch_size: bool = False) -> None:
    """A first small batch, under the inference lock (the first forward pass pays one-time
    set-up: threads, kernels, the allocator's growth), the batch-size probe on CUDA when it is
    auto, then the part format's library: all while the first part's decoders open their
    videos, not in its first batch and write."""
    import torch

    from vidfeat.store.formats import get_format

    size = model.preprocess.input_size
    with _INFERENCE_LOCK, torch.inference_mode():
        model(np.zeros((WARM_UP_FRAMES, size, size, 3), np.uint8))
        if probe_batch_size:
            auto_batch_size(model)
    get_format(part_format).import_library()


@dataclass(slots=True)
class VideoResult:
    video: VideoInput
    index: VideoIndex | None = None
    # Per backbone, its rows of each chunk, in the order the chunks arrived (frame_index's).
    features: list[list[np.ndarray]] = field(default_factory=list)
    frame_index: list[np.ndarray] = field(default_factory=list)
    pts: list[np.ndarray] = field(default_factory=list)
    sha256: str = ""
    error: VideoDecodeError | None = None
    done: bool = False
    decoder: str = ""  # DecodeReport.describe_decoder(); a segment's fallback wins

    def rows(self, backbone: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, pts, frame_index) of one backbone in frame order: the chunks of a video
        that several decoders shared (segments) arrive interleaved."""
        frame_index = np.concatenate(self.frame_index)
        order = np.argsort(frame_index, kind="stable")
        features, pts = np.concatenate(self.features[backbone]), np.concatenate(self.pts)
        return features[order], pts[order], frame_index[order]


@dataclass(slots=True)
class RunStats:
    frames: int = 0  # frames through the backbones (a frame counts once per backbone)
    seeks: int = 0
    targets: int = 0
    model_s: float = 0.0
    segments: int = 0  # decode jobs that presented frames (each segment of a split video)
    frames_by_backbone: list[int] = field(default_factory=list)
    model_s_by_backbone: list[float] = field(default_factory=list)


def _decode_worker(
    slot: int,
    segment: tuple[int, int],
    v: VideoInput,
    sampling: SamplingConfig,
    timeout_s: float,
    geometry: Geometry | tuple[Geometry, ...],
    out: queue.Queue[Any],
    hwaccel: str | None = None,
) -> None:
    """Runs in a decode thread: has a sandboxed child decode one segment of the video, pushes
    its frame chunks, then a final 'done' or 'error'."""
    decoder = POOL.acquire()
    try:
        index, sha256, report = decoder.decode(
            v.path,
            sampling,
            geometry,
            timeout_s,
            lambda chunk: out.put(("frames", slot, chunk)),
            segment,
            hwaccel,
        )
        out.put(("done", slot, (index, sha256, report, segment[0])))
    except VideoDecodeError as e:
        out.put(("error", slot, e))
    except Exception as e:  # a bug or an exotic failure must still be recorded, not lost
        out.put(("error", slot, VideoDecodeError("error", f"{v.path}: {type(e).__name__}: {e}")))
    finally:
        POOL.release(decoder)


def segments_per_video(n_videos: int, decode_threads: int, video: VideoInput) -> int:
    """How many decoders share one video: all of them when the part has fewer videos than
    decoders (a long video would otherwise keep one core busy and the others idle). Each
    decoder decides from the video's frame index whether its segment pays
    (vidfeat/pipeline/segments.py); a remote video is not split (each would download it)."""
    if is_remote(video.path) or n_videos >= decode_threads:
        return 1
    return -(-decode_threads // n_videos)


def _geometry(backbone: Backbone) -> Geometry:
    p = backbone.preprocess
    return Geometry(
        p.resize_size, p.input_size, p.interpolation, on_device=backbone.resize_on == "device"
    )


def run_videos(
    videos: tuple[VideoInput, ...] | list[VideoInput],
    backbone: Backbone | list[Backbone],
    sampling: SamplingConfig,
    batch_size: int | list[int],
    decode_threads: int = 2,
    timeout_s: float = 600.0,
    on_progress: ProgressCallback | None = None,
    hwaccel: str | None = None,
    needs: list[tuple[int, ...]] | None = None,
) -> tuple[list[VideoResult], RunStats]:
    """Decode all videos concurrently (on ``hwaccel`` when it can) and run the backbone, or
    each of several backbones, on batches mixed across videos. Each video is decoded once: its
    frames are converted to every geometry its backbones need (``needs[i]``: which backbones
    video i is for; default all), and each backbone batches its own frames.
    ``on_progress(videos_done, videos_failed, frames)``, running totals, is called as each
    video finishes and, while frames flow, about once a second."""
    import torch

    backbones = backbone if isinstance(backbone, list) else [backbone]
    batch_sizes = batch_size if isinstance(batch_size, list) else [batch_size] * len(backbones)
    geometries = list(dict.fromkeys(_geometry(b) for b in backbones))
    geometry_of = [geometries.index(_geometry(b)) for b in backbones]
    everything = tuple(range(len(backbones)))
    needs = needs or [everything] * len(videos)
    # Per video: the geometries its decoder converts to, and where backbone b's view lies.
    video_geometries = [sorted({geometry_of[b] for b in need}) for need in needs]
    results = [VideoResult(v, features=[[] for _ in backbones]) for v in videos]
    jobs = [
        (slot, (j, k))
        for slot, v in enumerate(videos)
        for k in [segments_per_video(len(videos), decode_threads, v)]
        for j in range(k)
    ]
    open_segments = [0] * len(videos)
    for slot, _ in jobs:
        open_segments[slot] += 1
    # Bounded: decoders wait when inference falls behind, so memory stays flat.
    q: queue.Queue[Any] = queue.Queue(maxsize=max(4, 4 * decode_threads))
    stats = RunStats(
        frames_by_backbone=[0] * len(backbones), model_s_by_backbone=[0.0] * len(backbones)
    )
    # Per backbone: (slot, chunk, its frames) waiting for inference, and their row count.
    pending: list[list[tuple[int, Any, np.ndarray]]] = [[] for _ in backbones]
    pending_rows = [0] * len(backbones)
    counts = {"done": 0, "failed": 0}
    last_report = time.perf_counter()

    def report_progress(force: bool) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if on_progress is not None and (force or now - last_report >= PROGRESS_EVERY_S):
            last_report = now
            on_progress(counts["done"], counts["failed"], stats.frames)

    # One batch in flight per backbone: on CUDA the next batch is assembled and uploaded while
    # it computes.
    in_flight: list[tuple[InFlight, list[tuple[int, Any, np.ndarray]]] | None] = [None] * len(
        backbones
    )

    def collect(b: int) -> None:
        job_batch = in_flight[b]
        if job_batch is None:
            return
        job, batch = job_batch
        in_flight[b] = None
        with _INFERENCE_LOCK:
            start = time.perf_counter()
            feats = job.result()
            spent = time.perf_counter() - start
        stats.model_s += spent
        stats.model_s_by_backbone[b] += spent
        stats.frames += len(feats)
        stats.frames_by_backbone[b] += len(feats)
        row = 0
        for slot, _, frames in batch:
            n = len(frames)
            results[slot].features[b].append(feats[row : row + n])
            row += n
        report_progress(force=False)

    def flush(b: int) -> None:
        if not pending[b]:
            return
        model = backbones[b]
        with _INFERENCE_LOCK:
            start = time.perf_counter()
            views = [frames for _, _, frames in pending[b]]
            if geometries[geometry_of[b]].on_device:
                batch: Any = device_batch(views, geometries[geometry_of[b]], model.device)
            else:
                batch = np.concatenate(views)
            job = model.submit(batch)
            spent = time.perf_counter() - start
        stats.model_s += spent
        stats.model_s_by_backbone[b] += spent
        collect(b)  # the previous batch, which computed while this one was prepared
        in_flight[b] = (job, pending[b])
        pending[b], pending_rows[b] = [], 0

    with torch.inference_mode(), ThreadPoolExecutor(max_workers=decode_threads) as pool:
        for slot, segment in jobs:
            wanted = tuple(geometries[g] for g in video_geometries[slot])
            view = wanted[0] if len(wanted) == 1 else wanted
            pool.submit(
                _decode_worker, slot, segment, videos[slot], sampling, timeout_s, view, q, hwaccel
            )
        finished = 0
        while finished < len(jobs):
            try:  # inference never idles while frames are waiting
                kind, slot, payload = q.get(timeout=0.0 if any(pending) else None)
            except queue.Empty:
                for b in range(len(backbones)):
                    flush(b)
                continue
            if kind == "frames":
                r = results[slot]
                r.frame_index.append(payload.frame_index)
                r.pts.append(payload.pts_s)
                for b in needs[slot]:
                    frames = payload.views[video_geometries[slot].index(geometry_of[b])]
                    pending[b].append((slot, payload, frames))
                    pending_rows[b] += len(frames)
                    if pending_rows[b] >= batch_sizes[b]:
                        flush(b)
                continue
            finished += 1
            open_segments[slot] -= 1
            r = results[slot]
            if kind == "done":
                index, sha256, report, segment = payload
                if segment == 0:
                    r.index, r.sha256 = index, sha256
                if report.targets and (not r.decoder or report.fallback):
                    r.decoder = report.describe_decoder()
                stats.seeks += report.seeks
                stats.targets += report.targets
                stats.segments += report.targets > 0
            elif r.error is None:  # the first failing segment's reason is the video's
                r.error = payload
            r.done = open_segments[slot] == 0 and r.error is None
            if open_segments[slot] == 0:  # decoded; its last frames may still wait for a batch
                counts["failed" if r.error is not None else "done"] += 1
                report_progress(force=True)
        for b in range(len(backbones)):
            flush(b)
            collect(b)
    return results, stats


@dataclass(frozen=True, slots=True)
class Extracted:
    """A video's rows, ready for its part."""

    record: VideoRecord
    values: np.ndarray
    pts: np.ndarray
    frame_index: np.ndarray


VideoOutcome = Extracted | FailureRecord


def _outcome(r: VideoResult, backbone: int = 0, engine: str = "") -> VideoOutcome:
    v = r.video
    if r.error is not None or r.index is None:
        err = r.error or VideoDecodeError("error", f"{v.path}: no result")
        return FailureRecord(v.video_id, v.path, err.kind, err.message, v.size, v.mtime_ns, v.label)
    values, pts, frame_index = r.rows(backbone)
    ix = r.index
    width, height = ix.display_size
    record = VideoRecord(
        video_id=v.video_id,
        uri=v.path if is_url(v.path) else os.path.abspath(v.path),
        size=v.size,
        mtime_ns=v.mtime_ns,
        n_rows=len(values),
        sha256=r.sha256,
        label=v.label,
        split=v.split,
        duration_s=ix.duration_s,
        fps=ix.fps,
        width=width,
        height=height,
        codec=ix.codec,
        decoder=r.decoder,
        stream=ix.stream,
        index=ix.source,
        engine=engine,
    )
    return Extracted(record, values, pts, frame_index)


def extract_videos(
    task: PartTask, backbones: list[Backbone], on_progress: ProgressCallback | None = None
) -> tuple[list[list[VideoOutcome]], RunStats]:
    """Decode the part's videos once and embed them with every target's backbone: per target,
    one outcome per video it wants, in the part's order. A video that fails to decode fails
    in every target it was for, with the same reason."""
    wanted = [set(t.video_ids) for t in task.targets]
    needs = [tuple(i for i, w in enumerate(wanted) if v.video_id in w) for v in task.videos]
    batch_sizes = [
        t.backbone.batch_size or auto_batch_size(b)
        for t, b in zip(task.targets, backbones, strict=True)
    ]
    results, stats = run_videos(
        task.videos,
        backbones,
        task.sampling,
        batch_sizes,
        task.decode_threads,
        task.timeout_s,
        on_progress,
        task.hwaccel,
        needs,
    )
    outcomes = [
        [
            _outcome(r, i, backbones[i].engine)
            for r, need in zip(results, needs, strict=True)
            if i in need
        ]
        for i in range(len(task.targets))
    ]
    return outcomes, stats


def write_part(
    fset: FeatureSet, part_id: str, outcomes: list[VideoOutcome]
) -> tuple[CommitResult, tuple[FailureRecord, ...]]:
    """Write and commit the part; features the store refuses (NaN/inf, beyond float16) make
    that video a failure and the part goes on. Returns the commit and every failure."""
    failures: list[FailureRecord] = []
    with fset.writer(part_id) as writer:
        for o in outcomes:
            if isinstance(o, Extracted):
                try:
                    writer.add_video(o.record, o.values, o.pts, o.frame_index)
                    continue
                except ValueRangeError as e:
                    r = o.record
                    o = FailureRecord(
                        r.video_id, r.uri, "invalid_features", str(e), r.size, r.mtime_ns, r.label
                    )
            writer.add_failure(o)
            failures.append(o)
        return writer.commit(), tuple(failures)


def check_identity(fsets: list[FeatureSet], backbones: list[Backbone]) -> None:
    """Raise WorkerRefused, naming the differing fields, unless every backbone this process
    holds is exactly the one its feature set's spec describes (the spec was made from another
    worker's: this one may have loaded another file under the same weights name)."""
    for fset, model in zip(fsets, backbones, strict=True):
        differs = identity_differences(fset.spec, model.describe())
        if differs:
            raise WorkerRefused(
                f"This worker's {model.name} is not the backbone of feature set {fset.name!r} "
                f"({'; '.join(differs)}): it writes no row of it."
            )


def run_part(
    task: PartTask, on_progress: ProgressCallback | None = None
) -> tuple[PartSummary, ...]:
    """A dask task: check_identity → extract_videos → write_part (commit) per target → a
    summary per target."""
    import torch

    from vidfeat.store import open_store

    start = time.perf_counter()
    if task.torch_threads:
        torch.set_num_threads(task.torch_threads)
    backbones = [get_backbone(t.backbone) for t in task.targets]
    store = open_store(task.store)
    fsets = [store.get_featureset(t.featureset) for t in task.targets]
    check_identity(fsets, backbones)
    outcomes, stats = extract_videos(task, backbones, on_progress)
    summaries = []
    for i, (target, fset) in enumerate(zip(task.targets, fsets, strict=True)):
        commit, failures = write_part(fset, target.part_id, outcomes[i])
        decoded = [o.record for o in outcomes[i] if isinstance(o, Extracted)]
        decoded = decoded if task.hwaccel else []
        summaries.append(
            PartSummary(
                part_id=target.part_id,
                featureset=target.featureset,
                won=commit.won,
                videos=commit.n_videos,
                rows=commit.n_rows,
                failures=failures,
                frames=stats.frames_by_backbone[i],
                seeks=stats.seeks,
                targets=stats.targets,
                model_s=stats.model_s_by_backbone[i],
                wall_s=time.perf_counter() - start,
                worker_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                decoder_rss_mib=POOL.peak_rss_mib(),
                hw_decoded=sum(r.decoder == task.hwaccel for r in decoded),
                decode_fallbacks=tuple(
                    f"{r.video_id}: {r.decoder}" for r in decoded if r.decoder != task.hwaccel
                ),
            )
        )
    return tuple(summaries)
