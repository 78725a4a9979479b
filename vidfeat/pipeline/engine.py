"""The worker side: one backbone per process, decode threads feeding one inference loop that
batches frames across videos, and the part write + commit. A part task runs in typed stages,
``extract_videos → list[VideoOutcome]``, ``write_part → CommitResult``, and returns a
``PartSummary`` only."""

from __future__ import annotations

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
from vidfeat.errors import ValueRangeError, VideoDecodeError
from vidfeat.models.backbone import Backbone, InFlight
from vidfeat.models.batch_size import auto_batch_size
from vidfeat.pipeline.decode import Geometry, VideoIndex
from vidfeat.pipeline.device_resize import device_batch
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.pipeline.sandbox import POOL
from vidfeat.pipeline.tasks import PartSummary, PartTask
from vidfeat.store import CommitResult, FailureRecord, FeatureSet, VideoRecord
from vidfeat.uris import is_remote, is_url

# Per-process cache, not configuration: (name, weights, device, precision, preprocess, resize).
_MODELS: dict[tuple[str, str, str, str, str | None, str], Backbone] = {}
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

    key = (cfg.name, cfg.weights, cfg.device, cfg.precision, cfg.preprocess, cfg.resize_on)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = create_backbone(
                cfg.name, cfg.weights, cfg.device, cfg.precision, cfg.preprocess, cfg.resize_on
            )
        return _MODELS[key]


def prepare_worker(
    backbone: BackboneConfig, torch_threads: int | None, part_format: str = "zarr"
) -> dict[str, Any]:
    """Run on every worker before the first part: size torch's threads, load the backbone, and
    warm it up in the background. Returns the backbone's description (the feature set's
    identity as this worker sees it). The decoder children are already starting
    (remote.prepare_worker)."""
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    model = get_backbone(backbone)
    with _MODELS_LOCK:
        first = id(model) not in _WARMED
        _WARMED.add(id(model))
    if first:  # a long-lived worker (--scheduler) warms each model once
        probe = backbone.batch_size is None
        threading.Thread(
            target=_warm_up, args=(model, part_format, probe), name="vidfeat-warm-up", daemon=True
        ).start()
    return model.describe()


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
    features: list[np.ndarray] = field(default_factory=list)
    frame_index: list[np.ndarray] = field(default_factory=list)
    pts: list[np.ndarray] = field(default_factory=list)
    sha256: str = ""
    error: VideoDecodeError | None = None
    done: bool = False
    decoder: str = ""  # DecodeReport.describe_decoder(); a segment's fallback wins

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features, pts, frame_index) in frame order: the chunks of a video that several
        decoders shared (segments) arrive interleaved."""
        frame_index = np.concatenate(self.frame_index)
        order = np.argsort(frame_index, kind="stable")
        features, pts = np.concatenate(self.features), np.concatenate(self.pts)
        return features[order], pts[order], frame_index[order]


@dataclass(slots=True)
class RunStats:
    frames: int = 0  # frames through the backbone
    seeks: int = 0
    targets: int = 0
    model_s: float = 0.0
    segments: int = 0  # decode jobs that presented frames (each segment of a split video)


def _decode_worker(
    slot: int,
    segment: tuple[int, int],
    v: VideoInput,
    sampling: SamplingConfig,
    timeout_s: float,
    geometry: Geometry,
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


def run_videos(
    videos: tuple[VideoInput, ...] | list[VideoInput],
    backbone: Backbone,
    sampling: SamplingConfig,
    batch_size: int,
    decode_threads: int = 2,
    timeout_s: float = 600.0,
    on_progress: ProgressCallback | None = None,
    hwaccel: str | None = None,
) -> tuple[list[VideoResult], RunStats]:
    """Decode all videos concurrently (on ``hwaccel`` when it can) and run the backbone on
    batches mixed across videos.
    ``on_progress(videos_done, videos_failed, frames)``, running totals, is called as each
    video finishes and, while frames flow, about once a second."""
    import torch

    p = backbone.preprocess
    geometry = Geometry(
        p.resize_size, p.input_size, p.interpolation, on_device=backbone.resize_on == "device"
    )
    results = [VideoResult(v) for v in videos]
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
    stats = RunStats()
    pending: list[tuple[int, Any]] = []  # (slot, chunk) waiting for inference
    pending_rows = 0
    counts = {"done": 0, "failed": 0}
    last_report = time.perf_counter()

    def report_progress(force: bool) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if on_progress is not None and (force or now - last_report >= PROGRESS_EVERY_S):
            last_report = now
            on_progress(counts["done"], counts["failed"], stats.frames)

    # One batch in flight: on CUDA the next batch is assembled and uploaded while it computes.
    in_flight: tuple[InFlight, list[tuple[int, Any]]] | None = None

    def collect() -> None:
        nonlocal in_flight
        if in_flight is None:
            return
        job, batch = in_flight
        in_flight = None
        with _INFERENCE_LOCK:
            start = time.perf_counter()
            feats = job.result()
            stats.model_s += time.perf_counter() - start
        stats.frames += len(feats)
        row = 0
        for slot, c in batch:
            n = len(c.frames)
            r = results[slot]
            r.features.append(feats[row : row + n])
            r.frame_index.append(c.frame_index)
            r.pts.append(c.pts_s)
            row += n
        report_progress(force=False)

    def flush() -> None:
        nonlocal pending, pending_rows, in_flight
        if not pending:
            return
        with _INFERENCE_LOCK:
            start = time.perf_counter()
            chunks = [c.frames for _, c in pending]
            if geometry.on_device:
                frames: Any = device_batch(chunks, geometry, backbone.device)
            else:
                frames = np.concatenate(chunks)
            job = backbone.submit(frames)
            stats.model_s += time.perf_counter() - start
        collect()  # the previous batch, which computed while this one was prepared
        in_flight = (job, pending)
        pending, pending_rows = [], 0

    with torch.inference_mode(), ThreadPoolExecutor(max_workers=decode_threads) as pool:
        for slot, segment in jobs:
            v = videos[slot]
            pool.submit(_decode_worker, slot, segment, v, sampling, timeout_s, geometry, q, hwaccel)
        finished = 0
        while finished < len(jobs):
            try:  # inference never idles while frames are waiting
                kind, slot, payload = q.get(timeout=0.0 if pending else None)
            except queue.Empty:
                flush()
                continue
            if kind == "frames":
                pending.append((slot, payload))
                pending_rows += len(payload.frames)
                if pending_rows >= batch_size:
                    flush()
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
        flush()
        collect()
    return results, stats


@dataclass(frozen=True, slots=True)
class Extracted:
    """A video's rows, ready for its part."""

    record: VideoRecord
    values: np.ndarray
    pts: np.ndarray
    frame_index: np.ndarray


VideoOutcome = Extracted | FailureRecord


def _outcome(r: VideoResult) -> VideoOutcome:
    v = r.video
    if r.error is not None or r.index is None:
        err = r.error or VideoDecodeError("error", f"{v.path}: no result")
        return FailureRecord(v.video_id, v.path, err.kind, err.message, v.size, v.mtime_ns, v.label)
    values, pts, frame_index = r.rows()
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
    )
    return Extracted(record, values, pts, frame_index)


def extract_videos(
    task: PartTask, backbone: Backbone, on_progress: ProgressCallback | None = None
) -> tuple[list[VideoOutcome], RunStats]:
    """Decode and embed the part's videos: one outcome per video, in the part's order."""
    results, stats = run_videos(
        task.videos,
        backbone,
        task.sampling,
        task.backbone.batch_size or auto_batch_size(backbone),
        task.decode_threads,
        task.timeout_s,
        on_progress,
        task.hwaccel,
    )
    return [_outcome(r) for r in results], stats


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


def run_part(task: PartTask, on_progress: ProgressCallback | None = None) -> PartSummary:
    """A dask task: extract_videos → write_part (commit) → a summary."""
    import torch

    from vidfeat.store import open_store

    start = time.perf_counter()
    if task.torch_threads:
        torch.set_num_threads(task.torch_threads)
    backbone = get_backbone(task.backbone)
    fset = open_store(task.store).get_featureset(task.featureset)
    outcomes, stats = extract_videos(task, backbone, on_progress)
    commit, failures = write_part(fset, task.part_id, outcomes)
    decoded = [o.record for o in outcomes if isinstance(o, Extracted)] if task.hwaccel else []
    return PartSummary(
        part_id=task.part_id,
        won=commit.won,
        videos=commit.n_videos,
        rows=commit.n_rows,
        failures=failures,
        frames=stats.frames,
        seeks=stats.seeks,
        targets=stats.targets,
        model_s=stats.model_s,
        wall_s=time.perf_counter() - start,
        worker_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        decoder_rss_mib=POOL.peak_rss_mib(),
        hw_decoded=sum(r.decoder == task.hwaccel for r in decoded),
        decode_fallbacks=tuple(
            f"{r.video_id}: {r.decoder}" for r in decoded if r.decoder != task.hwaccel
        ),
    )
