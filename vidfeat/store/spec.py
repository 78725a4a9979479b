"""A feature set's identity: everything that changes its values. Its hash is the key."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from vidfeat.config import FEATURE_DTYPES, PART_FORMATS, check_choice
from vidfeat.errors import ConfigError, StoreError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FLOAT16_MAX = 65504.0
FLOAT16_ROUNDS_TO_INF = 65520.0  # float32 values from here on become inf in float16


def check_name(what: str, name: str) -> str:
    """Names become path components: letters, digits, '.', '_' and '-' only, no traversal."""
    if not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"Invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def identity_fields(described: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """A backbone's description (Backbone.describe) as the identity fields of a feature set
    stored in ``dtype``. The engine is identity only where its rows are other values at the
    store's precision: OpenVINO float32 rows are eager torch's after float16 rounding
    (docs/performance.md), not at float32, and never at bfloat16; eager torch is the engine
    every older set was made with (``""``)."""
    fields = dict(described)
    if fields.get("precision") == "float32" and dtype == "float16":
        fields["engine"] = ""
    return fields


@dataclass(frozen=True, slots=True)
class FeatureSetSpec:
    backbone: str
    weights_id: str
    feature_dim: int
    input_size: int
    resize_size: int
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sampling: dict[str, Any]
    precision: str = "float32"
    dtype: str = "float16"
    part_format: str = "zarr"
    # The decode and resize path: 1 = before frame-exact seeking and resizing in RGB (its
    # rows are other values, so a set made by it is never extended by this one).
    decode_version: int = 2
    # Where frames were resized and cropped: host (swscale in the decoder) or device (the
    # backbone's device, from frames sent at a bounded size).
    resize_on: str = "host"
    # The engine whose values these are, where they differ from eager torch's at the store's
    # precision (identity_fields): "openvino", or "" (eager torch, or any engine at float32
    # computed and float16 stored).
    engine: str = ""
    # Not identity: how parts are compressed does not change values.
    compression: str | None = field(default=None, compare=False)
    # "video": computed by vidfeat from videos (every field above means what it says);
    # "external": imported rows computed elsewhere, described by ``source`` alone.
    kind: str = "video"
    source: str = ""

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, FEATURE_DTYPES)
        check_choice("part format", self.part_format, PART_FORMATS)
        if self.feature_dim <= 0:
            raise ConfigError(f"Invalid feature_dim ({self.feature_dim}).")
        check_choice("feature set kind", self.kind, ("video", "external"))
        check_choice("resize_on", self.resize_on, ("host", "device"))

    @classmethod
    def external(
        cls, feature_dim: int, dtype: str, source: str, part_format: str = "zarr"
    ) -> FeatureSetSpec:
        """The spec of features computed elsewhere: the image-pipeline fields, which mean
        nothing for them, are empty."""
        return cls(
            backbone="external",
            weights_id="",
            feature_dim=feature_dim,
            input_size=0,
            resize_size=0,
            interpolation="",
            mean=(),
            std=(),
            sampling={},
            precision="",
            dtype=dtype,
            part_format=part_format,
            kind="external",
            source=source,
        )

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("compression")
        if self.kind == "video":  # the fields came later: older sets keep their hash
            d.pop("kind"), d.pop("source")
        if self.resize_on == "host":
            d.pop("resize_on")
        if not self.engine:
            d.pop("engine")
        d["mean"] = [float(x) for x in self.mean]
        d["std"] = [float(x) for x in self.std]
        return d

    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def diff(self, other: FeatureSetSpec) -> list[str]:
        a, b = self.identity(), other.identity()
        # A field left out of one identity (at its default there) shows its value.
        a = {k: a.get(k, getattr(self, k, None)) for k in a.keys() | b.keys()}
        b = {k: b.get(k, getattr(other, k, None)) for k in a}
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in sorted(a) if a[k] != b[k]]

    def to_json(self) -> dict[str, Any]:
        d = self.identity()
        d["compression"] = self.compression
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureSetSpec:
        try:
            return cls(
                backbone=str(d["backbone"]),
                weights_id=str(d["weights_id"]),
                feature_dim=int(d["feature_dim"]),
                input_size=int(d["input_size"]),
                resize_size=int(d["resize_size"]),
                interpolation=str(d["interpolation"]),
                mean=tuple(float(x) for x in d["mean"]),
                std=tuple(float(x) for x in d["std"]),
                sampling=dict(d["sampling"]),
                precision=str(d.get("precision", "float32")),
                dtype=str(d["dtype"]),
                part_format=str(d["part_format"]),
                decode_version=int(d.get("decode_version", 1)),
                resize_on=str(d.get("resize_on", "host")),
                engine=str(d.get("engine", "")),
                compression=d.get("compression"),
                kind=str(d.get("kind", "video")),
                source=str(d.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"featureset.json is missing or has a bad field: {e}") from None

    def default_name(self) -> str:
        return f"{self.backbone.replace(':', '-')}-{self.config_hash()[:10]}"
