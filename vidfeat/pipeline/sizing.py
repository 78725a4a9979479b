"""How many workers, decoders and torch threads a local run uses, and which GPU each worker
sees: pure rules over core and GPU counts (the client imports no torch, so GPUs are counted
from ``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CPU_DECODE_THREADS = 2  # measured on the CPU: more decoders starve torch's threads
CUDA_INFERENCE_CORES = 1  # on a GPU worker, a core for the inference loop and its copies


@dataclass(frozen=True, slots=True)
class Sizing:
    workers: int
    decode_threads: int  # decoder processes per worker
    torch_threads: int  # per worker
    gpus: tuple[str, ...] = ()  # CUDA_VISIBLE_DEVICES of each worker; () on the CPU

    def describe(self, cores: int) -> str:
        where = f", GPU {' / '.join(self.gpus)} one per worker" if self.gpus else ""
        return (
            f"sizing: {self.workers} worker(s) x {self.decode_threads} decoders, "
            f"{self.torch_threads} torch thread(s) each, {cores} cores{where}"
        )


def visible_gpus(
    environ: Mapping[str, str] | None = None, nvidia_smi: str | None = None
) -> list[str]:
    """The GPUs a worker here could be given: ``CUDA_VISIBLE_DEVICES`` when set (``""`` or
    ``-1``: none), else those ``nvidia-smi -L`` lists, else none."""
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        value = env["CUDA_VISIBLE_DEVICES"].strip()
        return [] if value in ("", "-1") else [g.strip() for g in value.split(",") if g.strip()]
    smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    lines = [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(lines))] if listing.returncode == 0 else []


def plan_sizing(
    cores: int,
    gpus: Sequence[str],
    device: str,
    workers: int | None,
    decode_threads: int | None,
) -> Sizing:
    """``workers`` / ``decode_threads`` None: auto. On the CPU (``device`` cpu, or auto with no
    GPU): one worker, the measured 2 decoders, the cores shared among the workers' torch
    threads. On CUDA: one worker per GPU, each pinned to its own; the decoders fill the cores a
    worker owns, less one for inference, since there the GPU outruns any CPU decode."""
    cores = max(1, cores)
    cuda = device == "cuda" or (device == "auto" and len(gpus) > 0)
    if not cuda or not gpus:
        n = workers or 1
        return Sizing(n, decode_threads or CPU_DECODE_THREADS, max(1, cores // n))
    n = workers or len(gpus)
    per_worker = max(1, cores // n)
    decoders = decode_threads or max(1, per_worker - CUDA_INFERENCE_CORES)
    pins = tuple(gpus[i % len(gpus)] for i in range(n))
    return Sizing(n, decoders, CUDA_INFERENCE_CORES, pins)
