"""The OpenVINO engine: a backbone's torch module converted once (``ov.convert_model``, no ONNX
step) and compiled for the CPU with its inference precision pinned.

OpenVINO's CPU plugin may pick bf16 on its own where the CPU has bf16 units (its default
performance mode); the precision is always set here, so float32 means float32. The converted
model is kept on disk under ``$VIDFEAT_CACHE/openvino/<key>/`` (default ``~/.cache/vidfeat``),
keyed by everything that changes the graph or its weights (backbone, weights sha256, input
size, OpenVINO and torch versions), and OpenVINO's own compiled-blob cache sits beside it, so a
worker's start-up reads a file instead of tracing and converting again. An entry whose files
are not the bytes recorded at conversion (sha256), or whose recorded key is not this one, is
rebuilt, never used; and every load is checked against eager torch (Backbone._parity).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_PRECISION_HINT = {"float32": "f32", "bfloat16": "bf16"}
_CORE_LOCK = threading.Lock()
_CORE: Any = None


class EngineUnavailable(Exception):
    """OpenVINO cannot run this backbone here; the message says why (for the record)."""


@dataclass(frozen=True, slots=True)
class CompiledInfo:
    """How the compiled model came to be: for the start-up line and the benchmarks."""

    from_cache: bool
    seconds: float  # convert (or read) and compile
    threads: int
    precision: str


def available() -> str:
    """Why OpenVINO cannot be imported here ("" when it can)."""
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        return f"OpenVINO is not installed ({e.name or e})"
    return ""


def _core() -> Any:
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino as ov

            _CORE = ov.Core()
        return _CORE


def cache_root() -> Path:
    root = os.environ.get("VIDFEAT_CACHE") or os.path.join(Path.home(), ".cache", "vidfeat")
    return Path(root) / "openvino"


def cache_key(name: str, weights_id: str, input_size: int) -> dict[str, str]:
    import openvino as ov

    from vidfeat.version import __version__

    # everything that changes the graph: the backbone code comes from vidfeat, torchvision
    # or timm (the parity check at every load is the net under what a key cannot see)
    return {
        "backbone": name,
        "weights_id": weights_id,
        "input_size": str(input_size),
        "openvino": ov.get_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "vidfeat": __version__,
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return ""


class OpenVinoModel:
    """Normalised float32 NCHW in, (B, D) float32 out, on the CPU."""

    def __init__(self, compiled: Any, info: CompiledInfo) -> None:
        self._compiled = compiled
        self.info = info
        self._local = threading.local()  # an infer request per calling thread

    @property
    def runtime_precision(self) -> str:
        """The precision the compiled model really runs (OpenVINO's own word for it)."""
        return str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        out = request.infer([np.ascontiguousarray(x.numpy())], share_inputs=True)
        return torch.from_numpy(np.array(out[0], dtype=np.float32, copy=True))


def compile_module(
    module: nn.Module,
    name: str,
    weights_id: str,
    input_size: int,
    precision: str,
    threads: int,
) -> OpenVinoModel:
    """The module converted (or read from the cache) and compiled for the CPU. Raises
    EngineUnavailable with the reason when OpenVINO is missing, the module does not convert, or
    the CPU would not run the precision asked for. A cache that cannot be written costs a
    conversion per load, nothing else."""
    why = available()
    if why:
        raise EngineUnavailable(why)
    if precision not in _PRECISION_HINT:
        raise EngineUnavailable(f"OpenVINO on the CPU runs float32 or bfloat16, not {precision}")
    start = time.perf_counter()
    key = cache_key(name, weights_id, input_size)
    folder = cache_root() / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    threads = max(1, int(threads))
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINT[precision],
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",  # one stream: the worker batches, we want its threads
    }
    source: Any = _cached(folder, key)
    from_cache = source is not None
    if source is None:
        model = _convert(module, name, input_size)
        try:
            source = _save_into(folder, key, model)
        except OSError:  # an unwritable cache: compile what was converted
            source = model
    if isinstance(source, Path):
        config["CACHE_DIR"] = str(folder / "compiled")  # OpenVINO's own compiled-blob cache
        source = str(source)
    try:
        compiled = _core().compile_model(source, "CPU", config)
    except Exception as e:
        raise EngineUnavailable(f"OpenVINO could not compile {name}: {_first_line(e)}") from None
    import openvino as ov

    got = compiled.get_property("INFERENCE_PRECISION_HINT")
    if got != {"float32": ov.Type.f32, "bfloat16": ov.Type.bf16}[precision]:
        # the CPU plugin keeps f32 where the CPU has no bf16 units: never let that pass as bf16
        raise EngineUnavailable(f"OpenVINO runs {got} on this CPU where {precision} was asked")
    info = CompiledInfo(from_cache, time.perf_counter() - start, threads, precision)
    return OpenVinoModel(compiled, info)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _cached(folder: Path, key: dict[str, str]) -> Path | None:
    """The cached model of ``key``, or None (absent; damaged or another key's: removed)."""
    xml, meta = folder / "model.xml", folder / "key.json"
    if not folder.exists():
        return None
    try:
        recorded = json.loads(meta.read_text())
        files = recorded.pop("sha256")
        if recorded != key:
            raise ValueError("another key")
        if any(_sha256(folder / name) != digest for name, digest in files.items()):
            raise ValueError("damaged")
    except Exception:  # incomplete, damaged or another model's: never used
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return xml


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _convert(module: nn.Module, name: str, input_size: int) -> Any:
    """The torch module as an OpenVINO model with any batch size (``ov.convert_model``)."""
    import openvino as ov

    example = torch.zeros(1, 3, input_size, input_size)
    try:
        # torch.jit.trace's deprecation warnings are torch's business, not the user's
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            return ov.convert_model(
                module.eval(), example_input=example, input=[(-1, 3, input_size, input_size)]
            )
    except Exception as e:
        raise EngineUnavailable(f"OpenVINO could not convert {name}: {_first_line(e)}") from None


def _save_into(folder: Path, key: dict[str, str], model: Any) -> Path:
    """Save the converted model (weights kept in float32: ``compress_to_fp16=False``) with its
    key and the sha256 of its files, published by one rename, so that a concurrent worker sees
    a whole entry or none."""
    import openvino as ov

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        ov.save_model(model, str(staging / "model.xml"), compress_to_fp16=False)
        files = {name: _sha256(staging / name) for name in ("model.xml", "model.bin")}
        (staging / "key.json").write_text(json.dumps({**key, "sha256": files}, sort_keys=True))
        try:
            staging.rename(folder)
        except OSError:  # another process published it first: theirs is the same model
            shutil.rmtree(staging, ignore_errors=True)
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / "model.xml"
