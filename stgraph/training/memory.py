"""Will a training run fit in memory? Estimate before the first step, and say what to lower.

A model that defines ``estimate_train_memory(batch_size, num_edges, device, recompute=None)``
(bytes of activations a training step keeps, see :meth:`stgraph.models.stgt.STGT.estimate_train_memory`)
is checked before training starts: the estimate plus the process's own footprint (interpreter,
torch, the series in memory) is compared with the memory the machine has available, and a run
that would not fit stops with a message naming the settings to lower and what each would need,
instead of being killed by the kernel's out-of-memory killer halfway through an epoch.
"""
from __future__ import annotations

import os
import resource

import torch

from ..errors import ConfigError

#: share of the available memory a run may plan to use
HEADROOM = 0.9


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


def check_training_memory(model, *, batch_size: int, num_edges: int, device, log=print,
                          available: int | None = None, enabled: bool = True) -> int | None:
    """Estimate the peak memory of training ``model`` and stop if it cannot fit.

    Args:
        model: the model (checked only if it has ``estimate_train_memory``).
        batch_size: training batch size; num_edges: ``E`` of the graph; device: training device.
        available: bytes available (default: :func:`available_bytes`, or free CUDA memory).
        enabled: ``train.memory_check``; False only prints the estimate.

    Returns:
        The estimated peak in bytes (None when the model gives no estimate).

    Raises:
        ConfigError: naming the estimate, what is available and the settings that would fit.
    """
    estimate = getattr(model, "estimate_train_memory", None)
    if estimate is None:
        return None
    dev = torch.device(device)
    if dev.type == "cuda":
        base = 0
        if available is None:
            free, _ = torch.cuda.mem_get_info(dev)
            available = free
    else:
        # what the process already holds (torch, the series, the graph) stays alive during training
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if available is None:
            available = available_bytes() + base
    need = base + estimate(batch_size, num_edges, dev)
    budget = HEADROOM * available
    log(f"estimated peak memory {_gb(need)} of {_gb(available)} available "
        f"(batch {batch_size}, {num_edges} edges)")
    if need <= budget or not enabled:
        return need
    options = []
    b = batch_size
    while b > 1 and base + estimate(b, num_edges, dev) > budget:
        b //= 2
    if base + estimate(b, num_edges, dev) <= budget:
        options.append(f"--batch-size {b} ({_gb(base + estimate(b, num_edges, dev))})")
    if getattr(model, "recompute", True) is False:
        rc = base + estimate(batch_size, num_edges, dev, recompute=True)
        if rc <= budget:
            options.append(f"--set model.params.recompute=true ({_gb(rc)}, about a third slower)")
    if hasattr(model, "hidden"):
        options.append("a smaller --set model.params.hidden=...")
    raise ConfigError(
        f"this run needs about {_gb(need)} but {_gb(available)} is available on {dev.type}: it would be "
        f"killed for lack of memory. Lower it with " + " or ".join(options)
        + "; or --set train.memory_check=false to try anyway")
