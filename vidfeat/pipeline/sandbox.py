"""Decoding in child processes, so that a decoder that crashes (a segfault in FFmpeg) or hangs
inside C code costs one video, never the worker.

Each decode slot owns one long-lived child (``python -m vidfeat.pipeline.sandbox``) that
decodes one video at a time and streams the frame chunks back over its stdout as
length-prefixed pickles. The parent reads with a deadline: if the child dies mid-video the
video fails with kind ``crashed``; if it is silent past the timeout it is killed and the video
fails with kind ``timeout``. Either way the slot starts a fresh child for the next video.

Children are plain subprocesses (not multiprocessing), because Dask runs its workers as
daemonic processes, which multiprocessing does not allow to have children. The pickles only
ever come from a child this module started, running vidfeat's own code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from vidfeat.config import SamplingConfig
from vidfeat.errors import VideoDecodeError
from vidfeat.uris import is_remote

_HEADER = struct.Struct("<Q")
# Fault injection for the tests: a child asked to decode a path containing the text in
# CRASH_ENV kills itself with SIGSEGV, the way a crashing decoder would; with HANG_ENV it
# stops answering, the way a decoder stuck in C would.
CRASH_ENV = "VIDFEAT_FAULT_DECODER_CRASH"
HANG_ENV = "VIDFEAT_FAULT_DECODER_HANG"
_KILL_GRACE_S = 5.0  # beyond the cooperative timeout before the child is killed


def _write(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


class _Silent(Exception):
    """The child sent nothing before the deadline."""


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    parts, got = [], 0
    while got < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise _Silent
        block = os.read(fd, min(n - got, 1 << 20))
        if not block:
            raise EOFError
        parts.append(block)
        got += len(block)
    return b"".join(parts)


# The folder this vidfeat is imported from: the child imports the same code as its parent.
_IMPORT_ROOT = str(Path(__file__).resolve().parents[2])


def _child_environ() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([_IMPORT_ROOT, *([path] if path else [])])}


class DecoderProcess:
    """One child decoder, one video at a time. Not thread-safe: one per decode slot."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_mib = 0.0  # the largest child's peak resident memory so far

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                # -P: without the working directory on sys.path, where a folder named
                # vidfeat (another checkout) would be imported instead of this one.
                [sys.executable, "-P", "-m", "vidfeat.pipeline.sandbox"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_child_environ(),
            )
        return self._proc

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            self._proc = None

    def decode(
        self,
        path: str,
        sampling: SamplingConfig,
        geometry: Any,
        timeout_s: float,
        on_chunk: Callable[[Any], None],
        segment: tuple[int, int] = (0, 1),
        hwaccel: str | None = None,
    ) -> Any:
        """Decode one video in the child: ``on_chunk`` gets each DecodedChunk; returns
        (index, sha256, DecodeReport). ``segment`` (j, k): only the targets of segment j of k
        (vidfeat/pipeline/segments.py); the sha256 comes from segment 0, the others return "".
        ``hwaccel``: decode on that device when it can (decode.py). Failures, crashes and hangs
        raise VideoDecodeError."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        finished = False
        try:
            _write(proc.stdin, (path, sampling, geometry, timeout_s, segment, hwaccel))
            while True:
                # Silence, not total time: waiting on a busy model (on_chunk blocks when the
                # queue is full) must not count against the decoder.
                deadline = time.monotonic() + timeout_s + _KILL_GRACE_S
                size = _HEADER.unpack(_read_exact(proc.stdout.fileno(), _HEADER.size, deadline))
                kind, payload = pickle.loads(_read_exact(proc.stdout.fileno(), size[0], deadline))
                if kind == "frames":
                    on_chunk(payload)
                    continue
                finished = True
                if kind == "done":
                    index, sha256, rss_mib, report = payload
                    self.peak_rss_mib = max(self.peak_rss_mib, rss_mib)
                    return index, sha256, report
                raise VideoDecodeError(*payload)
        except _Silent:
            raise VideoDecodeError(
                "timeout", f"{path}: the decoder hung for over {timeout_s:g} s and was killed"
            ) from None
        except (EOFError, BrokenPipeError):
            code = proc.wait()
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise VideoDecodeError(
                "crashed", f"{path}: the decoder process died ({how}) on this video"
            ) from None
        finally:
            if not finished:  # mid-video: the child is dead, hung, or its state is unknown
                self._kill()

    def close(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # EOF: the child exits its loop
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None


class DecoderPool:
    """The decode slots of one worker process, reused across parts."""

    def __init__(self) -> None:
        self._free: list[DecoderProcess] = []
        self._all: list[DecoderProcess] = []
        self._lock = threading.Lock()

    def acquire(self) -> DecoderProcess:
        with self._lock:
            if self._free:
                return self._free.pop()
            decoder = DecoderProcess()
            self._all.append(decoder)
            return decoder

    def release(self, decoder: DecoderProcess) -> None:
        with self._lock:
            self._free.append(decoder)

    def warm(self, n: int) -> None:
        """Have ``n`` decoders with running children ready (a child takes a while to start;
        docs/performance.md, "Extraction")."""
        with self._lock:
            while len(self._free) < n:
                self._free.append(DecoderProcess())
                self._all.append(self._free[-1])
            for decoder in self._free[:n]:
                decoder._start()

    def peak_rss_mib(self) -> float:
        with self._lock:
            return max((d.peak_rss_mib for d in self._all), default=0.0)

    def close(self) -> None:
        with self._lock:
            for decoder in self._free:
                decoder.close()
            self._all = [d for d in self._all if d not in self._free]
            self._free.clear()


POOL = DecoderPool()  # per-process, like the backbone cache


@contextlib.contextmanager
def _local_file(path: str) -> Iterator[str]:
    """A local path for ``path``: itself, or a temporary download of an fsspec URL."""
    if not is_remote(path):
        yield path.removeprefix("file://")
        return
    import fsspec

    suffix = PurePosixPath(path).suffix
    with tempfile.TemporaryDirectory(prefix="vidfeat-fetch-") as tmp:
        local = os.path.join(tmp, f"video{suffix}")
        try:
            fs, remote = fsspec.core.url_to_fs(path)
            fs.get_file(remote, local)
        except FileNotFoundError:
            raise VideoDecodeError("not_found", f"{path}: no such object") from None
        except OSError as e:
            raise VideoDecodeError("not_found", f"{path}: cannot download: {e}") from None
        yield local


def _exit_with_parent() -> None:
    """A decoder whose worker died (SIGKILL, a cluster shutting down) must not linger, even
    while it is stuck inside C: a thread watches for the parent to go away."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve() -> None:
    """The child's loop: one request in, its messages out, until stdin closes."""
    import resource

    from vidfeat.hashing import file_sha256
    from vidfeat.pipeline.decode import DecodeReport, decode_selected, probe
    from vidfeat.pipeline.sampling import select_frames
    from vidfeat.pipeline.segments import split_targets

    # Lowest CPU priority, so that on a CPU-bound worker the decoders yield to torch's
    # threads: a preempted torch thread stalls a whole parallel region at its barrier.
    os.nice(19)
    # Ctrl-C in a terminal reaches the whole process group; the worker decides when a
    # decoder stops (EOF, kill), so a child never dies of SIGINT mid-message.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the message stream
    crash_on, hang_on = os.environ.get(CRASH_ENV), os.environ.get(HANG_ENV)
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        request = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
        path, sampling, geometry, timeout_s, (segment, parts), hwaccel = request
        if crash_on and crash_on in path:
            os.kill(os.getpid(), signal.SIGSEGV)
        if hang_on and hang_on in path:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            time.sleep(3600)
        try:
            with _local_file(path) as local:
                index = probe(local, sampling.stream)
                selected = select_frames(index.seconds, index.end_s, sampling)
                if parts > 1:  # an ordinal index cannot seek: segment 0 decodes it all
                    segments = (
                        [selected]
                        if index.ordinal
                        else split_targets(selected, index.pts, index.seek_pts, parts)
                    )
                    selected = segments[segment] if segment < len(segments) else selected[:0]
                if segment > 0 and len(selected) == 0:
                    _write(stdout, ("done", (index, "", 0.0, DecodeReport())))
                    continue
                # The budget is CPU time spent decoding: time blocked on a full pipe (a busy
                # model downstream) does not count. A decoder stuck inside C is the parent's
                # to kill.
                start = time.process_time()
                report = DecodeReport()
                chunks = decode_selected(
                    local, index, selected, geometry, report=report, hwaccel=hwaccel
                )
                for chunk in chunks:
                    if time.process_time() - start > timeout_s:
                        raise VideoDecodeError(
                            "timeout", f"{path}: decoding took over {timeout_s:g} s of CPU time"
                        )
                    _write(stdout, ("frames", chunk))
                rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                index = index.with_rotation(report.rotation)
                sha256 = file_sha256(local) if segment == 0 else ""
                _write(stdout, ("done", (index, sha256, rss_mib, report)))
        except VideoDecodeError as e:
            _write(stdout, ("error", (e.kind, e.message)))
        except Exception as e:  # a bug or an exotic failure must still be recorded
            _write(stdout, ("error", ("error", f"{path}: {type(e).__name__}: {e}")))


if __name__ == "__main__":
    _serve()
