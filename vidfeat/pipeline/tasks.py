"""What the client sends to the workers and what comes back: plain data, free of torch."""

from __future__ import annotations

from dataclasses import dataclass

from vidfeat.config import BackboneConfig, SamplingConfig
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.store import FailureRecord


@dataclass(frozen=True, slots=True)
class PartTarget:
    """A feature set a part writes to: the part id there, its backbone, and which of the
    part's videos it wants (a rerun may find some already stored in one set, not another)."""

    featureset: str
    part_id: str
    backbone: BackboneConfig
    video_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartTask:
    """A group of videos decoded once for every target (one per backbone)."""

    store: str
    part_id: str  # the group's id: progress and task keys
    videos: tuple[VideoInput, ...]
    targets: tuple[PartTarget, ...]
    sampling: SamplingConfig
    decode_threads: int = 2
    timeout_s: float = 600.0
    torch_threads: int | None = None
    progress_topic: str = ""  # the Dask event topic the client follows ("": none)
    hwaccel: str | None = None  # decode on this device when it can (None: software)


@dataclass(frozen=True, slots=True)
class PartSummary:
    """What a part task returns to the client: counts and timings, never rows."""

    part_id: str
    featureset: str
    won: bool  # False: another attempt committed this part first
    videos: int
    rows: int
    failures: tuple[FailureRecord, ...]
    frames: int  # frames through this feature set's backbone
    seeks: int
    targets: int  # rows asked of the decoders
    model_s: float  # this backbone's
    wall_s: float
    worker_rss_mib: float  # peak resident memory of this worker process
    decoder_rss_mib: float  # and of its largest decoder child
    hw_decoded: int = 0  # videos decoded on the GPU's video engines (--hwaccel)
    decode_fallbacks: tuple[str, ...] = ()  # "video_id: why" for each video decoded in software
