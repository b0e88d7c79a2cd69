"""Process-level settings: the compute device, and the allocator settings that make CPU training fast.

:func:`resolve_device` is the one place that reads a device name (``auto``, ``cpu``, ``cuda[:k]``)
and checks it against this machine; :func:`check_device_name` checks only its spelling (a config
written on a GPU machine stays readable on a CPU one).

glibc's ``malloc`` returns every large block (the activations of a training
step, tens of MB each) to the kernel with ``munmap`` and maps it again on the
next step; the page faults that follow cost more than the arithmetic on a
small CPU. :func:`tune_malloc` keeps freed blocks up to :data:`MMAP_THRESHOLD` (32 MiB) in the
process instead (measured on METR-LA-sized batches: a ``stgt`` step 2-3x faster) and maps larger
ones on their own, given back when freed: kept in the heap, the tensors of a large network
(8,600 sensors: 35 MB each) fragment it, and the resident memory doubles
(``benchmarks/results/stgt_cost.md``). It changes nothing on other C libraries or when
``STGRAPH_NO_MALLOC_TUNING`` is set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_done = False
_lean = False
#: blocks above this many bytes are mapped on their own by :func:`tune_malloc` (glibc's largest dynamic
#: threshold); ``None`` keeps every block in the heap (stgraph's setting before the efficient stgt)
MMAP_THRESHOLD = 32 << 20


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return None


def tune_malloc(mmap_threshold: int | None = MMAP_THRESHOLD) -> bool:
    """Keep freed blocks up to ``mmap_threshold`` bytes in the heap, map larger ones on their own (glibc
    only; ``None``: keep every block); returns whether it applied.

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
    mmap = ((_M_MMAP_MAX, 0),) if mmap_threshold is None else ((_M_MMAP_MAX, 65536),
                                                                (_M_MMAP_THRESHOLD, int(mmap_threshold)))
    ok = all(mallopt(opt, val) == 1 for opt, val in (*mmap, (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))
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


def configure_process(device, threads: int = 0) -> None:
    """The process-wide settings of a run, set once by its entry point (``train``, ``Run.open``,
    ``update_run``, a federated client), never by a constructor: on a CPU ``device`` (a ``torch.device``) the
    allocator (:func:`tune_malloc`), and with ``threads`` > 0 torch's CPU threads (``train.threads``), at most
    :func:`stgraph.limits.max_threads` (a run trained on a larger machine is opened with that many, logged)."""
    import torch

    from .limits import max_threads

    if device.type == "cpu":
        tune_malloc()
    if threads:
        if threads > max_threads():
            logging.getLogger(__name__).warning(f"train.threads = {threads} is more than this machine takes "
                                                f"({max_threads()}: 4 per CPU); using {max_threads()}")
            threads = max_threads()
        torch.set_num_threads(threads)


def check_device_name(name, field: str = "train.device") -> str:
    """``name`` must be ``'auto'``, ``'cpu'`` or ``'cuda[:k]'``; returns it. Only the spelling is checked.

    Raises:
        ConfigError: naming ``field`` and the value found.
    """
    from .errors import ConfigError

    if not (name in ("auto", "cpu") or str(name).startswith("cuda")):
        raise ConfigError(f"{field} = '{name}': expected 'auto', 'cpu' or 'cuda[:k]'")
    return name


def resolve_device(name="auto", field: str = "train.device"):
    """The ``torch.device`` of ``name``: ``'auto'`` is CUDA when available, else the CPU; a
    ``torch.device`` or any other name must be one torch reads and, for CUDA, this machine has.

    Raises:
        ConfigError: an unreadable name, or CUDA asked for where none is available (naming ``field``).
    """
    import torch

    from .errors import ConfigError

    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"{field} = {name!r} ({exc}); expected 'auto', 'cpu' or 'cuda[:k]'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{field} = '{name}' but no CUDA device is available here; use 'auto' or 'cpu'")
    return dev


def eager_when_compiled(fn):
    """``fn`` as ``torch.compiler.disable(fn)`` inside a ``torch.compile``d model (a graph break there:
    it runs eagerly), plain ``fn`` otherwise.

    The disabled wrapper is made at the first compiled call, not at import: ``torch.compiler.disable``
    imports ``torch._dynamo``, which costs about a second of CPU that an uncompiled run never needs.
    """
    disabled = []

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        if torch.compiler.is_compiling():
            if not disabled:
                disabled.append(torch.compiler.disable(fn))
            return disabled[0](*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


AMP_CHOICES = ("auto", "bf16", "off")


def autocast_context(device, amp: str = "auto"):
    """A factory of the mixed-precision context for ``amp`` on ``device`` (a ``torch.device``):
    ``torch.autocast(device.type, bfloat16)`` for ``'bf16'``, or for ``'auto'`` on CUDA; a no-op
    context otherwise (``'off'``, or ``'auto'`` on a CPU). Call it once per forward: ``with ctx():``.
    """
    import contextlib

    import torch

    if amp not in AMP_CHOICES:
        from .errors import ConfigError
        raise ConfigError(f"amp = {amp!r}: expected one of {list(AMP_CHOICES)}")
    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext
