"""Every error vidfeat raises on purpose. Each also inherits the matching builtin, so callers
that catch ``KeyError`` or ``ValueError`` keep working; the CLI turns any of them into
``error: …`` and exit code 1."""

from __future__ import annotations


class VidfeatError(Exception):
    """Base of all vidfeat errors: a user-facing message, no traceback needed."""


class ConfigError(VidfeatError, ValueError):
    """A configuration value or file is invalid."""


class InputError(VidfeatError, ValueError):
    """Input videos, manifests or paths are unusable."""


class StoreError(VidfeatError, RuntimeError):
    """The store is missing, corrupt or used inconsistently."""


class FeatureSetNotFound(StoreError, KeyError):
    """No feature set of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VideoNotFound(StoreError, KeyError):
    """No committed video of that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SpecMismatch(StoreError, ValueError):
    """A feature set exists under that name with a different spec."""


class CommitLost(StoreError):
    """Another writer committed the same part first."""


class ValueRangeError(StoreError, OverflowError):
    """Feature values do not fit the feature set's dtype."""


class BackboneError(VidfeatError, ValueError):
    """Unknown backbone or unusable weights."""


class WeightsUnavailable(BackboneError):
    """Weights are not on disk and cannot be downloaded. (Not also a FileNotFoundError: an
    exception with two builtin bases of different layouts cannot cross Dask's pickling.)"""


class VideoDecodeError(VidfeatError, RuntimeError):
    """A video could not be decoded. ``kind`` is one of DECODE_ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # survive pickling across dask
        return (type(self), (self.kind, self.message))


DECODE_ERROR_KINDS = (
    "not_found",
    "not_a_video",
    "no_video_stream",
    "truncated",
    "unsupported",
    "zero_frames",
    "inexact",  # a listed frame cannot be decoded exactly (never presented, or bad timestamps)
    "timeout",
    "crashed",
    "error",
)


class ExtractError(VidfeatError, RuntimeError):
    """An extraction run cannot go on (no workers, workers that disagree, …)."""


class WorkerRefused(ExtractError):
    """A worker's backbone is not the one the feature set's spec describes: it writes nothing."""


class TrainError(VidfeatError, ValueError):
    """Training cannot start or continue with this data or configuration."""
