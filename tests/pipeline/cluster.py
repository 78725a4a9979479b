"""Real Dask clusters for the tests: a `dask scheduler` and `dask worker` processes on
127.0.0.1, optionally with TLS, torn down whatever happens."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def dask_cluster(
    n_workers: int = 2, nanny: bool = True, tls: list[str] | None = None
) -> Iterator[Cluster]:
    """``tls``: extra `--tls-*` options for the scheduler and workers (the address becomes
    tls://). Workers run one thread each, as `vidfeat extract` expects."""
    port = free_port()
    scheme = "tls" if tls else "tcp"
    address = f"{scheme}://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler_cmd = [str(BIN / "dask"), "scheduler", "--host", f"{scheme}://127.0.0.1"]
    scheduler_cmd += ["--port", str(port), "--no-dashboard", *(tls or [])]
    scheduler = subprocess.Popen(scheduler_cmd, **quiet)  # type: ignore[call-overload]
    cluster = Cluster(address, scheduler)
    try:
        worker_cmd = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"]
        worker_cmd += ["--host", "127.0.0.1", *([] if nanny else ["--no-nanny"]), *(tls or [])]
        for _ in range(n_workers):
            cluster.workers.append(subprocess.Popen(worker_cmd, **quiet))  # type: ignore[call-overload]
        yield cluster
    finally:
        _stop([*cluster.workers, scheduler])
        time.sleep(0.1)


def start_worker(cluster: Cluster, *options: str, env: dict[str, str] | None = None) -> str:
    """One more `dask worker` (one thread) on ``cluster``, torn down with it, at a port of its
    own; ``options`` such as --no-nanny, ``env`` its environment. Returns its address."""
    port = free_port()
    cmd = [str(BIN / "dask"), "worker", cluster.address, "--nthreads", "1", "--no-dashboard"]
    cmd += ["--host", "127.0.0.1", "--worker-port", str(port), *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    cluster.workers.append(proc)
    return f"tcp://127.0.0.1:{port}"


def wait_for_workers(address: str, n: int, security: object = None) -> None:
    from dask.distributed import Client

    with Client(address, timeout="30s", security=security) as client:
        client.wait_for_workers(n, timeout=60)
