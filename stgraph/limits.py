"""Sane bounds on every count a user sets: the one table the config, the model arguments and the command
line check against.

One line (``--set model.params.encoder_layers=100000``, ``--threads 4096``, ``train.workers=1000``) must not
start building, allocating or forking before anything says it is too much. The counts of a run's config
(:data:`COUNT_LIMITS`) are checked where the config is validated (:meth:`stgraph.config.RunConfig.validate`),
a model's integer arguments where they are checked against its constructor
(:func:`stgraph.models.registry.build_model`: :func:`param_limit`), CPU threads and worker processes against
this machine (:func:`max_threads`, :func:`max_workers`). Whether what is left fits in memory is the
training preflight's question (:func:`stgraph.training.memory.preflight`).
"""
from __future__ import annotations

import os

from .errors import ConfigError

#: depth-like model arguments (layers, blocks, heads, diffusion steps, polynomial order): each is a module
#: built in Python, so a large value costs minutes before any memory estimate could speak
MAX_DEPTH = 256
#: every other integer model argument (widths, embedding sizes, kernel sizes, thresholds)
MAX_WIDTH = 1 << 20
#: words that make a model argument depth-like
DEPTH_WORDS = ("layers", "blocks", "heads", "steps", "order")
#: torch's CPU threads: at most this many per CPU of the machine (more only oversubscribes it, and very
#: many crash OpenMP)
THREADS_PER_CPU = 4


def cpu_count() -> int:
    """The CPUs of this machine (``os.cpu_count()``, 1 when unknown)."""
    return os.cpu_count() or 1


def max_threads() -> int:
    """The most CPU threads a run may ask torch for: :data:`THREADS_PER_CPU` x :func:`cpu_count`."""
    return THREADS_PER_CPU * cpu_count()


def max_workers() -> int:
    """The most batch-gathering worker processes a run may start: one per CPU (:func:`cpu_count`)."""
    return cpu_count()


#: ``section.field``: (lowest, highest, a note for the message); a callable highest is evaluated on this machine
COUNT_LIMITS = {
    "data.input_len": (1, 100_000, "steps"),
    "data.horizon": (1, 100_000, "steps"),
    "data.stride": (1, 100_000, "steps"),
    "data.cache_mb": (1, 1 << 20, "MiB: 1 TiB"),
    "data.split_gap": (0, 100_000, "steps dropped between splits, 0 = none (published protocol)"),
    "train.epochs": (1, 1_000_000, ""),
    "train.batch_size": (1, 1 << 20, "windows"),
    "train.patience": (0, 1_000_000, "epochs"),
    "train.warmup_epochs": (0, 1_000_000, ""),
    "train.max_batches": (0, 1 << 31, "0 = all"),
    "train.checkpoint_every": (0, 1 << 31, "batches, 0 = at epoch ends only"),
    "train.max_skips": (0, 1 << 31, ""),
    "train.threads": (0, max_threads, f"0 = torch's default; {THREADS_PER_CPU} per CPU of this machine"),
    "train.workers": (0, max_workers, "worker processes, one per CPU of this machine"),
}


def check_count(value, name: str, low: int, high: int, what: str = "") -> int:
    """``value`` must be an integer from ``low`` to ``high``; returns it.

    Raises:
        ConfigError: naming ``name`` (a config field, argument or flag), the value and the range.
    """
    kind = "a positive integer" if low == 1 else f"an integer >= {low}"
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} = {value!r}: expected {kind}, at most {high:,}" + (f" ({what})" if what else ""))
    return value


def check_config_counts(section_obj, section: str) -> None:
    """Every field of ``section_obj`` (a config section dataclass) listed in :data:`COUNT_LIMITS` against
    its bounds."""
    for key, (low, high, what) in COUNT_LIMITS.items():
        sec, _, name = key.partition(".")
        if sec == section:
            check_count(getattr(section_obj, name), key, low, high() if callable(high) else high, what)


def check_threads(value, name: str = "threads") -> int:
    """A number of CPU threads from 1 to :func:`max_threads`; returns it (``name``: the argument or flag)."""
    return check_count(value, name, 1, max_threads(), f"{THREADS_PER_CPU} per CPU of this machine, "
                                                      f"{cpu_count()} here")


def param_limit(key: str) -> tuple[int, str]:
    """The highest value of the integer model argument ``key`` and what it is: :data:`MAX_DEPTH` for a
    depth-like one (:data:`DEPTH_WORDS`), :data:`MAX_WIDTH` otherwise."""
    if any(w in key.lower() for w in DEPTH_WORDS):
        return MAX_DEPTH, "for a depth: each one is a module built in Python"
    return MAX_WIDTH, "for a width or size"
