"""Will a training run fit in memory? Estimate before the first step, and say what to lower.

A model that defines ``memory_terms(batch_size, num_edges, device, recompute=None)`` (what a training step
keeps, in the terms of the allocator table :data:`MEMORY_NUMBERS`, see
:meth:`stgraph.models.stgt.STGT.memory_terms`; :func:`estimate_train_memory` turns them into bytes) is checked before training starts: the estimate plus the process's own footprint (interpreter,
torch, the series in memory) is compared with the memory the machine has available, and a run
that would not fit stops with a message naming the settings to lower and what each would need,
instead of being killed by the kernel's out-of-memory killer halfway through an epoch. The estimate and
the choices made to fit go to ``logging.getLogger(__name__)``.

:func:`preflight` runs that check from the config, before the model is built: the model is built on
the ``meta`` device (parameter counts exact, nothing allocated), and its weights, gradients and
optimiser state and the ``train.workers`` worker processes are counted with the step. The sizes of
the config are bounded before that (:mod:`stgraph.limits`).
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
                          base: int | None = None, extra: int = 0, sizes: str = "") -> int | None:
    """Estimate the peak memory of training ``model`` and stop if it cannot fit.

    Args:
        model: the model (its step checked only if it has ``memory_terms``; may be built on the ``meta``
            device, :func:`preflight`).
        batch_size: training batch size; num_edges: ``E`` of the graph; device: training device.
        available: bytes available (default: :func:`available_bytes`, or free CUDA memory).
        enabled: ``train.memory_check``; False only logs the estimate.
        base: bytes the process holds besides the step (default: its peak RSS so far on CPU,
            0 on CUDA).
        extra: bytes on top that no setting of the step changes (the weights, gradients and optimiser
            state of a model not built yet, worker processes); a model without ``memory_terms`` is
            checked when ``extra`` > 0. sizes: what ``extra`` is, in words, for the message.

    Returns:
        The estimated peak in bytes (None when the model gives no estimate).

    Raises:
        ConfigError: naming the estimate, what is available and the settings that would fit.
    """
    if getattr(model, "memory_terms", None) is None and not extra:
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
    est = lambda b, **kw: base + extra + (estimate_train_memory(model, b, num_edges, dev, **kw) or 0)  # noqa: E731
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
        f"this run needs about {_gb(need)}{f' ({sizes})' if sizes else ''} but {_gb(available)} is available "
        f"on {dev.type}: it would be killed for lack of memory. Lower it with " + " or ".join(options or
                                                                                            ["smaller sizes"])
        + "; or train.memory_check = false to try anyway")


#: bytes training keeps per trainable parameter: the float32 weight, its gradient and Adam's two moments
BYTES_PER_PARAMETER = 16
#: private bytes of one batch-gathering worker process (``train.workers``) besides the batches it holds
#: ahead: measured 13-18 MB a worker on METR-LA after ten batches (forked, the rest shared with the
#: training process), with room for the pages reference counting touches over an epoch
WORKER_BYTES = 64 << 20


def worker_bytes(cfg, data, batch_size: int) -> int:
    """Bytes the ``train.workers`` worker processes add: each :data:`WORKER_BYTES`, plus the two batches
    it gathers ahead (float32 inputs and targets of ``batch_size`` windows), plus its own chunk cache
    (``data.cache_mb``) for a lazy series."""
    workers = cfg.train.workers
    if not workers:
        return 0
    window = data.num_nodes * (data.input_len * data.in_channels + data.horizon * data.out_channels)
    per = WORKER_BYTES + 2 * 4 * batch_size * window + (cfg.data.cache_mb << 20 if cfg.data.lazy else 0)
    return workers * per


def preflight(cfg, data, *, num_edges: int, device, batch_size: int, available: int | None = None):
    """The memory check of a run from its config, before the model is built: the model is built on the
    ``meta`` device (exact parameter counts, no memory, no time), its weights, gradients and Adam's
    moments (:data:`BYTES_PER_PARAMETER`) and the worker processes (:func:`worker_bytes`, on CPU) are
    added to its step's estimate, and :func:`check_training_memory` decides (the lean allocator,
    recompute, or a :class:`~stgraph.errors.ConfigError` naming the fields, the estimate and what is
    available). Returns the model built on ``meta`` (its ``recompute`` says what the check chose), or
    ``None`` for a model that cannot be built there (a user model: checked after its real build)."""
    from .prepare import make_model

    try:
        with torch.device("meta"):
            shell = make_model(cfg, data)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a user model that needs real tensors to be built
        log.debug(f"memory preflight skipped: model '{cfg.model.name}' cannot be built on the meta device ({e})")
        return None
    params = list(shell.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    weights = BYTES_PER_PARAMETER * trainable + 4 * (sum(p.numel() for p in params) - trainable)
    dev = torch.device(device)
    workers = worker_bytes(cfg, data, batch_size) if dev.type == "cpu" else 0
    given = ", ".join(f"model.params.{k} = {v}" for k, v in _above_defaults(cfg.model.name, cfg.model.params))
    sizes = f"the model: {sum(p.numel() for p in params):,} parameters{f' ({given})' if given else ''}, " \
            f"{_gb(weights)} with gradients and optimiser state"
    if workers:
        sizes += f"; train.workers = {cfg.train.workers}: {_gb(workers)}"
    check_training_memory(shell, batch_size=batch_size, num_edges=num_edges, device=dev, available=available,
                          enabled=cfg.train.memory_check, extra=weights + workers, sizes=sizes)
    return shell


def _above_defaults(name: str, params: dict) -> list:
    """``(key, value)`` of the integer model arguments in ``params`` above the model's own defaults."""
    import inspect

    from ..models.registry import get_model_class

    sig = inspect.signature(get_model_class(name).__init__).parameters
    return [(k, v) for k, v in params.items() if isinstance(v, int) and not isinstance(v, bool) and k in sig
            and isinstance(sig[k].default, int) and v > sig[k].default]
