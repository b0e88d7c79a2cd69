"""The in-memory type for a multivariate sensor series.

A :class:`Series` holds ``values`` of shape ``[T, N, C]`` (time steps,
sensors, channels) as float32, the ``T`` timestamps as ``datetime64[ns]``, the
``N`` sensor ids as strings, the ``C`` channel names, and the null convention:
``null_value`` is ``0.0`` (METR-LA / PEMS-BAY record a dead detector as 0) or
``nan``. The sampling interval is inferred from the timestamps, never assumed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import SeriesError, where


_ID_TYPES = (str, bytes, int, np.integer, np.str_, np.bytes_)


def id_strings(ids, field: str = "sensor_ids", source=None, error=SeriesError) -> list[str]:
    """Sensor ids as strings; an id that is itself a list or an array (a 2-D id column) is an
    ``error`` naming ``field``, the item and its value (``str`` would turn it into ``"['s0']"``)."""
    if isinstance(ids, np.ndarray) and ids.ndim != 1:
        raise error(f"{where(source)}: {field} has shape {ids.shape}; expected a flat list of sensor ids")
    out = []
    for i, s in enumerate(ids):
        if isinstance(s, float) and float(s).is_integer():
            s = int(s)
        if not isinstance(s, _ID_TYPES) or isinstance(s, (bool, np.bool_)):
            shown = repr(s)
            raise error(f"{where(source)}: {field}[{i}] is a {type(s).__name__} ({shown[:60]}"
                        f"{'...' if len(shown) > 60 else ''}); expected a sensor id (a string or an integer)")
        out.append(s.decode("utf-8", "replace") if isinstance(s, (bytes, np.bytes_)) else str(s))
    return out


@dataclass
class Series:
    """A sensor series.

    Attributes:
        values: ``[T, N, C]`` float32 array.
        timestamps: ``[T]`` ``datetime64[ns]`` array, strictly increasing.
        sensor_ids: ``N`` sensor ids (strings, unique).
        channels: ``C`` channel names (e.g. ``["speed"]``).
        null_value: value that marks a missing reading (``0.0`` or ``nan``).
        source: the file the series was read from, for error messages.
    """

    values: np.ndarray
    timestamps: np.ndarray
    sensor_ids: list[str]
    channels: list[str] = field(default_factory=lambda: ["value"])
    null_value: float = 0.0
    source: str | None = None
    null_origin: str | None = None  #: where the null convention came from (for messages), e.g. "the CSV default"

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim == 2:
            self.values = self.values[:, :, None]
        self.timestamps = np.asarray(self.timestamps).astype("datetime64[ns]")
        self.sensor_ids = id_strings(self.sensor_ids, "sensor_ids", self.source, SeriesError)
        self.channels = [str(c) for c in self.channels]
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self, allow_nonfinite: bool | None = None) -> None:
        """Check shapes, timestamps, ids and values; raise :class:`SeriesError`.

        Non-finite values are allowed only when ``null_value`` is NaN (then NaN
        means missing); ``inf`` is never allowed.
        """
        src = where(self.source)
        v = self.values
        if v.ndim != 3:
            raise SeriesError(f"{src}: values must be [T, N, C], got shape {v.shape}")
        T, N, C = v.shape
        if T == 0 or N == 0 or C == 0:
            raise SeriesError(f"{src}: empty series, values have shape {v.shape} (T, N, C all must be > 0)")
        if self.timestamps.shape != (T,):
            raise SeriesError(
                f"{src}: {self.timestamps.shape[0] if self.timestamps.ndim else 0} timestamps "
                f"for {T} time steps; expected one timestamp per step")
        if len(self.sensor_ids) != N:
            raise SeriesError(f"{src}: {len(self.sensor_ids)} sensor ids for {N} sensor columns")
        if len(self.channels) != C:
            raise SeriesError(f"{src}: {len(self.channels)} channel names for {C} channels")
        ids = np.asarray(self.sensor_ids)
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) != N:
            dup = uniq[counts > 1][:10].tolist()
            raise SeriesError(f"{src}: duplicated sensor ids {dup}; every sensor id must be unique")
        if np.isnat(self.timestamps).any():
            i = int(np.flatnonzero(np.isnat(self.timestamps))[0])
            raise SeriesError(f"{src}: timestamp at row {i} is missing (NaT)")
        if T > 1:
            d = np.diff(self.timestamps.astype(np.int64))
            bad = np.flatnonzero(d <= 0)
            if bad.size:
                i = int(bad[0])
                kind = "duplicated" if d[i] == 0 else "not increasing"
                raise SeriesError(
                    f"{src}: timestamps are {kind} at row {i + 1}: {self.timestamps[i]} then "
                    f"{self.timestamps[i + 1]}; sort the rows by time and drop duplicates")
        if allow_nonfinite is None:
            allow_nonfinite = bool(np.isnan(self.null_value))
        self._check_all_values(allow_nonfinite)

    def _check_all_values(self, allow_nonfinite: bool, rows: int = 1 << 12) -> None:
        """:meth:`_check_values` over ``rows`` time steps at a time (its masks stay small)."""
        for r0 in range(0, self.values.shape[0], rows):
            self._check_values(self.values[r0:r0 + rows], r0, allow_nonfinite)

    def _check_values(self, v: np.ndarray, first_step: int, allow_nonfinite: bool) -> None:
        """No ``inf`` in rows ``v [t, N, C]`` (which start at step ``first_step``), nor NaN unless allowed."""
        src = where(self.source)
        if np.isinf(v).any():
            t, n, c = np.argwhere(np.isinf(v))[0]
            raise SeriesError(f"{src}: infinite value at step {first_step + t}, sensor '{self.sensor_ids[n]}', "
                              f"channel {c}")
        if not allow_nonfinite and np.isnan(v).any():
            t, n, c = np.argwhere(np.isnan(v))[0]
            raise SeriesError(
                f"{src}: NaN at step {first_step + t}, sensor '{self.sensor_ids[n]}' while null_value is "
                f"{self.null_value}; pass null_value=nan to treat NaN as missing, or fill it")

    # --------------------------------------------------------------- derived
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values.shape)  # type: ignore[return-value]

    @property
    def num_steps(self) -> int:
        return self.values.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.values.shape[1]

    @property
    def num_channels(self) -> int:
        return self.values.shape[2]

    @property
    def interval(self) -> np.timedelta64:
        """The sampling interval, inferred from the timestamps (see :func:`infer_interval`)."""
        return infer_interval(self.timestamps, self.source)

    def missing_mask(self) -> np.ndarray:
        """``[T, N, C]`` bool array, True where the reading is missing."""
        return null_mask(self.values, self.null_value)

    @property
    def missing_ratio(self) -> float:
        return float(self.missing_mask().mean())

    def channel_index(self, channel: int | str | Sequence[int | str]) -> list[int]:
        """Resolve channel names or indices to a list of indices."""
        items = [channel] if isinstance(channel, (int, str, np.integer)) else list(channel)
        out = []
        for c in items:
            if isinstance(c, (int, np.integer)):
                if not -self.num_channels <= int(c) < self.num_channels:
                    raise SeriesError(f"{where(self.source)}: channel index {c} out of range; "
                                      f"the series has {self.num_channels} channels {self.channels}")
                out.append(int(c) % self.num_channels)
            elif c in self.channels:
                out.append(self.channels.index(c))
            else:
                raise SeriesError(f"{where(self.source)}: no channel named '{c}'; available: {self.channels}")
        return out

    def select_sensors(self, sensor_ids: Sequence[str]) -> "Series":
        """Reorder / subset sensors to ``sensor_ids``."""
        pos = {s: i for i, s in enumerate(self.sensor_ids)}
        missing = [s for s in sensor_ids if str(s) not in pos]
        if missing:
            raise SeriesError(f"{where(self.source)}: sensors not in the series: {missing[:20]}")
        idx = np.array([pos[str(s)] for s in sensor_ids])
        return Series(self.values[:, idx], self.timestamps, [str(s) for s in sensor_ids],
                      self.channels, self.null_value, self.source, self.null_origin)

    @property
    def zero_ratio(self) -> float:
        """Share of readings that are exactly 0."""
        return float((self.values == 0).mean()) if self.values.size else 0.0

    def summary(self) -> dict:
        """What ``stgraph data info`` prints."""
        return {
            "steps": self.num_steps,
            "sensors": self.num_nodes,
            "channels": self.num_channels,
            "channel_names": list(self.channels),
            "start": iso(self.timestamps[0]),
            "end": iso(self.timestamps[-1]),
            "interval": format_interval(self.interval) if self.num_steps > 1 else None,
            "missing_ratio": round(self.missing_ratio, 6),
            "null_value": "nan" if np.isnan(self.null_value) else self.null_value,
            "zero_ratio": round(self.zero_ratio, 6),
            "null_convention": null_convention(self.zero_ratio, self.null_value, self.null_origin),
        }


def null_mask(values, null_value: float):
    """True where a reading is missing: NaN always, and ``values == null_value`` for a numeric
    ``null_value``. The one null test of the package: works on numpy arrays and torch tensors
    (on any device) alike; :func:`stgraph.metrics.valid_mask` is its negation."""
    nan = values != values
    if null_value != null_value:
        return nan
    return (values == null_value) | nan


#: the spellings every command accepts for a null convention (``--null-value``, ``--set data.null_value=``)
NULL_SPELLINGS = "nan (or none: only empty cells / NaN are missing, zeros are readings), 0, or another number"


def parse_null_value(value, what: str = "--null-value"):
    """A null convention as given by a user -> ``float`` (``nan`` or a number) or ``None`` (the file
    format's default). ``nan``, ``.nan``, ``NaN``, ``none``, ``null-nan`` -> NaN (empty cells and NaN are
    missing, zeros are readings); ``0``, ``-1``, ``9999`` -> that number (it marks a missing reading, NaN
    too); ``auto``, ``default``, ``None`` -> ``None``. Anything else is a :class:`ConfigError` naming
    ``what``, the value and the accepted spellings."""
    from ..errors import ConfigError

    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
    else:
        text = str(value).strip().lower()
        if text in ("auto", "default"):
            return None
        if text in ("nan", ".nan", "none", "null-nan", "na"):
            return float("nan")
        try:
            v = float(text)
        except ValueError:
            raise ConfigError(f"{what} = {value!r}: expected {NULL_SPELLINGS}, or auto for the file "
                              f"format's own convention") from None
    if np.isinf(v):
        raise ConfigError(f"{what} = {value!r}: expected {NULL_SPELLINGS}; an infinite marker is not allowed")
    return v


def null_convention(zeros: float, null_value: float, origin: str | None = None) -> str:
    """One line saying which readings count as missing, the share ``zeros`` of readings that are 0,
    and the flag that changes it."""
    share = f"{100 * zeros:.1f}% of the readings are 0"
    src = f" ({origin})" if origin else ""
    if null_value != null_value:
        return (f"missing = empty cells / NaN{src}; zeros are readings: {share}; "
                f"--null-value 0 (or --set data.null_value=0) treats 0 as missing")
    if null_value == 0:
        return (f"missing = 0 and NaN{src}: {share} and are dropped from the loss and the metrics; "
                f"--null-value nan (or --set data.null_value=nan) keeps zeros as readings")
    return (f"missing = {null_value:g} and NaN{src}; {share}; --null-value nan (or --set data.null_value=nan) "
            f"counts only empty cells / NaN as missing")


class LazySeries(Series):
    """A :class:`Series` whose ``values`` stay in an HDF5 file (``read_series(path, lazy=True)``).

    ``values`` is an :class:`~stgraph.io.lazy.H5Values`: ``shape`` ``[T, N, C]``, row slices
    ``values[a:b]`` read from the file, batches of windows gathered through its chunk cache. The
    values are checked in one streaming pass over row blocks when the series is made; everything
    that needs the whole array at once (``missing_mask``, ``select_sensors``) is refused with a
    message, and :class:`~stgraph.data.ForecastData` reads it in blocks and batches.
    """

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps).astype("datetime64[ns]")
        self.sensor_ids = id_strings(self.sensor_ids, "sensor_ids", self.source, SeriesError)
        self.channels = [str(c) for c in self.channels]
        self.validate()

    def row_blocks(self, rows_per_block: int | None = None):
        """Yield ``(first_step, values[first_step:first_step + k])`` over the whole series, ``k`` rows of about
        1 MB (or ``rows_per_block``): ``[k, N, C]`` float32 arrays read in order."""
        T, N, C = self.values.shape
        step = rows_per_block or max(1, (1 << 18) // max(1, N * C))
        for a in range(0, T, step):
            yield a, self.values[a:a + step]

    def _check_all_values(self, allow_nonfinite: bool) -> None:
        """The value checks of :meth:`Series.validate` in one streaming pass over row blocks."""
        for a, blk in self.row_blocks():
            self._check_values(blk, a, allow_nonfinite)

    def _refuse(self, what: str):
        raise SeriesError(f"{where(self.source)}: {what} needs the whole [T, N, C] array in memory, and this series "
                          f"is lazy (read_series(..., lazy=True), data.lazy); read it with lazy=False for that")

    def missing_mask(self) -> np.ndarray:
        self._refuse("missing_mask()")

    @property
    def missing_ratio(self) -> float:
        """Fraction of missing readings, counted in one streaming pass."""
        missing = sum(int(null_mask(blk, self.null_value).sum()) for _, blk in self.row_blocks())
        return missing / float(np.prod(self.values.shape))

    @property
    def zero_ratio(self) -> float:
        """Share of readings that are exactly 0, counted in one streaming pass."""
        zeros = sum(int((blk == 0).sum()) for _, blk in self.row_blocks())
        return zeros / float(max(1, np.prod(self.values.shape)))

    def select_sensors(self, sensor_ids: Sequence[str]) -> "Series":
        self._refuse("select_sensors()")



def iso(ts: np.datetime64) -> str:
    """ISO 8601 to the second: ``2012-03-01T00:00:00``."""
    return str(np.datetime_as_string(np.datetime64(ts, "s"), unit="s"))


_UNITS = [("W", 7 * 86400), ("D", 86400), ("h", 3600), ("min", 60), ("s", 1)]


def format_interval(delta: np.timedelta64) -> str:
    """``np.timedelta64(300, 's')`` -> ``"5min"``; ``1 day`` -> ``"1D"``; ``1 week`` -> ``"1W"``."""
    ns = int(np.timedelta64(delta, "ns").astype(np.int64))
    if ns % 1_000_000_000:
        return f"{ns / 1e9:g}s"
    sec = ns // 1_000_000_000
    for name, size in _UNITS:
        if sec % size == 0:
            return f"{sec // size}{name}"
    return f"{sec}s"  # pragma: no cover - the 's' unit always divides


_DURATIONS = [(7 * 86400, "week", "weeks"), (86400, "day", "days"), (3600, "h", "h"), (60, "min", "min"),
              (1, "s", "s")]


def duration_unit(step_seconds: float) -> tuple[str, float]:
    """The data's own time unit (an axis label): the largest unit that divides the interval
    ``step_seconds``: ``300`` -> ``("min", 60)``, ``3600`` -> ``("h", 3600)``, ``604800`` -> ``("weeks", 604800)``."""
    for size, _, many in _DURATIONS:
        if step_seconds >= size and abs(step_seconds / size - round(step_seconds / size)) < 1e-9:
            return many, float(size)
    return "s", 1.0


def duration_text(seconds: float, step_seconds: float | None = None) -> str:
    """A duration in the unit of the interval ``step_seconds`` (default: of ``seconds`` itself):
    ``(3600, 300)`` -> ``"60 min"``, ``(10800, 3600)`` -> ``"3 h"``, ``(604800, 604800)`` -> ``"1 week"``,
    ``(1209600, 604800)`` -> ``"2 weeks"``. The one formatter for horizon labels (evaluate, plots, bench)."""
    many, size = duration_unit(step_seconds if step_seconds else seconds)
    one = next(o for s, o, m in _DURATIONS if s == size)
    n = seconds / size
    return f"{n:g} {one if n == 1 else many}"


def horizon_text(step: int, step_minutes: float | None) -> str:
    """Horizon step ``step`` as a duration in the data's unit (``"60 min"`` at 5 minutes, ``"3 h"`` hourly,
    ``"1 week"`` weekly), or ``"step 3"`` when the interval is unknown."""
    return duration_text(step * step_minutes * 60, step_minutes * 60) if step_minutes else f"step {step}"


_UNIT_SECONDS = {"s": 1, "sec": 1, "S": 1, "min": 60, "T": 60, "m": 60, "h": 3600, "H": 3600,
                 "d": 86400, "D": 86400, "W": 7 * 86400, "w": 7 * 86400}
_ANY_CASE = {"s": 1, "sec": 1, "min": 60, "t": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # not 'm': 'M' is month


def parse_interval(text: str) -> np.timedelta64:
    """A sampling interval written as text -> ``np.timedelta64[ns]``; the one parser of intervals
    (``freq=``, dataset manifests, their loaders).

    Inverse of :func:`format_interval` (``5min``, ``1h``, ``1D``, ``1W``); also accepts pandas-style
    ``5T``, ``H``, ``1d``, ``300s``, and ``s``/``sec``/``min``/``t``/``h``/``d``/``w`` in any case.

    Raises:
        SeriesError: the text is not a count and a unit, or the count is 0.
    """
    import re
    m = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)\s*", str(text))
    if not m:
        raise SeriesError(f"interval '{text}' not understood; expected e.g. '5min', '1h', '1D', '1W'")
    n = int(m.group(1) or 1)
    unit = m.group(2)
    size = _UNIT_SECONDS.get(unit) or _ANY_CASE.get(unit.lower())
    if size is None:
        raise SeriesError(f"interval '{text}': unknown unit '{unit}'; expected one of s, min, h, D, W")
    if n == 0:
        raise SeriesError(f"interval '{text}' is zero; expected a positive interval such as '5min'")
    return np.timedelta64(n * size, "s").astype("timedelta64[ns]")


def infer_interval(timestamps: np.ndarray, source=None) -> np.timedelta64:
    """The sampling interval of strictly increasing ``timestamps``.

    The interval is the smallest step between consecutive timestamps (the one definition of
    "interval" in stgraph). Every step must be a whole multiple of
    it (a multiple > 1 is a gap of missing rows, which is allowed and reported
    by :func:`gaps`); any other step is an irregular series and an error.
    """
    ts = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)
    if ts.size < 2:
        raise SeriesError(f"{where(source)}: cannot infer an interval from {ts.size} timestamp(s)")
    d = np.diff(ts)
    step = int(d.min())
    if step <= 0:
        raise SeriesError(f"{where(source)}: timestamps are not strictly increasing")
    off = np.flatnonzero(d % step)
    if off.size:
        i = int(off[0])
        t = np.asarray(timestamps).astype("datetime64[ns]")
        raise SeriesError(
            f"{where(source)}: irregular sampling: rows {i} -> {i + 1} ({iso(t[i])} -> {iso(t[i + 1])}) are "
            f"{format_interval(np.timedelta64(int(d[i]), 'ns'))} apart, which is not a multiple of the smallest "
            f"step {format_interval(np.timedelta64(step, 'ns'))} ({off.size} such step(s)); resample the series "
            f"to a regular interval")
    return np.timedelta64(step, "ns")


def gaps(timestamps: np.ndarray) -> np.ndarray:
    """Row indices ``i`` where the step ``i -> i+1`` skips one or more intervals."""
    ts = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64)
    d = np.diff(ts)
    return np.flatnonzero(d > d.min()) if d.size else np.zeros(0, dtype=np.int64)
