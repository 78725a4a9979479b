"""Workers, decoders and GPU pinning: the rules on fake core and GPU counts, how GPUs are
counted without torch, and the environment each pinned worker really sees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vidfeat.pipeline.sizing import Sizing, plan_sizing, visible_gpus


def test_the_cpu_keeps_its_measured_defaults() -> None:
    assert plan_sizing(2, [], "auto", None, None) == Sizing(1, 2, 2)
    assert plan_sizing(16, [], "auto", 4, None) == Sizing(4, 2, 4)
    assert plan_sizing(16, ["0", "1"], "cpu", None, None) == Sizing(1, 2, 16)  # asked for CPU
    assert plan_sizing(16, [], "cuda", None, None) == Sizing(1, 2, 16)  # no GPU counted
    assert plan_sizing(8, [], "auto", None, 5) == Sizing(1, 5, 8)


def test_cuda_gets_a_worker_per_gpu_and_decoders_on_every_core() -> None:
    assert plan_sizing(16, ["0", "1"], "auto", None, None) == Sizing(2, 7, 1, ("0", "1"))
    assert plan_sizing(64, ["0", "1", "2", "3"], "cuda", None, None).decode_threads == 15
    assert plan_sizing(16, ["0", "1"], "cuda", 4, None) == Sizing(4, 3, 1, ("0", "1", "0", "1"))
    assert plan_sizing(16, ["6"], "cuda", None, 3) == Sizing(1, 3, 1, ("6",))
    assert plan_sizing(1, ["0"], "cuda", None, None).decode_threads == 1  # never zero
    line = plan_sizing(16, ["0", "1"], "auto", None, None).describe(16)
    assert line.startswith("sizing: 2 worker(s) x 7 decoders, 1 torch thread(s) each, 16 cores")
    assert line.endswith("GPU 0 / 1 one per worker")


def test_gpus_are_counted_without_torch(tmp_path: Path) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,2"}, nvidia_smi="") == ["0", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    smi = tmp_path / "nvidia-smi"
    lines = ["GPU 0: NVIDIA H200 (UUID: GPU-a)", "GPU 1: NVIDIA H200 (UUID: GPU-b)"]
    smi.write_text("#!/bin/sh\n" + "".join(f"echo '{line}'\n" for line in lines))
    smi.chmod(0o755)
    assert visible_gpus({}, nvidia_smi=str(smi)) == ["0", "1"]
    assert visible_gpus({}, nvidia_smi=str(tmp_path / "missing")) == []
    failing = tmp_path / "failing"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed'\nexit 9\n")
    failing.chmod(0o755)
    assert visible_gpus({}, nvidia_smi=str(failing)) == []


def _worker_environ() -> dict[str, str | None]:
    keys = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")
    return {k: os.environ.get(k) for k in keys}


@pytest.mark.cluster
def test_each_pinned_worker_sees_only_its_gpu() -> None:
    from dask.distributed import Client

    from vidfeat.pipeline.runner import _local_cluster

    cluster = _local_cluster(2, ("3", "5"))
    try:
        with Client(cluster) as client:
            seen = list(client.run(_worker_environ).values())
    finally:
        cluster.close()
    assert sorted(e["CUDA_VISIBLE_DEVICES"] or "" for e in seen) == ["3", "5"]
    for environ in seen:  # and the environment every vidfeat worker gets (runner._local_cluster)
        assert environ["OMP_NUM_THREADS"] is None and environ["MALLOC_TRIM_THRESHOLD_"] is None
        assert environ["MALLOC_ARENA_MAX"] == "1"


def _worker_gpus() -> tuple[str | None, int, str]:
    import torch

    return (
        os.environ.get("CUDA_VISIBLE_DEVICES"),
        torch.cuda.device_count(),
        torch.cuda.get_device_name(),
    )


@pytest.mark.needs_cuda
@pytest.mark.cluster
def test_real_gpus_get_one_pinned_worker_each() -> None:
    from dask.distributed import Client

    from vidfeat.pipeline.runner import _local_cluster
    from vidfeat.pipeline.sizing import visible_gpus

    gpus = tuple(visible_gpus())
    cluster = _local_cluster(len(gpus), gpus)
    try:
        with Client(cluster) as client:
            seen = sorted(client.run(_worker_gpus).values(), key=lambda s: str(s[0]))
    finally:
        cluster.close()
    print(f"workers: {seen}")
    assert sorted(s[0] or "" for s in seen) == sorted(gpus)
    assert all(count == 1 for _, count, _ in seen)  # each sees its own GPU only
