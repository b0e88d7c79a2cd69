"""What a format parser finds in a file (:class:`RawTable`) and the limits every parser checks.

The format modules (:mod:`.hdf5`, :mod:`.npz`, :mod:`.csv`) parse a file into a :class:`RawTable`;
:func:`~stgraph.io.read.read_series` applies the caller's options to it. Before reading an array
a parser calls :func:`check_declared_size`, so a corrupted or hostile header cannot make it allocate
more than :func:`memory_budget` or more than the file can hold.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataFormatError, where


class RawTable(NamedTuple):
    """What a format parser found in a file, before the caller's options.

    Attributes:
        values: ``[T, N, C]`` or ``[T, N]`` numeric array (any float/int dtype).
        timestamps: ``[T]`` ``datetime64[ns]``, or ``None`` when the file has none.
        sensor_ids: ``N`` sensor ids as strings.
        channels: the file's own channel names, or ``None`` when it has none.
        null_value: the file's own null convention, or ``None`` when the format carries none
            (then NaN / empty cells are missing and zeros are readings).
        no_time_reason: why ``timestamps`` is ``None`` (used in the error message).
        null_origin: where ``null_value`` comes from, for messages.
    """

    values: np.ndarray
    timestamps: np.ndarray | None
    sensor_ids: list[str]
    channels: list[str] | None = None
    null_value: float | None = None
    no_time_reason: str = "the file has no timestamps"
    null_origin: str | None = None


# ------------------------------------------------------------- declared sizes
def memory_budget() -> int:
    """Bytes one array read from a file may take: ``$STGRAPH_MAX_ARRAY_BYTES``, else half the
    machine's physical memory (at least 1 GiB)."""
    import os

    env = os.environ.get("STGRAPH_MAX_ARRAY_BYTES")
    if env:
        try:
            return max(1, int(float(env)))
        except ValueError:
            raise ConfigError(f"$STGRAPH_MAX_ARRAY_BYTES = {env!r}: expected a number of bytes") from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 8 * 2**30
    return max(2**30, total // 2)


def bytes_text(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_declared_size(shape, itemsize: int, what: str, path, *, stored: int | None = None,
                        compressed: bool = False, budget: bool = True) -> int:
    """Refuse an array whose declared ``shape`` would not fit in :func:`memory_budget`, or that
    declares more bytes than the file can hold (``stored``: the bytes the file actually has for
    it; with ``compressed`` a ratio over 1000:1 beyond 64 MB is taken as a decompression bomb).
    ``budget=False`` (a lazy read, which never holds the array) skips the memory budget only.
    Returns the declared size in bytes."""
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = n * int(itemsize)
    shown = "(" + ", ".join(str(int(d)) for d in shape) + ")"
    budget = memory_budget() if budget else float("inf")
    if nbytes > budget:
        raise DataFormatError(
            f"{where(path)}: {what} declares shape {shown} = {bytes_text(nbytes)}, more than the memory "
            f"budget of {bytes_text(budget)}; the file is corrupted or hostile (set $STGRAPH_MAX_ARRAY_BYTES "
            f"if it is real)")
    if stored is not None:
        if not compressed and nbytes > stored:
            raise DataFormatError(
                f"{where(path)}: {what} declares shape {shown} = {bytes_text(nbytes)} but the file holds "
                f"only {bytes_text(stored)} of it; the file is truncated or corrupted")
        if compressed and nbytes > 64e6 and nbytes > 1000 * max(stored, 1):
            raise DataFormatError(
                f"{where(path)}: {what} declares shape {shown} = {bytes_text(nbytes)} from only "
                f"{bytes_text(stored)} of compressed bytes (over 1000:1); refusing a likely "
                f"decompression bomb")
    return nbytes
