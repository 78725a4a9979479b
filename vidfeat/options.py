"""Validation at the boundary: option values from flags and ``--config`` TOML files are checked
for type and range before any config dataclass is built, with one line naming the key, the
value and what is allowed. pydantic does the checking (strict: ``"8"``, ``true`` and ``2.5``
are not integers); config.py keeps the rules that relate several fields.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from vidfeat.config import (
    BackboneConfig,
    Device,
    Engine,
    ExtractConfig,
    FeatureDtype,
    HwAccel,
    LabelSource,
    PartFormat,
    Precision,
    ResizeOn,
    SamplingConfig,
    merge_options,
)
from vidfeat.errors import ConfigError

PositiveInt = typing.Annotated[int, Field(ge=1)]
PositiveFloat = typing.Annotated[float, Field(gt=0)]
NonNegativeInt = typing.Annotated[int, Field(ge=0)]
SAMPLING_FLAGS = {"frames": "--frames", "fps": "--fps", "stride": "--stride", "all_frames": "--all"}


class ExtractOptions(BaseModel):
    """The flat options of ``vidfeat extract`` (CLI names with '_'). None: not given."""

    model_config = ConfigDict(strict=True, extra="forbid")

    inputs: list[str] | str | None = None
    store: str | None = None
    name: str | None = None
    format: PartFormat | None = None
    dtype: FeatureDtype | None = None
    frames: PositiveInt | None = None
    fps: PositiveFloat | None = None
    stride: PositiveInt | None = None
    all_frames: bool | None = None
    max_frames: PositiveInt | None = None
    stream: NonNegativeInt | None = None
    backbone: list[str] | str | None = None
    weights: list[str] | str | None = None
    preprocess: list[str] | str | None = None
    device: Device | None = None
    precision: Precision | None = None
    batch_size: PositiveInt | typing.Literal["auto"] | None = None
    workers: PositiveInt | typing.Literal["auto"] | None = None
    scheduler: str | None = None
    label_from: LabelSource | None = None
    retry_failed: bool | None = None
    update: bool | None = None
    strict: bool | None = None
    report: str | None = None
    decode_threads: PositiveInt | typing.Literal["auto"] | None = None
    videos_per_part: PositiveInt | None = None
    timeout: PositiveFloat | None = None
    connect_timeout: PositiveFloat | None = None
    description: str | None = None
    tag: list[str] | str | None = None
    hwaccel: HwAccel | None = None
    resize_on: ResizeOn | None = None
    engine: Engine | None = None


def _flag(key: str) -> str:
    return SAMPLING_FLAGS.get(key, "--" + key.replace("_", "-"))


def _one_line(error: ValidationError, source: str, flag: bool) -> ConfigError:
    first = error.errors()[0]
    # Options are flat: the field is the first place (a union adds its member's name after it).
    key = str(first["loc"][0]) if first["loc"] else "value"
    where = f" in {source}" if source else ""
    name = _flag(key) if flag else key
    if first["type"] == "extra_forbidden":
        return ConfigError(f"Unknown option {name}{where}.")
    expected = first["msg"].removeprefix("Input should be ").removeprefix("Value should be ")
    return ConfigError(f"Invalid {name} ({first['input']!r}){where}: must be {expected}.")


def check_extract_options(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """Type- and range-checked options; at most one sampling mode."""
    try:
        checked = ExtractOptions.model_validate(dict(values)).model_dump(exclude_none=True)
    except ValidationError as e:
        raise _one_line(e, source, flag=True) from None
    modes = [k for k in SAMPLING_FLAGS if checked.get(k) not in (None, False)]
    if len(modes) > 1:
        given = " and ".join(_flag(k) for k in modes)
        raise ConfigError(
            f"{given} are different sampling modes: choose one of --frames, --fps, --stride, --all."
        )
    return checked


def check_dataclass_values(cls: type, values: Mapping[str, Any], source: str = "") -> None:
    """Strict type check of ``values`` against the fields of the config dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], None) for f in dataclasses.fields(cls) if f.name in values
    }
    model = create_model(f"{cls.__name__}Values", __config__=ConfigDict(strict=True), **fields)
    try:
        model.model_validate({k: v for k, v in values.items() if k in fields})
    except ValidationError as e:
        raise _one_line(e, source, flag=False) from None


def extract_options(
    allowed: set[str], file_values: Mapping[str, Any], flags: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """defaults < file < flags, each checked; a sampling mode given as a flag replaces the
    file's sampling mode instead of clashing with it."""
    merge_options(allowed, file_values, {}, source)  # unknown keys, listing the allowed ones
    from_file = check_extract_options(file_values, source)
    from_flags = check_extract_options({k: v for k, v in flags.items() if v is not None})
    if any(k in from_flags for k in SAMPLING_FLAGS):
        from_file = {k: v for k, v in from_file.items() if k not in SAMPLING_FLAGS}
    return check_extract_options({**from_file, **from_flags}, source)


EXTRACT_KEYS = set(ExtractOptions.model_fields)  # what a --config file may hold


def build_extract_config(values: Mapping[str, Any]) -> ExtractConfig:
    """Flat option dict (CLI names, checked by ``extract_options``) → ExtractConfig."""

    common: dict[str, Any] = {
        "max_frames": values.get("max_frames"),
        "stream": values.get("stream"),
    }
    if values.get("all_frames"):
        sampling = SamplingConfig(mode="all", **common)
    elif values.get("fps") is not None:
        sampling = SamplingConfig(mode="fps", fps=values["fps"], **common)
    elif values.get("stride") is not None:
        sampling = SamplingConfig(mode="stride", stride=values["stride"], **common)
    else:
        sampling = SamplingConfig(mode="frames", frames=values.get("frames") or 16, **common)
    names = _listed(values.get("backbone")) or ["efficientnet_lite0"]
    weights = _per_backbone("--weights", values.get("weights"), len(names))
    preprocess = _per_backbone("--preprocess", values.get("preprocess"), len(names))
    backbones = [
        BackboneConfig(
            name=name,
            weights=weights[i] or "DEFAULT",
            device=values.get("device") or "auto",
            precision=values.get("precision") or "auto",
            batch_size=_count(values.get("batch_size")),
            preprocess=preprocess[i],
            resize_on=values.get("resize_on") or "host",
            engine=values.get("engine") or "auto",
        )
        for i, name in enumerate(names)
    ]
    inputs = values.get("inputs") or ()
    return ExtractConfig(
        inputs=tuple([inputs] if isinstance(inputs, str) else inputs),
        store=values.get("store") or "",
        name=values.get("name"),
        format=values.get("format") or "zarr",
        dtype=values.get("dtype") or "float16",
        sampling=sampling,
        backbone=backbones[0],
        extra_backbones=tuple(backbones[1:]),
        workers=_count(values.get("workers")),
        scheduler=values.get("scheduler"),
        label_from=values.get("label_from") or "auto",
        retry_failed=bool(values.get("retry_failed")),
        update=bool(values.get("update")),
        strict=bool(values.get("strict")),
        report=values.get("report"),
        decode_threads=_count(values.get("decode_threads")),
        videos_per_part=values.get("videos_per_part"),
        timeout_s=values.get("timeout") or 600.0,
        connect_timeout_s=values.get("connect_timeout") or 30.0,
        description=values.get("description") or "",
        tags=_tags(values.get("tag")),
        hwaccel=values.get("hwaccel") or "none",
    )


def _listed(value: list[str] | str | None) -> list[str]:
    """An option given once (a TOML string) or repeated (a list)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _per_backbone(flag: str, value: list[str] | str | None, backbones: int) -> list[str | None]:
    """``--weights`` / ``--preprocess``: not given, or once per ``--backbone``, in order."""
    given = _listed(value)
    if not given:
        return [None] * backbones
    if len(given) != backbones:
        raise ConfigError(
            f"{flag} is given {len(given)} time(s) for {backbones} --backbone: give it once per "
            "--backbone, in the same order, or not at all."
        )
    return list(given)


def _count(value: int | str | None) -> int | None:
    """A count option: a number, or "auto" / not given (None: vidfeat sizes it)."""
    return None if value in (None, "auto") else int(value)


def _tags(value: list[str] | str | None) -> tuple[str, ...]:
    """``--tag`` given once (a TOML string) or repeated (a list)."""
    return tuple(_listed(value))
