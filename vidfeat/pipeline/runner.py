"""The client side of ``vidfeat extract``: plan, run parts on Dask, show progress, report.
The only module that imports dask.distributed."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from vidfeat.config import ExtractConfig
from vidfeat.pipeline.discovery import VideoInput, discover
from vidfeat.pipeline.engine import PartTask, run_part
from vidfeat.store import FeatureSet, FeatureSetSpec, open_store


@dataclass(slots=True)
class ExtractReport:
    featureset: str
    store: str
    videos_found: int
    videos_skipped: int
    videos_done: int = 0
    rows: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    parts: int = 0
    parts_lost: int = 0
    wall_s: float = 0.0
    frames_per_s: float = 0.0
    dashboard: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def featureset_spec(cfg: ExtractConfig) -> FeatureSetSpec:
    """The identity of what this config extracts: built from the backbone's own metadata."""
    from vidfeat.models.backbone import resolve_device, resolve_precision
    from vidfeat.pipeline.engine import get_backbone

    described = get_backbone(
        cfg.backbone.__class__(cfg.backbone.name, cfg.backbone.weights, "cpu", "float32")
    ).describe()
    device = resolve_device(cfg.backbone.device) if cfg.scheduler is None else None
    precision = cfg.backbone.precision
    if precision == "auto":
        precision = resolve_precision("auto", device) if device is not None else "float32"
    described["precision"] = precision
    return FeatureSetSpec(
        **described,
        sampling=cfg.sampling.identity(),
        dtype=cfg.dtype,
        part_format=cfg.format,
    )


def plan_parts(
    videos: list[VideoInput], workers: int, per_part: int | None
) -> list[tuple[str, tuple[VideoInput, ...]]]:
    """Group pending videos into parts: ~4 parts per worker for load balance, at most 64
    videos each. A part's id hashes its videos and fingerprints, so two jobs that plan the
    same work race on the same commit (one wins) instead of duplicating it."""
    if not videos:
        return []
    size = per_part or max(1, min(64, -(-len(videos) // (4 * workers))))
    parts = []
    for i in range(0, len(videos), size):
        group = tuple(videos[i : i + size])
        h = hashlib.sha256()
        for v in group:
            h.update(f"{v.video_id}\0{v.size}\0{v.mtime_ns}\n".encode())
        parts.append((f"p-{h.hexdigest()[:20]}", group))
    return parts


@contextmanager
def _client(cfg: ExtractConfig) -> Iterator[Any]:
    from dask.distributed import Client, LocalCluster

    if cfg.scheduler:
        with Client(cfg.scheduler, timeout="30s") as client:
            yield client
        return
    cluster = LocalCluster(
        n_workers=cfg.workers,
        threads_per_worker=1,  # one part at a time per process; decode threads live inside
        processes=True,
        dashboard_address=":0",
        silence_logs=40,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def extract(cfg: ExtractConfig, progress: bool | None = None) -> ExtractReport:
    show = cfg.progress if progress is None else progress
    start = time.perf_counter()
    videos = discover(cfg.inputs, cfg.label_from)
    spec = featureset_spec(cfg)
    store = open_store(cfg.store, mode="a")
    name = cfg.name or spec.default_name()
    fset = store.create_featureset(name, spec, extra={"backbone_config": asdict(cfg.backbone)})
    done = fset.done()
    pending = [
        v for v in videos if not done.should_skip(v.video_id, v.fingerprint, cfg.retry_failed)
    ]
    report = ExtractReport(name, store.url, len(videos), len(videos) - len(pending))
    parts = plan_parts(pending, cfg.workers, cfg.videos_per_part)
    report.parts = len(parts)
    if parts:
        _run(cfg, fset, parts, report, show)
    report.wall_s = time.perf_counter() - start
    if cfg.report:
        with open(cfg.report, "w") as f:
            json.dump(report.to_json(), f, indent=2)
    return report


def _run(
    cfg: ExtractConfig,
    fset: FeatureSet,
    parts: list[tuple[str, tuple[VideoInput, ...]]],
    report: ExtractReport,
    show: bool,
) -> None:
    from dask.distributed import as_completed
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    cores = os.cpu_count() or 1
    torch_threads = max(1, cores // cfg.workers) if cfg.scheduler is None else None
    tasks = [
        PartTask(
            fset.fs.url,
            fset.name,
            pid,
            group,
            cfg.backbone,
            cfg.sampling,
            cfg.decode_threads,
            cfg.timeout_s,
            torch_threads,
        )
        for pid, group in parts
    ]
    total_videos = sum(len(t.videos) for t in tasks)
    console = Console(stderr=True)
    with _client(cfg) as client:
        report.dashboard = client.dashboard_link
        window = cfg.max_in_flight or max(
            2, 2 * len(client.scheduler_info().get("workers", {})) or 2
        )
        bar = Progress(
            TextColumn("[bold]extract"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("videos  {task.fields[fps]:.1f} frames/s  {task.fields[failures]} failed"),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
        )
        frames = 0
        t0 = time.perf_counter()
        with bar:
            if show and report.dashboard:
                console.print(f"dashboard: {report.dashboard}")
            job = bar.add_task("extract", total=total_videos, fps=0.0, failures=0)
            queue_ = iter(tasks)
            futures = as_completed()
            for task in [next(queue_) for _ in range(min(window, len(tasks)))]:
                futures.add(
                    client.submit(
                        run_part,
                        task,
                        key=f"part-{task.part_id}-{time.time_ns()}",
                        retries=2,
                        pure=False,
                    )
                )
            try:
                for future in futures:
                    summary = future.result()
                    frames += summary["frames"]
                    report.videos_done += summary["videos"]
                    report.rows += summary["rows"]
                    report.failures += summary["failures"]
                    report.parts_lost += 0 if summary["won"] else 1
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    bar.update(
                        job,
                        advance=summary["videos"] + len(summary["failures"]),
                        fps=frames / elapsed,
                        failures=len(report.failures),
                    )
                    nxt = next(queue_, None)
                    if nxt is not None:
                        futures.add(
                            client.submit(
                                run_part,
                                nxt,
                                key=f"part-{nxt.part_id}-{time.time_ns()}",
                                retries=2,
                                pure=False,
                            )
                        )
            except KeyboardInterrupt:
                client.cancel(list(futures.futures))
                raise
            report.frames_per_s = frames / max(time.perf_counter() - t0, 1e-9)
