"""What the client sends to the workers and what comes back: plain data, free of torch."""

from __future__ import annotations

from dataclasses import dataclass

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
    progress_topic: str = ""  # the Dask event topic the client follows ("": none)
    hwaccel: str | None = None  # decode on this device when it can (None: software)


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
    hw_decoded: int = 0  # videos decoded on the GPU's video engines (--hwaccel)
    decode_fallbacks: tuple[str, ...] = ()  # "video_id: why" for each video decoded in software
