"""Process-level settings that make CPU training fast.

glibc's ``malloc`` returns every large block (the activations of a training
step, tens of MB each) to the kernel with ``munmap`` and maps it again on the
next step; the page faults that follow cost more than the arithmetic on a
small CPU. :func:`tune_malloc` keeps freed memory in the process instead
(measured on METR-LA-sized batches: a ``stgt`` step 2-3x faster). It changes
nothing on other C libraries or when ``STGRAPH_NO_MALLOC_TUNING`` is set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_done = False
_lean = False


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def tune_malloc() -> bool:
    """Keep large freed blocks in the heap (glibc only); returns whether it applied.

    Does nothing once :func:`lean_malloc` chose the other trade-off for this process."""
    global _done
    if _done:
        return True
    if _lean:
        return False
    if not sys.platform.startswith("linux") or os.environ.get("STGRAPH_NO_MALLOC_TUNING"):
        return False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = all(mallopt(opt, val) == 1 for opt, val in
             ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
    _done = ok
    return ok


def lean_malloc() -> bool:
    """The other trade-off: every block above 64 KiB is mapped on its own and given back to the
    kernel when freed, so the resident memory follows what is alive (about half of what
    :func:`tune_malloc` retains after a few steps), for steps about twice as slow on CPU. The
    memory check of a training run (:mod:`stgraph.training.memory`) switches to it when a run
    fits only this way. Returns whether it applied (glibc only)."""
    global _done, _lean
    mallopt = _mallopt()
    if mallopt is None or os.environ.get("STGRAPH_NO_MALLOC_TUNING"):
        return False
    ok = all(mallopt(opt, val) == 1 for opt, val in
             ((_M_MMAP_MAX, 65536), (_M_MMAP_THRESHOLD, 64 << 10), (_M_TRIM_THRESHOLD, 128 << 10),
              (_M_TOP_PAD, 0)))
    _lean, _done = ok, False
    return ok
