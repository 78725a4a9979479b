"""Identity on a cluster, with real processes (docs/cluster.md): a `dask worker` that joins a
running `extract --scheduler` with another file under the same weights name (its own
TORCH_HOME) is refused and writes nothing; one with the same file takes parts; when only
refused workers are left, the run ends with an error naming them.

Worker A's commits after its first wait while a gate file exists (a sitecustomize hook), so
that the late worker joins, and is judged, while parts are left: no test depends on timing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.pipeline.cluster import BIN, Cluster, dask_cluster, start_worker
from vidfeat.config import BackboneConfig, ExtractConfig, SamplingConfig
from vidfeat.errors import ExtractError, VidfeatError
from vidfeat.store import open_store, verify_store
from vidfeat.synth import SynthConfig, make_dataset

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

N_VIDEOS = 10
BACKBONE = ("--backbone", "resnet18", "--weights", "IMAGENET1K_V1")  # the issue's own case
GATE_HOOK = """
import os, time
_gate = os.environ.get("VIDFEAT_TEST_COMMIT_GATE")
if _gate:
    _link, _commits = os.link, []
    def link(src, dst, *args, **kwargs):
        if "/commits/" in str(dst):
            _commits.append(dst)
            end = time.monotonic() + 120
            while len(_commits) > 1 and os.path.exists(_gate) and time.monotonic() < end:
                time.sleep(0.05)
        return _link(src, dst, *args, **kwargs)
    os.link = link
"""


@dataclass(frozen=True)
class Bench:
    videos: Path
    homes: dict[str, Path]  # TORCH_HOME of the right ("a") and of the other ("b") weights
    hook: Path
    reference: Path  # a store extracted on worker A's weights alone


def torch_home(root: Path, seed: int) -> Path:
    """A TORCH_HOME whose resnet18 IMAGENET1K_V1 file holds seeded random weights."""
    import torch
    import torchvision

    from vidfeat.models.torchvision_zoo import checkpoint_path

    path = root / "hub" / "checkpoints"
    path.mkdir(parents=True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        state = torchvision.models.resnet18(weights=None).state_dict()
    name = checkpoint_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1).name
    torch.save(state, path / name)
    return root


def env(bench: Bench, home: str, gate: Path | None = None) -> dict[str, str]:
    out = os.environ | {"TORCH_HOME": str(bench.homes[home]), "VIDFEAT_OFFLINE": "1"}
    if gate is not None:
        out |= {"PYTHONPATH": str(bench.hook), "VIDFEAT_TEST_COMMIT_GATE": str(gate)}
    return out


def extract_cmd(bench: Bench, store: Path, *extra: str) -> list[str]:
    cmd = [str(BIN / "vidfeat"), "extract", str(bench.videos), "--store", str(store)]
    cmd += ["--name", "feats", *BACKBONE, "--frames", "2", "--videos-per-part", "1", "-q"]
    return [*cmd, *extra]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Bench:
    root = tmp_path_factory.mktemp("late-worker")
    videos = root / "videos"
    make_dataset(videos, SynthConfig(classes=2, videos_per_class=N_VIDEOS // 2, frames=8, size=64))
    (videos / "manifest.csv").unlink()
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(GATE_HOOK)
    homes = {"a": torch_home(root / "home-a", 0), "b": torch_home(root / "home-b", 1)}
    out = Bench(videos, homes, hook, root / "reference")
    cmd = extract_cmd(out, out.reference, "--workers", "1")
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env(out, "a"))
    assert run.returncode == 0, run.stderr
    return out


def commits(store: Path) -> int:
    try:
        return len(open_store(store).get_featureset("feats").commits())
    except VidfeatError:  # not created yet
        return 0


def wait_until(
    what: str, done: Callable[[], bool], proc: subprocess.Popen[str] | None = None
) -> None:
    end = time.monotonic() + 120
    while not done():
        assert proc is None or proc.poll() is None, f"extract ended early: {proc.communicate()}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def judged(watcher: Any, worker: str) -> bool:
    """Whether the run has judged ``worker`` (remote.PrepareWorker's event, on a Dask client
    of the test's own)."""
    return any(
        msg["worker"] == worker
        for topic, events in watcher.get_events().items()
        if topic.startswith("vidfeat-admission-")
        for _, msg in events
    )


@contextmanager
def watching(cluster: Cluster) -> Iterator[Any]:
    from dask.distributed import Client

    with Client(cluster.address, timeout="30s") as client:
        yield client


def assert_rows_are_the_references(bench: Bench, store: Path) -> None:
    """Every stored row is the row a run on worker A's weights alone stored."""
    got, want = (open_store(s).get_featureset("feats") for s in (store, bench.reference))
    assert got.spec == want.spec  # worker A's weights_id
    assert sorted(got.video_ids()) == sorted(want.video_ids()) and len(want.video_ids()) == N_VIDEOS
    for vid in want.video_ids():
        (values, pts), (ref, ref_pts) = got.read(vid), want.read(vid)
        np.testing.assert_array_equal(pts, ref_pts)
        got_values, ref_values = values.astype(np.float32), ref.astype(np.float32)
        np.testing.assert_allclose(got_values, ref_values, rtol=2e-3, atol=1e-3)
    assert verify_store(open_store(store)) == []


@pytest.mark.parametrize("late", ["other_weights", "same_weights"])
def test_a_worker_that_joins_mid_run(bench: Bench, tmp_path: Path, late: str) -> None:
    store, report, gate = tmp_path / "store", tmp_path / "report.json", tmp_path / "gate"
    gate.touch()
    with dask_cluster(0) as cluster, watching(cluster) as watcher:
        a = start_worker(cluster, env=env(bench, "a", gate))
        proc = subprocess.Popen(
            extract_cmd(bench, store, "--scheduler", cluster.address, "--report", str(report)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until("the first commit", lambda: commits(store) >= 1, proc)
        b = start_worker(cluster, env=env(bench, "b" if late == "other_weights" else "a"))
        if late == "other_weights":
            wait_until("B's verdict", lambda: judged(watcher, b), proc)
            assert commits(store) == 1  # A waits at the gate, B was given nothing
        else:  # A waits at the gate after its first commit: a second one is B's
            wait_until("a commit by B", lambda: commits(store) >= 2, proc)
        gate.unlink()
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    rep = json.loads(report.read_text())
    assert rep["videos_done"] == N_VIDEOS and rep["failures"] == []
    assert_rows_are_the_references(bench, store)
    if late == "other_weights":
        (line,) = rep["refused_workers"]
        assert line.startswith(f"{b}: weights_id: spec 'sha256:"), line
        assert f"refused worker {line}" in err
        assert set(rep["parts_by_worker"]) == {a}
    else:
        assert rep["refused_workers"] == [] and "refused" not in err
        assert set(rep["parts_by_worker"]) == {a, b}
    assert sum(rep["parts_by_worker"].values()) == N_VIDEOS


def test_only_refused_workers_left_ends_the_run_with_their_names(
    bench: Bench, tmp_path: Path
) -> None:
    from vidfeat.pipeline.runner import extract

    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.touch()
    with dask_cluster(0) as cluster, watching(cluster) as watcher, ThreadPoolExecutor(1) as pool:
        start_worker(cluster, "--no-nanny", env=env(bench, "a", gate))
        cfg = ExtractConfig(
            inputs=(str(bench.videos),),
            store=str(store),
            name="feats",
            backbone=BackboneConfig("resnet18", weights="IMAGENET1K_V1"),
            sampling=SamplingConfig(frames=2),
            videos_per_part=1,
            scheduler=cluster.address,
            worker_wait_s=5.0,
            progress=False,
        )
        run = pool.submit(extract, cfg)
        wait_until("the first commit", lambda: commits(store) >= 1 or run.done())
        b = start_worker(cluster, env=env(bench, "b"))
        wait_until("B's verdict", lambda: judged(watcher, b) or run.done())
        cluster.workers[0].send_signal(signal.SIGKILL)  # A, waiting at the gate
        started = time.monotonic()
        with pytest.raises(ExtractError, match=r"no worker present has held") as e:
            run.result(timeout=120)
        waited = time.monotonic() - started
    assert f"refused {b}: weights_id: spec" in str(e.value)
    assert 4 <= waited < 30  # worker_wait_s, and no hang
    assert commits(store) == 1
