"""Frozen, validated configuration. No torch, no dask: this module is imported by the CLI and
the store, and must stay cheap.

Precedence everywhere: defaults < ``--config file.toml`` < CLI flags. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from vidfeat.errors import ConfigError

# Each choice list is declared once, as a Literal for the option validation (options.py).
PartFormat = Literal["zarr", "hdf5"]
FeatureDtype = Literal["float16", "float32"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "float32", "bfloat16", "float16"]
LabelSource = Literal["auto", "manifest", "parent", "none"]
HwAccel = Literal["none", "cuda"]  # where videos are decoded (cuda: the GPU's video engines)
ResizeOn = Literal["host", "device"]  # where frames are resized and cropped
# What computes the backbone: eager torch, OpenVINO (CPU), or OpenVINO where it converts and
# matches eager torch, else torch (vidfeat/models/backbone.py)
Engine = Literal["auto", "torch", "openvino"]
SAMPLING_MODES = ("frames", "fps", "stride", "all")
PART_FORMATS: tuple[str, ...] = get_args(PartFormat)
FEATURE_DTYPES: tuple[str, ...] = get_args(FeatureDtype)
DEVICES: tuple[str, ...] = get_args(Device)
PRECISIONS: tuple[str, ...] = get_args(Precision)
LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)
HWACCELS: tuple[str, ...] = get_args(HwAccel)
RESIZE_ON: tuple[str, ...] = get_args(ResizeOn)
ENGINES: tuple[str, ...] = get_args(Engine)
# Resize filters the decoder can apply exactly as the weights' reference transforms do.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")
HEADS = ("meanpool", "lstm", "bilstm", "attention", "gru", "transformer", "seed")
SCHEDULES = ("cosine", "constant")  # the learning rate after warmup
# Training's rows of a clip: one random row in each of T equal segments (the span evaluation
# sees), or a random contiguous crop of T rows.
TEMPORAL_SAMPLING = ("segment", "crop")
# Where training reads rows: loaded once into memory, read on demand from the parts, or
# whichever fits (memory when the set fits in the available memory).
TRAIN_DATA = ("auto", "memory", "disk")


def check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"Invalid {what} ({value!r}). Supported: {', '.join(choices)}.")


def check_interpolation(value: object) -> None:
    check_choice("interpolation", value, INTERPOLATIONS)


def _check_positive(what: str, value: float | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"Invalid {what} ({value!r}): must be a positive number.")


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Which frames of a video become rows. See vidfeat.pipeline.sampling."""

    mode: str = "frames"
    frames: int = 16
    fps: float = 1.0
    stride: int = 1
    max_frames: int | None = None
    # The container's index of the video stream to decode (--stream N); None: the one FFmpeg
    # picks (vidfeat/pipeline/decode.py). In the identity only when given.
    stream: int | None = None

    def __post_init__(self) -> None:
        check_choice("sampling mode", self.mode, SAMPLING_MODES)
        _check_positive("--frames", self.frames)
        _check_positive("--fps", self.fps)
        _check_positive("--stride", self.stride)
        _check_positive("--max-frames", self.max_frames, allow_none=True)
        if self.stream is not None and (isinstance(self.stream, bool) or self.stream < 0):
            raise ConfigError(
                f"Invalid --stream ({self.stream!r}): must be a stream index, 0 or more."
            )

    def identity(self) -> dict[str, Any]:
        """Only the fields that change which frames are chosen."""
        spec: dict[str, Any] = {"mode": self.mode, "max_frames": self.max_frames}
        if self.stream is not None:
            spec["stream"] = self.stream
        if self.mode == "frames":
            spec["frames"] = self.frames
        elif self.mode == "fps":
            spec["fps"] = float(self.fps)
        elif self.mode == "stride":
            spec["stride"] = self.stride
        return spec

    @classmethod
    def from_identity(cls, spec: dict[str, Any]) -> SamplingConfig:
        """The sampling a feature set's spec records (``identity()``), back as a config."""
        known = {k: v for k, v in spec.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True, slots=True)
class BackboneConfig:
    name: str = "efficientnet_lite0"
    weights: str = "DEFAULT"
    device: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None  # None: auto (vidfeat/models/batch_size.py)
    preprocess: str | None = None  # the reference transform a weights file was trained with
    # host: the decoder resizes and crops (swscale); device: it sends frames at a bounded size
    # and the backbone's device resizes and crops them (part of the feature set's identity).
    resize_on: str = "host"
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_choice("device", self.device, DEVICES)
        check_choice("--engine", self.engine, ENGINES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("--resize-on", self.resize_on, RESIZE_ON)
        _check_positive("--batch-size", self.batch_size, allow_none=True)


@dataclass(frozen=True, slots=True)
class ExtractConfig:
    inputs: tuple[str, ...] = ()
    store: str = ""
    name: str | None = None
    format: str = "zarr"
    dtype: str = "float16"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    workers: int | None = None  # None: auto (vidfeat/pipeline/sizing.py)
    scheduler: str | None = None
    label_from: str = "auto"
    retry_failed: bool = False
    update: bool = False  # replace stored videos whose file content changed
    strict: bool = False
    report: str | None = None
    decode_threads: int | None = None  # None: auto
    videos_per_part: int | None = None
    timeout_s: float = 600.0
    max_in_flight: int | None = None
    progress: bool = True
    worker_wait_s: float = 120.0  # how long a run may wait for a worker (its first; any admitted)
    connect_timeout_s: float = 30.0  # how long to try reaching the --scheduler
    description: str = ""  # recorded when the run creates the feature set
    tags: tuple[str, ...] = ()
    hwaccel: str = "none"  # decode on the GPU's video engines where it can (per-video record)
    # More feature sets from the same decode: one per backbone, each as if extracted alone.
    extra_backbones: tuple[BackboneConfig, ...] = ()

    def __post_init__(self) -> None:
        check_choice("--format", self.format, PART_FORMATS)
        check_choice("--hwaccel", self.hwaccel, HWACCELS)
        check_choice("--dtype", self.dtype, FEATURE_DTYPES)
        check_choice("--label-from", self.label_from, LABEL_SOURCES)
        _check_positive("--workers", self.workers, allow_none=True)
        _check_positive("--decode-threads", self.decode_threads, allow_none=True)
        _check_positive("--videos-per-part", self.videos_per_part, allow_none=True)
        _check_positive("--timeout", self.timeout_s)
        _check_positive("--connect-timeout", self.connect_timeout_s)
        if not self.inputs:
            raise ConfigError("No inputs: give video files, folders, globs or a manifest.")
        if not self.store:
            raise ConfigError("No store: give --store PATH (a folder or an fsspec URL).")
        if self.extra_backbones and self.name:
            raise ConfigError(
                "--name names one feature set; with several --backbone each set is named "
                "from its own config (see `vidfeat ls`)."
            )
        seen = [dataclasses.astuple(b) for b in self.backbones]
        if len(set(seen)) < len(seen):
            raise ConfigError("The same --backbone is given twice: each makes one feature set.")

    @property
    def backbones(self) -> tuple[BackboneConfig, ...]:
        """Every backbone of the run: one feature set each, from one decode."""
        return (self.backbone, *self.extra_backbones)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    store: str = ""
    featureset: str = ""
    head: str = "lstm"
    hidden: int = 256
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.3
    layer_norm: bool = False
    attention_heads: int = 4
    seq_len: int = 16
    sampling: str = "segment"  # TEMPORAL_SAMPLING: the rows of a clip in training
    rows_from: str = "auto"  # TRAIN_DATA: memory, disk (read rows from the parts), auto
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: int = 1
    schedule: str = "cosine"
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    class_weights: bool = False
    patience: int = 10  # 0: no early stopping
    val_fraction: float = 0.2
    split_file: str | None = None
    split: str = "1"
    group_pattern: str | None = None
    labels: str | None = None
    pca: int | None = None
    seed: int = 0
    device: str = "auto"
    runs_dir: str = "runs"
    name: str | None = None
    mlflow: bool = False  # also log the run to MLflow (MLFLOW_TRACKING_URI)
    tensorboard: bool = False  # also write TensorBoard event files into the run directory

    def __post_init__(self) -> None:
        check_choice("--head", self.head, HEADS)
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_choice("--sampling", self.sampling, TEMPORAL_SAMPLING)
        check_choice("--rows-from", self.rows_from, TRAIN_DATA)
        check_choice("device", self.device, DEVICES)
        for what, value in (
            ("--hidden", self.hidden),
            ("--layers", self.layers),
            ("--seq-len", self.seq_len),
            ("--epochs", self.epochs),
            ("--batch-size", self.batch_size),
            ("--lr", self.lr),
            ("--grad-clip", self.grad_clip),
            ("--attention-heads", self.attention_heads),
        ):
            _check_positive(what, value)
        _check_positive("--pca", self.pca, allow_none=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"Invalid --dropout ({self.dropout!r}): must be in [0, 1).")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                f"Invalid --label-smoothing ({self.label_smoothing!r}): must be in [0, 1)."
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(
                f"Invalid --val-fraction ({self.val_fraction!r}): must be between 0 and 1."
            )
        if self.patience < 0:
            raise ConfigError(
                f"Invalid --patience ({self.patience!r}): must be >= 0 (0: no early stopping)."
            )
        if self.warmup_epochs < 0:
            raise ConfigError(f"Invalid --warmup-epochs ({self.warmup_epochs!r}): must be >= 0.")
        if not self.store or not self.featureset:
            raise ConfigError("Training needs a store and a feature set name.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


C = TypeVar("C")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict (keys as CLI option names with '_')."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {p}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Config file {p} is not valid TOML: {e}") from None
    return {k.replace("-", "_"): v for k, v in data.items()}


def merge_options(
    allowed: set[str], file_values: Mapping[str, Any], flags: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """defaults < file < flags; flags left at None do not override. Unknown keys fail."""
    unknown = sorted(set(file_values) - allowed)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) in {source}: {', '.join(unknown)}. "
            f"Allowed: {', '.join(sorted(allowed))}."
        )
    merged = dict(file_values)
    merged.update({k: v for k, v in flags.items() if v is not None})
    return merged


def field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def build(cls: type[C], values: Mapping[str, Any]) -> C:
    """Construct a config dataclass from a dict, rejecting unknown keys."""
    allowed = field_names(cls)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError(f"Unknown option(s) for {cls.__name__}: {', '.join(unknown)}.")
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"Invalid {cls.__name__}: {e}") from None
