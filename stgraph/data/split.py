"""Chronological train / val / test split of sliding windows.

Two protocols:

* by ratio (the DCRNN protocol, the default ``(0.7, 0.1, 0.2)``): on the ``n``
  windows in time order, ``n_test = round(n * r_test)``,
  ``n_train = round(n * r_train)``, ``n_val = n - n_train - n_test``; the first
  ``n_train`` windows train, the next ``n_val`` validate, the last ``n_test``
  test. Python's ``round`` (half to even) is used, as DCRNN's script does.
* by time (``train_end``, ``val_end``): a window is in a split only if all its
  rows (input and target) lie in that split's period: train ``< train_end``,
  val ``>= train_end`` and ``< val_end``, test ``>= val_end``. Windows that
  straddle a boundary are dropped, so no row is seen by two splits as a target.

By ratio, neighbouring windows of two splits share ``span - stride`` rows at each boundary: the last
training targets are inputs (and targets) of the first validation windows. That is the published
benchmarks' protocol, kept by default. A split gap ``g >= 1`` (``data.split_gap``) leaves ``g`` steps
unused between the last row of one split and the first row of the next, so no target of one split is an
input or a target of the next: by ratio (:func:`split_by_ratio_with_gap`) the ``ceil((span + g) / stride)
- 1`` windows each boundary costs come off first and the ratios share out the rest; by time or a given
:class:`Split`, :func:`apply_gap` drops the first windows of validation and test.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Mapping

import numpy as np

from ..errors import ConfigError, SeriesError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Window start rows per split, each an ascending int64 array."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in SPLIT_NAMES:
            raise ConfigError(f"split name is {name!r}; expected one of {list(SPLIT_NAMES)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of windows per split."""
        return {name: int(len(self[name])) for name in SPLIT_NAMES}


def split_by_ratio(starts: np.ndarray, ratios=(0.7, 0.1, 0.2)) -> Split:
    """Split ascending window ``starts [n]`` by the DCRNN ratio protocol.

    Raises:
        ConfigError: ``ratios`` is not three positive numbers summing to 1.
    """
    r_train, r_val, r_test = _check_ratios(ratios)
    starts = np.asarray(starts, dtype=np.int64)
    n = len(starts)
    n_test = int(round(n * r_test))
    n_train = int(round(n * r_train))
    n_val = n - n_train - n_test
    if n_val < 0:  # tiny n where both roundings went up; take the excess from train
        n_train += n_val
        n_val = 0
    return Split(starts[:n_train], starts[n_train:n_train + n_val], starts[n_train + n_val:])


def split_by_time(starts: np.ndarray, timestamps: np.ndarray, span: int, train_end, val_end) -> Split:
    """Split window ``starts [n]`` (each covering ``span`` rows) at two instants.

    Args:
        starts: ascending window start rows.
        timestamps: ``[T]`` datetime64 of the rows.
        span: rows per window, ``input_len + horizon``.
        train_end: first instant that is not training (anything ``np.datetime64`` parses).
        val_end: first instant that is test.

    Raises:
        ConfigError: a boundary cannot be parsed or ``val_end <= train_end``.
    """
    t_train = _instant("train_end", train_end)
    t_val = _instant("val_end", val_end)
    if not t_val > t_train:
        raise ConfigError(f"val_end ({t_val}) must be after train_end ({t_train}); "
                          f"pass split=(train_end, val_end) in time order")
    starts = np.asarray(starts, dtype=np.int64)
    ts = np.asarray(timestamps).astype("datetime64[ns]")
    first = ts[starts]
    last = ts[starts + span - 1]
    train = last < t_train
    val = (first >= t_train) & (last < t_val)
    test = first >= t_val
    return Split(starts[train], starts[val], starts[test])


def apply_gap(split: Split, span: int, gap: int) -> Split:
    """Drop the first windows of ``val`` and ``test`` so each starts at least ``gap + 1`` rows after the last
    row of the split before (``gap`` steps unused between); ``gap = 0`` returns ``split`` unchanged.

    Args:
        split: window starts per split.
        span: rows per window, ``input_len + horizon``.
        gap: steps left out between splits (``data.split_gap``).
    """
    if gap <= 0:
        return split
    parts = {"train": np.asarray(split.train, dtype=np.int64)}
    end = int(parts["train"][-1]) + span - 1 if len(parts["train"]) else None  # last row of the split before
    for name in ("val", "test"):
        starts = np.asarray(split[name], dtype=np.int64)
        parts[name] = starts if end is None else starts[starts >= end + 1 + gap]
        if len(parts[name]):
            end = int(parts[name][-1]) + span - 1
    return Split(**parts)


def split_by_ratio_with_gap(starts: np.ndarray, ratios, span: int, gap: int) -> Split:
    """The ratio protocol with ``gap`` steps left unused between splits: the windows a boundary must drop
    (``ceil((span + gap) / stride) - 1`` of them at each, ``stride`` the smallest step between starts) come off
    first, the ratios share out the rest, then :func:`apply_gap` makes sure of the gap (holes in ``starts``)."""
    starts = np.asarray(starts, dtype=np.int64)
    stride = int(np.diff(starts).min()) if len(starts) > 1 else 1
    skip = -(-(span + gap) // stride) - 1
    n_eff = len(starts) - 2 * skip
    if n_eff < 3:
        raise SeriesError(f"data.split_gap = {gap}: the {len(starts)} windows leave none for one of the splits once "
                          f"{skip} are dropped at each of the two boundaries ({span} steps a window + the gap); "
                          f"expected at least {2 * skip + 3} windows. Use a smaller gap, shorter windows or a longer "
                          f"series")
    base = split_by_ratio(starts[:n_eff], ratios)
    n_train, n_val = len(base.train), len(base.val)
    val = starts[n_train + skip:n_train + skip + n_val]
    parts = Split(base.train, val, starts[n_train + skip + n_val + (skip if n_val else 0):])
    return apply_gap(parts, span, gap)


def make_split(spec, starts: np.ndarray, timestamps: np.ndarray, span: int, gap: int = 0) -> Split:
    """Build a :class:`Split` from a user spec.

    ``spec`` is a :class:`Split` (used as is), three ratios ``(train, val,
    test)``, two instants ``(train_end, val_end)``, or a mapping with keys
    ``train_end`` and ``val_end``. ``gap`` (steps): ratios by :func:`split_by_ratio_with_gap`, the rest through
    :func:`apply_gap`.
    """
    if gap:
        if isinstance(spec, (list, tuple)) and len(spec) == 3 and all(_is_number(r) for r in spec):
            return split_by_ratio_with_gap(starts, spec, span, gap)
        return apply_gap(make_split(spec, starts, timestamps, span), span, gap)
    if isinstance(spec, Split):
        return spec
    if isinstance(spec, Mapping):
        missing = [k for k in ("train_end", "val_end") if k not in spec]
        if missing:
            raise ConfigError(f"split mapping {dict(spec)!r} lacks {missing}; "
                              f"expected keys 'train_end' and 'val_end'")
        return split_by_time(starts, timestamps, span, spec["train_end"], spec["val_end"])
    if isinstance(spec, (list, tuple)):
        if len(spec) == 3 and all(_is_number(r) for r in spec):
            return split_by_ratio(starts, spec)
        if len(spec) == 2 and not any(_is_number(r) for r in spec):
            return split_by_time(starts, timestamps, span, spec[0], spec[1])
    raise ConfigError(f"split is {spec!r}; expected ratios (train, val, test) such as (0.7, 0.1, 0.2) "
                      f"or boundaries (train_end, val_end) such as ('2012-05-20', '2012-06-01')")


def training_rows(split: Split, span: int) -> tuple[int, int]:
    """Row range ``[start, stop)`` covered by the training windows (input and target rows).

    Fit the scaler on these rows only. When the training windows are not
    contiguous (e.g. gaps were dropped) this is their hull.

    Raises:
        SeriesError: the training split is empty.
    """
    if len(split.train) == 0:
        raise SeriesError("the training split has no window; use a longer series, shorter windows "
                          "or a later train_end")
    return int(split.train[0]), int(split.train[-1]) + int(span)


def _is_number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _check_ratios(ratios) -> tuple[float, float, float]:
    try:
        r = tuple(float(x) for x in ratios)
    except (TypeError, ValueError):
        r = ()
    if len(r) != 3 or not all(np.isfinite(x) and x > 0 for x in r) or abs(sum(r) - 1.0) > 1e-6:
        raise ConfigError(f"split ratios are {ratios!r}; expected three positive numbers "
                          f"(train, val, test) summing to 1, e.g. (0.7, 0.1, 0.2)")
    return r  # type: ignore[return-value]


def _instant(name: str, value) -> np.datetime64:
    try:
        t = np.datetime64(value, "ns")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} is {value!r} which is not a date/time ({exc}); "
                          f"expected e.g. '2012-05-20' or '2012-05-20T00:00'") from None
    if np.isnat(t):
        raise ConfigError(f"{name} is {value!r} (NaT); expected a date/time such as '2012-05-20'")
    return t
