"""Process-level tuning for torch on the CPU.

glibc's malloc hands large blocks (activations, batches) back to the kernel on free and maps
them again on the next batch, so every forward pass pays page faults on fresh memory. Dask's
nanny makes it worse: it starts workers with MALLOC_TRIM_THRESHOLD_=65536. So freed memory
is kept for reuse (up to 128 MiB) and blocks under 32 MiB are served from the heap.

Threads other than the main one get their own malloc arenas, small mmap'd heaps that are
unmapped as soon as they empty, so the same page faults came back for inference run from a
thread: a Dask task runs in the worker's executor thread. So the whole process uses one arena
(the main one, under the settings above). Set it before threads allocate: at process start
through MALLOC_ARENA_MAX=1 (vidfeat's LocalCluster workers get it), or here.

What each setting gained is in docs/performance.md ("glibc malloc", "One malloc arena per
worker").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_TRIM_BYTES = 128 << 20
_MMAP_BYTES = 32 << 20  # glibc's upper limit for this setting on 64-bit
_tuned = False


def tune_malloc() -> bool:
    """Apply the malloc settings once per process. False where there is no glibc."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))
        ok &= bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES))
        ok &= bool(libc.mallopt(_M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # musl and other libcs: no mallopt
        return False
    _tuned = ok
    return ok
