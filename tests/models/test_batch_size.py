"""``--batch-size auto``: the probe's rule, its cache, and the CPU default; the CUDA path of
the backbone (uploads on a copy stream, one batch in flight) against plain calls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfeat.models import batch_size
from vidfeat.models.batch_size import OutOfMemory, auto_batch_size, cached_choice, choose
from vidfeat.models.factory import create_backbone


def test_the_smallest_batch_near_the_best_throughput_wins() -> None:
    seconds = {32: 0.032, 64: 0.040, 128: 0.0655, 256: 0.128, 512: 0.256}  # images/s peaks at 128
    assert choose((32, 64, 128, 256, 512), seconds.__getitem__) == 128
    flat = {32: 0.032, 64: 0.063, 128: 0.126}  # within 5% from 32 on: the smallest
    assert choose((32, 64, 128), flat.__getitem__) == 32


def test_a_batch_that_does_not_fit_ends_the_probe() -> None:
    tried = []

    def seconds(n: int) -> float:
        tried.append(n)
        if n >= 256:
            raise OutOfMemory
        return n / (1000.0 * min(n, 128))

    assert choose((32, 64, 128, 256, 512), seconds) == 128
    assert tried == [32, 64, 128, 256]

    def nothing_fits(n: int) -> float:
        raise OutOfMemory

    assert choose((32, 64), nothing_fits) == 32


def test_the_answer_is_cached_per_key_and_a_damaged_cache_is_probed_again(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "batch-sizes.json"
    calls = []

    def probe(value: int) -> int:
        calls.append(value)
        return value

    batch_size._MEMO.clear()
    assert cached_choice("a", lambda: probe(64), path) == 64
    assert cached_choice("b", lambda: probe(256), path) == 256
    assert json.loads(path.read_text()) == {"a": 64, "b": 256}
    batch_size._MEMO.clear()  # a new process reads the file
    assert cached_choice("a", lambda: probe(999), path) == 64
    assert calls == [64, 256]
    path.write_text("{not json")
    batch_size._MEMO.clear()
    assert cached_choice("a", lambda: probe(128), path) == 128
    assert json.loads(path.read_text()) == {"a": 128}


def test_a_cache_that_cannot_be_written_still_answers(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the cache folder would have to be made inside a file
    batch_size._MEMO.clear()
    assert cached_choice("a", lambda: 64, blocker / "batch-sizes.json") == 64


def test_on_the_cpu_auto_is_the_measured_default() -> None:
    assert auto_batch_size(create_backbone("tiny", device="cpu")) == batch_size.CPU_BATCH == 16


def test_submit_then_result_equals_a_plain_call() -> None:
    backbone = create_backbone("tiny", device="cpu")
    x = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), np.uint8)
    assert np.array_equal(backbone.submit(x).result(), backbone(x))


@pytest.mark.needs_cuda
def test_cuda_batches_in_flight_equal_one_at_a_time_and_auto_is_probed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = create_backbone("efficientnet_lite0", device="cuda")
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (n, 224, 224, 3), np.uint8) for n in (64, 7, 128, 33)]
    one_at_a_time = [backbone(b) for b in batches]
    jobs = [backbone.submit(b) for b in batches]  # all queued before the first result
    for job, expected in zip(jobs, one_at_a_time, strict=True):
        assert np.array_equal(job.result(), expected)
    on_device = backbone(torch.from_numpy(batches[1]).cuda())
    assert np.allclose(on_device, one_at_a_time[1], atol=1e-3)
    monkeypatch.setenv("VIDFEAT_CACHE", str(tmp_path))
    batch_size._MEMO.clear()
    chosen = auto_batch_size(backbone)
    print(f"--batch-size auto on {torch.cuda.get_device_name()}: {chosen}")
    assert chosen in batch_size.CANDIDATES
    assert list(json.loads((tmp_path / "batch-sizes.json").read_text()).values()) == [chosen]
