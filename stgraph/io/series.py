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

    def _check_all_values(self, allow_nonfinite: bool) -> None:
        self._check_values(self.values, 0, allow_nonfinite)

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
                      self.channels, self.null_value, self.source)

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
            "null_value": None if np.isnan(self.null_value) else self.null_value,
        }


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

    def select_sensors(self, sensor_ids: Sequence[str]) -> "Series":
        self._refuse("select_sensors()")


def null_mask(values: np.ndarray, null_value: float) -> np.ndarray:
    """True where ``values`` equals ``null_value`` (or is NaN when it is NaN)."""
    if np.isnan(null_value):
        return np.isnan(values)
    return (values == null_value) | np.isnan(values)


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


def parse_interval(text: str) -> np.timedelta64:
    """Inverse of :func:`format_interval`; also accepts ``5T``, ``H``, ``1d``, ``300s``."""
    import re
    m = re.fullmatch(r"\s*(\d*)\s*([A-Za-z]+)\s*", str(text))
    if not m:
        raise SeriesError(f"interval '{text}' not understood; expected e.g. '5min', '1h', '1D', '1W'")
    n = int(m.group(1) or 1)
    unit = m.group(2)
    table = {"s": 1, "sec": 1, "S": 1, "min": 60, "T": 60, "m": 60, "h": 3600, "H": 3600,
             "d": 86400, "D": 86400, "W": 7 * 86400, "w": 7 * 86400}
    if unit not in table:
        raise SeriesError(f"interval '{text}': unknown unit '{unit}'; expected one of s, min, h, D, W")
    return np.timedelta64(n * table[unit], "s").astype("timedelta64[ns]")


def infer_interval(timestamps: np.ndarray, source=None) -> np.timedelta64:
    """The sampling interval of strictly increasing ``timestamps``.

    The interval is the smallest step. Every step must be a whole multiple of
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
