"""Faults a cluster really sees, with real processes and signals: a worker SIGKILLed mid-run,
Ctrl-C (SIGINT to the process group) and a rerun, SIGKILL during a commit, and two jobs
started at once. Each ends with every video stored exactly once and `verify` clean."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.pipeline.cluster import BIN, dask_cluster, wait_for_workers
from vidfeat.errors import VidfeatError
from vidfeat.pipeline.sandbox import HANG_ENV
from vidfeat.store import open_store, verify_store
from vidfeat.synth import SynthConfig, make_dataset

pytestmark = pytest.mark.slow  # end-to-end runs of real processes

N_VIDEOS = 16


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "videos"
    make_dataset(root, SynthConfig(classes=2, videos_per_class=N_VIDEOS // 2, frames=96, size=128))
    (root / "manifest.csv").unlink()
    return root


def extract_cmd(videos: Path, store: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "vidfeat"),
        "extract",
        str(videos),
        "--store",
        str(store),
        "--name",
        "feats",
        "--backbone",
        "tiny",
        "--all",
        "--videos-per-part",
        "1",
        "-q",
        *extra,
    ]


def committed_parts(store: Path) -> int:
    try:
        return len(open_store(store).get_featureset("feats").commits())
    except VidfeatError:  # the job has not created the store or feature set yet
        return 0


def wait_for_commits(
    store: Path, n: int, proc: subprocess.Popen[str], timeout: float = 120
) -> None:
    end = time.monotonic() + timeout
    while committed_parts(store) < n:
        assert proc.poll() is None, f"extract ended early: {proc.communicate()}"
        assert time.monotonic() < end, "no commit in time"
        time.sleep(0.05)


def assert_each_video_once(store: Path) -> None:
    fset = open_store(store).get_featureset("feats")
    in_commits = Counter(v.video_id for c in fset.commits() for v in c.videos)
    assert len(in_commits) == N_VIDEOS and set(in_commits.values()) == {1}, in_commits
    assert len(fset.load().video_ids) == N_VIDEOS
    assert verify_store(open_store(store)) == []


@pytest.mark.cluster
def test_worker_sigkilled_mid_run(videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with dask_cluster(2, nanny=False) as cluster:
        wait_for_workers(cluster.address, 2)
        proc = subprocess.Popen(
            extract_cmd(videos, store, "--scheduler", cluster.address),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_commits(store, 1, proc)
        cluster.workers[0].send_signal(signal.SIGKILL)  # busy with its next part by now
        assert committed_parts(store) < N_VIDEOS, "the run ended before the kill"
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert cluster.workers[0].wait() == -signal.SIGKILL
    assert committed_parts(store) == N_VIDEOS
    assert_each_video_once(store)


def assert_group_gone(pgid: int, within_s: float) -> None:
    end = time.monotonic() + within_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > end:
            left = subprocess.run(
                ["ps", "-o", "pid,stat,etime,args", "-g", str(pgid)], capture_output=True, text=True
            ).stdout
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"processes left {within_s:g} s after vidfeat exited:\n{left}")
        time.sleep(0.2)


def test_client_sigint_then_rerun(videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    # The last video's decoder hangs (injected), so the run cannot finish before the SIGINT.
    last = sorted(videos.rglob("*.mp4"))[-1].stem
    # Output to a file, not a pipe: the test waits for vidfeat itself, not for every process
    # that inherited its stderr (workers, decoders), and checks those separately below.
    with open(tmp_path / "stderr.txt", "w+") as err_file:
        proc = subprocess.Popen(
            extract_cmd(videos, store, "--workers", "1", "--timeout", "300"),
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            text=True,
            start_new_session=True,
            env=os.environ | {HANG_ENV: last},
        )
        wait_for_commits(store, 1, proc)
        # Meanwhile the store refuses to delete what this run writes (its writer lease).
        rm = subprocess.run(
            [str(BIN / "vidfeat"), "rm", str(store), "feats", "--yes"],
            capture_output=True,
            text=True,
        )
        assert rm.returncode == 1 and "is being written" in rm.stderr, rm.stderr
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        try:
            proc.wait(timeout=60)
        finally:
            err_file.seek(0)
            err = err_file.read()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: committed parts are intact")
    assert "Traceback" not in err  # the workers leave Ctrl-C to the client
    assert_group_gone(proc.pid, within_s=60)  # its workers and decoders went with it
    done_before = committed_parts(store)
    assert 1 <= done_before < N_VIDEOS
    assert verify_store(open_store(store)) == []
    rerun = subprocess.run(
        extract_cmd(videos, store, "--workers", "1"), capture_output=True, text=True, timeout=180
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{N_VIDEOS - done_before} videos" in rerun.stdout  # only what was left
    assert_each_video_once(store)


SITECUSTOMIZE = """
import os, signal
_marker = os.environ.get("VIDFEAT_TEST_KILL_MARKER")
_when = os.environ.get("VIDFEAT_TEST_KILL_WHEN")
if _marker:
    _link = os.link
    def _kill_once():
        try:
            os.close(os.open(_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
    def link(src, dst, *args, **kwargs):
        is_commit = "/commits/" in str(dst)
        if is_commit and _when == "before":
            _kill_once()
        result = _link(src, dst, *args, **kwargs)
        if is_commit and _when == "after":
            _kill_once()
        return result
    os.link = link
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_during_commit(videos: Path, tmp_path: Path, when: str) -> None:
    """The worker dies right before, or right after, its commit record is linked into place;
    Dask retries the part on the restarted worker."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = tmp_path / "killed"
    env = os.environ | {
        "PYTHONPATH": str(hook),
        "VIDFEAT_TEST_KILL_MARKER": str(marker),
        "VIDFEAT_TEST_KILL_WHEN": when,
    }
    store = tmp_path / "store"
    out = subprocess.run(
        extract_cmd(videos, store, "--workers", "1"),
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert marker.exists(), "the fault was never injected"
    assert out.returncode == 0, out.stderr
    assert_each_video_once(store)
    gc = subprocess.run(
        [str(BIN / "vidfeat"), "gc", str(store), "--older-than", "0s"],
        capture_output=True,
        text=True,
    )
    assert gc.returncode == 0, gc.stderr
    leftovers = [p for p in (store / "feats").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
    assert_each_video_once(store)


def test_two_jobs_at_once_on_the_same_work(videos: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            extract_cmd(videos, store, "--workers", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    assert_each_video_once(store)
