"""Calendar covariates computed from the timestamps, vectorised on ``datetime64``.

* time of day: fraction of the day elapsed, float32 in ``[0, 1)``
  (``00:00 -> 0``, ``12:00 -> 0.5``, ``23:55 -> 287/288``);
* day of week: int64 ``0..6`` with Monday ``0`` (1970-01-01 was a Thursday, ``3``).

Timestamps are taken as given (naive local time, as the traffic files store them).
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

from ..errors import ConfigError

_NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday


def _ns(timestamps: np.ndarray) -> np.ndarray:
    return np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)


def time_of_day(timestamps: np.ndarray) -> np.ndarray:
    """``[T]`` float32 fraction of the day in ``[0, 1)`` for ``[T]`` datetime64 timestamps."""
    ns_in_day = np.mod(_ns(timestamps), _NS_PER_DAY)  # floor modulo: also right before 1970
    tod = (ns_in_day / _NS_PER_DAY).astype(np.float32)
    # a time a few ns before midnight would round up to 1.0 in float32
    return np.minimum(tod, np.float32(np.nextafter(np.float32(1), np.float32(0))))


def day_of_week(timestamps: np.ndarray) -> np.ndarray:
    """``[T]`` int64 day of week, Monday = 0 ... Sunday = 6."""
    days = np.floor_divide(_ns(timestamps), _NS_PER_DAY)
    return np.mod(days + _EPOCH_WEEKDAY, 7).astype(np.int64)


def steps_per_day(interval) -> int:
    """Time-of-day slots per day for a sampling ``interval``.

    ``interval`` is a ``np.timedelta64``, ``datetime.timedelta`` or seconds.
    5 min -> 288, 1 h -> 24; a day or coarser -> 1. When the interval does not
    divide the day the count is rounded up, so ``floor(tod * steps_per_day)``
    still gives each step of the day its own slot.

    Raises:
        ConfigError: the interval is not positive.
    """
    if isinstance(interval, _dt.timedelta):
        ns = int(interval / _dt.timedelta(microseconds=1)) * 1000
    elif isinstance(interval, np.timedelta64):
        ns = int(interval.astype("timedelta64[ns]").astype(np.int64))
    elif isinstance(interval, (int, float, np.integer, np.floating)) and not isinstance(interval, bool):
        ns = int(round(float(interval) * 1e9))
    else:
        raise ConfigError(f"interval is {interval!r}; expected a np.timedelta64, datetime.timedelta or seconds")
    if ns <= 0:
        raise ConfigError(f"interval is {interval!r}; expected a positive duration such as 5 minutes")
    if ns >= _NS_PER_DAY:
        return 1
    return -(-_NS_PER_DAY // ns)
