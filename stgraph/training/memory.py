"""Will a training run fit in memory? Estimate before the first step, and say what to lower.

A model that defines ``memory_terms(batch_size, num_edges, device, recompute=None)`` (what a training step
keeps, in the terms of the allocator table :data:`MEMORY_NUMBERS`, see
:meth:`stgraph.models.stgt.STGT.memory_terms`; :func:`estimate_train_memory` turns them into bytes) is checked before training starts: the estimate plus the process's own footprint (interpreter,
torch, the series in memory) is compared with the memory the machine has available, and a run
that would not fit stops with a message naming the settings to lower and what each would need,
instead of being killed by the kernel's out-of-memory killer halfway through an epoch. The estimate and
the choices made to fit go to ``logging.getLogger(__name__)``.
"""
from __future__ import annotations

import logging
import os
import resource

import torch

from ..errors import ConfigError

log = logging.getLogger(__name__)

#: share of the available memory a run may plan to use
HEADROOM = 0.9

#: stgt's allocator table: float32 numbers a training step keeps at its peak per unit and per ``A = B * T * N * D``,
#: by shape (``'classic'``, ``'efficient'``) and (lean allocator, recompute); a unit is a block for the classic
#: shape, a block or the decoder's cross-attention + head for the efficient one (``spatial_ff=False``).
#: Measured: ``benchmarks/results/attention_scaling.md`` (classic), ``benchmarks/results/stgt_cost.md``
#: (efficient; its recompute rows scaled as the classic's)
MEMORY_NUMBERS = {"classic": {(False, False): 62, (False, True): 50, (True, False): 30, (True, True): 17},
                  "efficient": {(False, False): 40, (False, True): 32, (True, False): 20, (True, True): 11}}


def kept_numbers(shape: str, A: int, units: int, *, lean: bool = False, recompute: bool = False) -> int:
    """float32 numbers a training step of stgt's ``shape`` keeps at its peak: :data:`MEMORY_NUMBERS` times
    ``units * A``. The default allocator (:func:`stgraph.runtime.tune_malloc`) maps a block above
    :data:`stgraph.runtime.MMAP_THRESHOLD` on its own, as the lean one does every block: where a ``4 * A``-byte
    tensor is above it, the lean numbers apply even without ``lean``."""
    from ..runtime import MMAP_THRESHOLD

    lean = lean or 4 * A > MMAP_THRESHOLD
    return MEMORY_NUMBERS[shape][(lean, recompute)] * units * A


def estimate_train_memory(model, batch_size: int, num_edges: int, device=None, recompute: bool | None = None,
                          lean: bool = False) -> int | None:
    """Bytes a training step of ``model`` adds to the process at its peak (``None`` for a model without
    ``memory_terms``), measured on CPU: :func:`kept_numbers` of the model's shape, plus the numbers its
    spatial backend keeps, 4 bytes each. Per unit and per ``A = B * T * N * D``:

    ========================  =======  ===========  =========  ===============
    allocator                 classic  + recompute  efficient  + recompute
    ========================  =======  ===========  =========  ===============
    retaining (the default)   62       50           40         32
    lean (``lean=True``)      30       17           20         11
    ========================  =======  ===========  =========  ===============

    Args:
        model: the model; batch_size: ``B``; num_edges: ``E`` of the graph;
        device: where the step runs; recompute: override the model's ``recompute``;
        lean: estimate for the lean allocator (:func:`stgraph.runtime.lean_malloc`).
    """
    terms = getattr(model, "memory_terms", None)
    if terms is None:
        return None
    t = terms(batch_size, num_edges, device, recompute=recompute)
    numbers = kept_numbers(t["shape"], t["A"], t["units"], lean=lean, recompute=t["recompute"]) + t["extra"]
    return int(4 * numbers)


def available_bytes() -> int:
    """Memory available to this process now: ``MemAvailable`` from ``/proc/meminfo`` (Linux),
    else the physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 1 << 62


def _gb(b: float) -> str:
    return f"{b / 2**30:.1f} GB"


def check_training_memory(model, *, batch_size: int, num_edges: int, device,
                          available: int | None = None, enabled: bool = True,
                          base: int | None = None) -> int | None:
    """Estimate the peak memory of training ``model`` and stop if it cannot fit.

    Args:
        model: the model (checked only if it has ``memory_terms``).
        batch_size: training batch size; num_edges: ``E`` of the graph; device: training device.
        available: bytes available (default: :func:`available_bytes`, or free CUDA memory).
        enabled: ``train.memory_check``; False only logs the estimate.
        base: bytes the process holds besides the step (default: its peak RSS so far on CPU,
            0 on CUDA).

    Returns:
        The estimated peak in bytes (None when the model gives no estimate).

    Raises:
        ConfigError: naming the estimate, what is available and the settings that would fit.
    """
    if getattr(model, "memory_terms", None) is None:
        return None
    dev = torch.device(device)
    if dev.type == "cuda":
        base = 0 if base is None else base
        if available is None:
            free, _ = torch.cuda.mem_get_info(dev)
            available = free
    else:
        # what the process already holds (torch, the series, the graph) stays alive during training
        held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        base = held if base is None else base
        if available is None:
            available = available_bytes() + held
    est = lambda b, **kw: base + estimate_train_memory(model, b, num_edges, dev, **kw)  # noqa: E731
    lean_ok = dev.type == "cpu"
    need = est(batch_size)
    budget = HEADROOM * available
    log.info(f"estimated peak memory {_gb(need)} of {_gb(available)} available "
        f"(batch {batch_size}, {num_edges} edges)")
    if need <= budget or not enabled:
        return need
    from ..runtime import lean_malloc
    if lean_ok and est(batch_size, lean=True) <= budget and lean_malloc():
        need = est(batch_size, lean=True)
        log.info(f"memory: using the lean allocator to fit ({_gb(need)}); steps are about 2x slower on CPU. "
            f"A smaller train.batch_size keeps the fast one")
        return need
    has_rc = getattr(model, "recompute", None) is False
    if has_rc and lean_ok and est(batch_size, lean=True, recompute=True) <= budget and lean_malloc():
        model.recompute = True
        need = est(batch_size, lean=True, recompute=True)
        log.info(f"memory: recomputing each block in backward and using the lean allocator to fit "
            f"({_gb(need)}); steps are about 3x slower on CPU. A smaller train.batch_size is faster")
        return need
    options = []
    b = batch_size
    while b > 1 and est(b) > budget:
        b //= 2
    if est(b) <= budget:
        options.append(f"train.batch_size = {b} ({_gb(est(b))})")
    if hasattr(model, "hidden"):
        options.append("a smaller model.params.hidden")
    raise ConfigError(
        f"this run needs about {_gb(need)} but {_gb(available)} is available on {dev.type}: it would be "
        f"killed for lack of memory. Lower it with " + " or ".join(options)
        + "; or train.memory_check = false to try anyway")
