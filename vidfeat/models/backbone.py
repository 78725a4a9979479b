"""A backbone: uint8 frames in, pooled feature vectors out, with exactly known preprocessing.

Frames arrive already resized (shorter side → ``resize_size``) and centre-cropped to
``input_size`` on the host, as uint8 NHWC. They travel to the device as uint8 (4x less traffic
than float32) and are normalised there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vidfeat.config import (
    DEVICES,
    ENGINES,
    PRECISIONS,
    RESIZE_ON,
    check_choice,
    check_interpolation,
)
from vidfeat.errors import BackboneError, ConfigError


@dataclass(frozen=True, slots=True)
class Preprocess:
    input_size: int  # centre crop C
    resize_size: int  # shorter side S before the crop
    interpolation: str  # bilinear | bicubic | nearest | area
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        # The feature set records this name: it must be the filter the decoder applies.
        check_interpolation(self.interpolation)


def resolve_device(device: str) -> torch.device:
    """auto → cuda when there is one, else cpu. The one resolver of backbones and trainer."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but CUDA is not available here.")
    check_choice("device", device, DEVICES)
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    check_choice("precision", precision, PRECISIONS)
    if precision == "float16" and device.type == "cpu":
        raise BackboneError("float16 autocast is for CUDA; on the CPU use bfloat16 or float32.")
    return precision


# The least cosine of another engine's features to eager torch's on the load-time check.
PARITY_COSINE = {"float32": 0.99999, "bfloat16": 0.99}


class InFlight:
    """A batch submitted to a backbone: ``result()`` is its (B, D) float32 features."""

    def __init__(self, features: torch.Tensor, done: Any = None) -> None:
        self._features, self._done = features, done

    def result(self) -> np.ndarray:
        if self._done is None:
            out: np.ndarray = self._features.numpy()
            return out
        self._done.synchronize()
        # A copy: the pinned block goes back to torch's cache instead of living on in rows.
        return self._features.numpy().copy()


class Backbone:
    """Call with a uint8 (B, H, W, 3) batch; get float32 (B, D) features as numpy."""

    def __init__(
        self,
        name: str,
        module: nn.Module,
        feature_dim: int,
        preprocess: Preprocess,
        weights_id: str,
        device: str = "auto",
        precision: str = "auto",
        channels_last: bool = True,
        resize_on: str = "host",
        engine: str = "torch",
    ) -> None:
        self.name = name
        check_choice("resize_on", resize_on, RESIZE_ON)
        self.resize_on = resize_on
        self.feature_dim = feature_dim
        self.preprocess = preprocess
        self.weights_id = weights_id
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.module = module.eval().to(self.device).to(memory_format=self.memory_format)
        mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(preprocess.std, dtype=torch.float32, device=self.device)
        # x/255 → (x/255 - mean)/std folded into one multiply-add
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1)
        self._shift = (-mean / std).view(1, 3, 1, 1)
        self._copy_stream: Any = None  # CUDA: uploads overlap the compute stream
        # The engine that computes: torch (eager) or openvino (models/openvino_engine.py);
        # ``engine_note`` says how it was chosen (auto's reason for torch, the cache).
        self.engine, self.engine_note = "torch", ""
        self._openvino: Any = None
        check_choice("engine", engine, ENGINES)
        if engine != "torch":
            self._choose_engine(engine)

    def _choose_engine(self, engine: str) -> None:
        """``openvino``: on the CPU, or an error saying why not. ``auto``: OpenVINO on the CPU
        when it is installed, converts, and gives the eager module's values on a test batch;
        otherwise torch, with the reason in ``engine_note``."""
        from vidfeat.models import openvino_engine as ov

        why = ""
        if self.device.type != "cpu":
            why = f"OpenVINO runs on the CPU here, the device is {self.device.type}"
        elif self.precision not in ("float32", "bfloat16"):
            why = f"OpenVINO runs float32 or bfloat16, not {self.precision}"
        if not why:
            try:
                compiled = ov.compile_module(
                    self.module,
                    self.name,
                    self.weights_id,
                    self.preprocess.input_size,
                    self.precision,
                    torch.get_num_threads(),
                )
                why = self._parity(compiled)
            except ov.EngineUnavailable as e:
                why = str(e)
            except Exception as e:  # auto must end on torch whatever OpenVINO or the cache did
                why = f"OpenVINO failed: {type(e).__name__}: {e}"
        if why and engine == "openvino":
            raise BackboneError(f"--engine openvino for {self.name}: {why}. Use --engine torch.")
        if why:
            self.engine_note = f"torch: {why}"
            return
        self.engine, self._openvino = "openvino", compiled
        info = compiled.info
        how = "from its cache" if info.from_cache else "converted"
        self.engine_note = (
            f"openvino {info.precision}, {info.threads} threads, {how} in {info.seconds:.1f} s"
        )

    def _parity(self, compiled: Any) -> str:
        """Why the compiled model is not the eager float32 module on a fixed batch of random
        frames (cosine below PARITY_COSINE), or "" when it is. Run at every load: it also
        catches what a cache key cannot see (a backbone's code changed under the same
        weights, a damaged compiled blob)."""
        size = self.preprocess.input_size
        seed = torch.Generator().manual_seed(0)
        frames = torch.randint(0, 256, (2, size, size, 3), generator=seed, dtype=torch.uint8)
        x = self.normalise(frames)
        with torch.inference_mode():
            want = self.module(x).float()
            got = compiled(x)
        cos = float(torch.nn.functional.cosine_similarity(want, got, dim=1).min())
        bound = PARITY_COSINE[self.precision]
        if not math.isfinite(cos) or cos < bound:
            return f"its features differ from eager torch (cosine {cos:.6f} < {bound})"
        return ""

    def __repr__(self) -> str:
        return (
            f"Backbone({self.name!r}, dim={self.feature_dim}, device={self.device.type}, "
            f"precision={self.precision}, input={self.preprocess.input_size})"
        )

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    def normalise(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (host) → normalised float32 NCHW on the device."""
        x = (
            torch.from_numpy(np.ascontiguousarray(batch))
            if isinstance(batch, np.ndarray)
            else batch
        )
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
            raise BackboneError(
                f"Backbone {self.name} expects uint8 (B, H, W, 3) frames, got "
                f"{tuple(x.shape)} {x.dtype}."
            )
        if x.device != self.device:
            x = x.to(self.device)
        x = x.permute(0, 3, 1, 2).float()
        return (x * self._scale + self._shift).contiguous(memory_format=self.memory_format)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW → (B, D) float32."""
        if self._openvino is not None:
            out: torch.Tensor = self._openvino(x)
            return out
        with torch.inference_mode():
            if self.precision == "float32":
                out = self.module(x)
            else:
                dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float16
                with torch.autocast(self.device.type, dtype=dtype):
                    out = self.module(x)
            return out.float()

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        return self.submit(batch).result()

    def submit(self, batch: np.ndarray | torch.Tensor) -> InFlight:
        """Start a batch; ``.result()`` waits for its features. On CUDA the call returns once
        the work is queued: the frames go up on a copy stream from pinned memory (torch's
        caching host allocator reuses the pinned blocks), so the next batch's upload and the
        host's work overlap this batch's compute, and the features come back by a
        non-blocking copy. On the CPU the batch is computed here."""
        if self.device.type != "cuda":
            with torch.inference_mode():
                return InFlight(self.forward_tensor(self.normalise(batch)))
        with torch.inference_mode():
            x = self._upload(batch)
            feats = self.forward_tensor(self.normalise(x))
            out = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
            out.copy_(feats, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return InFlight(out, done)

    def _upload(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(np.ascontiguousarray(batch))
        x = batch
        if x.device.type == "cuda":
            return x
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        pinned = x.pin_memory()
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = pinned.to(self.device, non_blocking=True)
        compute.wait_stream(self._copy_stream)
        on_device.record_stream(compute)  # its memory is the compute stream's to free
        return on_device

    def weights_mib(self) -> float:
        """The memory the module's parameters and buffers take on its device."""
        tensors = [*self.module.parameters(), *self.module.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors) / 2**20

    def describe(self) -> dict[str, Any]:
        p = self.preprocess
        return {
            "backbone": self.name,
            "weights_id": self.weights_id,
            "feature_dim": self.feature_dim,
            "input_size": p.input_size,
            "resize_size": p.resize_size,
            "interpolation": p.interpolation,
            "mean": tuple(float(v) for v in p.mean),
            "std": tuple(float(v) for v in p.std),
            "precision": self.precision,
            "resize_on": self.resize_on,
            # "" for eager torch, as in every set made before engines; whether the engine is
            # part of a feature set's identity is the store's rule (spec.identity_fields)
            "engine": "" if self.engine == "torch" else self.engine,
        }
