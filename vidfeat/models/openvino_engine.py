"""The OpenVINO engine: a backbone's torch module converted once (``ov.convert_model``, no ONNX
step) and compiled for the CPU with its inference precision pinned.

OpenVINO's CPU plugin may pick bf16 on its own where the CPU has bf16 units (its default
performance mode); the precision is always set here, so float32 means float32. The converted
model is kept on disk under ``$VIDFEAT_CACHE/openvino/<key>/`` (default ``~/.cache/vidfeat``),
keyed by everything that changes the graph or its weights (backbone, weights sha256, input
size, OpenVINO and torch versions), and OpenVINO's own compiled-blob cache sits beside it, so a
worker's start-up reads a file instead of tracing and converting again. An entry whose files
are not the bytes recorded at conversion (sha256), or whose recorded key is not this one, is
rebuilt, never used. The parity check against eager torch runs once per entry, CPU model and
precision; its passing is recorded beside the entry.
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

    return {
        "backbone": name,
        "weights_id": weights_id,
        "input_size": str(input_size),
        "openvino": ov.get_version(),
        "torch": torch.__version__,
    }


class OpenVinoModel:
    """Normalised float32 NCHW in, (B, D) float32 out, on the CPU. ``checked``: this cache
    entry's bytes already passed the parity check against eager torch on this CPU model and
    precision (``record_parity``), so a load need not run it again."""

    def __init__(self, compiled: Any, info: CompiledInfo, folder: Path, checked: bool) -> None:
        self._compiled = compiled
        self.info = info
        self.folder, self.checked = folder, checked
        self._local = threading.local()  # an infer request per calling thread

    def record_parity(self, cosine: float) -> None:
        """Remember that these bytes passed the parity check here (best effort: a cache that
        cannot be written only costs the check again next time)."""
        path = self.folder / "parity.json"
        try:
            done = _read_json(path)
            done[_parity_key(self.info.precision)] = cosine
            staging = path.with_name(f".parity-{os.getpid()}-{threading.get_ident()}")
            staging.write_text(json.dumps(done, sort_keys=True))
            staging.replace(path)
        except OSError:
            pass

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
    EngineUnavailable with the reason when OpenVINO is missing or the module does not
    convert."""
    why = available()
    if why:
        raise EngineUnavailable(why)
    if precision not in _PRECISION_HINT:
        raise EngineUnavailable(f"OpenVINO on the CPU runs float32 or bfloat16, not {precision}")
    start = time.perf_counter()
    key = cache_key(name, weights_id, input_size)
    folder = cache_root() / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    xml = _cached(folder, key)
    from_cache = xml is not None
    if xml is None:
        xml = _convert_into(folder, key, module, input_size)
    threads = max(1, int(threads))
    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINT[precision],
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",  # one stream: the worker batches, we want its threads
        "CACHE_DIR": str(folder / "compiled"),
    }
    core = _core()
    try:
        compiled = core.compile_model(str(xml), "CPU", config)
    except Exception as e:
        if not from_cache:
            raise EngineUnavailable(f"OpenVINO could not compile {name}: {e}") from None
        shutil.rmtree(folder, ignore_errors=True)  # a damaged entry: rebuilt, never used
        xml = _convert_into(folder, key, module, input_size)
        from_cache = False
        compiled = core.compile_model(str(xml), "CPU", config)
    info = CompiledInfo(from_cache, time.perf_counter() - start, threads, precision)
    checked = from_cache and _parity_key(precision) in _read_json(folder / "parity.json")
    return OpenVinoModel(compiled, info, folder, checked)


def _parity_key(precision: str) -> str:
    return f"{_core().get_property('CPU', 'FULL_DEVICE_NAME')} {precision}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _cached(folder: Path, key: dict[str, str]) -> Path | None:
    """The cached model of ``key``, or None (absent, damaged or another key's: removed)."""
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


def _convert_into(folder: Path, key: dict[str, str], module: nn.Module, input_size: int) -> Path:
    """Convert and save (weights kept in float32: ``compress_to_fp16=False``), published by
    one rename so that a concurrent worker sees a whole entry or none."""
    import openvino as ov

    example = torch.zeros(1, 3, input_size, input_size)
    try:
        # torch.jit.trace's deprecation warnings are torch's business, not the user's
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            model = ov.convert_model(
                module.eval(),
                example_input=example,
                input=[(-1, 3, input_size, input_size)],
            )
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EngineUnavailable(f"OpenVINO could not convert {key['backbone']}: {first}") from None
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
