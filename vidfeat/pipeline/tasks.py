"""What the client sends to the workers and what comes back: plain data, free of torch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from vidfeat.config import BackboneConfig, SamplingConfig
from vidfeat.pipeline.discovery import VideoInput
from vidfeat.store import FailureRecord, FeatureSetSpec
from vidfeat.store.spec import identity_fields


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
    worker: str = ""  # the Dask worker that ran the part (its address)


def identity_differences(spec: FeatureSetSpec, described: Mapping[str, Any]) -> list[str]:
    """How a backbone's ``describe()`` differs from the feature set's spec, one
    "field: spec X, this worker Y" per differing field (none: the backbone is the one the spec
    describes). Every field it describes is a spec field (runner._spec builds the spec so)."""
    out = []
    for key, value in identity_fields(described, spec.dtype).items():
        stored = getattr(spec, key, None)
        if json.dumps(stored) != json.dumps(value):  # tuples read back from JSON as lists
            out.append(f"{key}: spec {stored!r}, this worker {value!r}")
    return out


@dataclass(frozen=True, slots=True)
class Admission:
    """What a worker must hold to run this run's parts: exactly the backbones its feature sets'
    specs describe. A worker that does gets ``resource`` (the run's parts ask for one unit of
    it, so only such workers are given parts); either way it tells the client on ``topic``."""

    resource: str
    topic: str
    specs: tuple[FeatureSetSpec, ...]  # one per backbone of the run, in order
    featuresets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A worker's answer to the run's Admission (sent as a Dask event: a plain dict)."""

    worker: str
    admitted: bool
    nthreads: int
    why: str = ""  # refused: the differing fields, or why the backbone did not load

    def to_event(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_event(cls, msg: Mapping[str, Any]) -> Verdict:
        return cls(**msg)
