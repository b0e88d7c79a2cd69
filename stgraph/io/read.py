"""Read a sensor series from any supported file: :func:`read_series`.

The reader is picked by the file's CONTENT, not its name (:func:`~stgraph.io.sniff.sniff_format`).
The format modules (:mod:`.hdf5`, :mod:`.npz`, :mod:`.csv`) only parse a file into a
:class:`~stgraph.io.raw.RawTable`; this module applies the caller's options (``start``, ``freq``,
``channels``, ``null_value``) in one place and builds the :class:`~stgraph.io.series.Series`.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError, SeriesError, where
from .csv import parse_csv
from .hdf5 import parse_hdf5
from .npz import parse_npz
from .raw import RawTable
from .series import Series, format_interval, infer_interval, parse_interval
from .sniff import FORMATS, existing_file, sniff_format

__all__ = ["read_series", "build_series", "regular_timestamps", "sniff_format"]


# ---------------------------------------------------------------- read_series
def read_series(
    path: str | Path,
    *,
    format: str | None = None,
    null_value: float | None = None,
    start: str | np.datetime64 | _dt.datetime | None = None,
    freq: str | np.timedelta64 | _dt.timedelta | None = None,
    channels: Sequence[str] | None = None,
    key: str | None = None,
    lazy: bool = False,
    cache_bytes: int | None = None,
) -> Series:
    """Read a ``[T, N, C]`` sensor series from an HDF5, ``.npz``/``.npy`` or CSV file.

    Args:
        path: the file. Its format is detected from its content (see
            :func:`sniff_format`); the suffix is not trusted.
        format: ``"hdf5"``, ``"npz"`` or ``"csv"`` to insist on a format; the
            content is still checked and a mismatch is an error.
        null_value: the value that marks a missing reading in the returned
            series (``nan``, ``0.0`` or another number; any spelling of
            :func:`~stgraph.io.series.parse_null_value`). Defaults to the file's
            own convention: the one stored by :func:`write_series`, ``0.0``
            for the METR-LA / PEMS-BAY pandas-HDF5 layout (a dead detector is
            recorded as 0), and NaN for formats that carry no convention (CSV,
            plain HDF5, ``.npz`` read without a manifest): empty cells and NaN
            are missing, zeros are readings. NaN in a file always means missing
            and is replaced by ``null_value``.
        start: first timestamp, for files without timestamps (``.npz``, CSV
            without a time column, a frame with a non-datetime index).
        freq: sampling interval (``"5min"``, ``"1h"``, ``"1D"``, ...) with ``start``.
            For a file that has timestamps, ``start``/``freq`` are optional and
            checked against the file.
        channels: names for the ``C`` channels (e.g. ``["flow", "occupancy", "speed"]``).
        key: HDF5 group of a pandas frame (default: the only one, e.g. ``df`` or
            ``t``) or of a plain layout; array name in an ``.npz`` (default
            ``data``); name of the timestamp column in a CSV.
        lazy: HDF5 only: return a :class:`~stgraph.io.series.LazySeries` whose ``values`` stay in
            the file (:class:`~stgraph.io.lazy.H5Values`, read in row chunks through an LRU cache);
            it is checked in one streaming pass and gives the same windows as the loaded series.
            No memory budget applies (the array is never held whole).
        cache_bytes: with ``lazy``, the size of the chunk cache (default 256 MiB).

    Returns:
        A validated :class:`Series` whose ``source`` is ``path``.

    Raises:
        MissingFileError: ``path`` does not exist.
        DataFormatError: empty, truncated or unrecognised file, inconsistent
            content, or missing ``start``/``freq`` for a file without timestamps.
        SeriesError: the content is not a valid series (duplicated sensor
            ids, unsorted timestamps, ...).
    """
    path = existing_file(path)
    found = sniff_format(path)
    if format is not None:
        wanted = FORMATS.get(str(format).lower())
        if wanted is None:
            raise ConfigError(f"read_series: format={format!r} is unknown; expected one of "
                              f"{sorted(set(FORMATS.values()))} or None to detect it from the content")
        if wanted != found:
            raise DataFormatError(
                f"{where(path)}: format={format!r} was requested but the content is {found}; "
                f"pass format=None to read it as {found}, or fix the file")
    if lazy:
        if found != "hdf5":
            raise ConfigError(f"{where(path)}: lazy=True (data.lazy) reads HDF5 files only, and this file is {found}; "
                              f"convert it once with stgraph.io.write_series(read_series(path), 'x.h5'), or read it "
                              f"with lazy=False")
        from .lazy import DEFAULT_CACHE_BYTES
        raw = parse_hdf5(path, key=key, lazy=True,
                         cache_bytes=DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes)
    else:
        raw = _parser(found)(path, key=key)
    return build_series(raw, path, null_value=null_value, start=start, freq=freq, channels=channels, fmt=found)


def _parser(fmt: str):
    return {"hdf5": parse_hdf5, "npz": parse_npz}.get(fmt, parse_csv)


# ----------------------------------------------------------- caller's options
def build_series(raw: RawTable, path, *, null_value=None, start=None, freq=None,
                 channels=None, fmt: str | None = None) -> Series:
    """Apply the caller's options to ``raw`` and build a :class:`Series` (a :class:`LazySeries` when
    ``raw.values`` is a lazy :class:`~stgraph.io.lazy.H5Values`, which converts its rows as they are read)."""
    from .lazy import H5Values

    if isinstance(raw.values, H5Values):
        from .series import LazySeries
        T, _, C = raw.values.shape
        timestamps, names, null, origin = _options(raw, path, T, C, null_value, start, freq, channels, fmt)
        raw.values.null_value = null
        return LazySeries(raw.values, timestamps, list(raw.sensor_ids), names, null, str(path), origin)
    values = np.asarray(raw.values)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3:
        raise DataFormatError(f"{where(path)}: values have shape {values.shape}; expected [T, N] or [T, N, C]")
    if values.dtype.kind == "f" and values.dtype.itemsize > 4:
        with np.errstate(over="ignore", invalid="ignore"):
            narrow = values.astype(np.float32)
        _check_float32_range(values, narrow, raw.sensor_ids, path)
        values = narrow
    else:
        values = values.astype(np.float32, copy=False)
    T, N, C = values.shape
    timestamps, names, null, origin = _options(raw, path, T, C, null_value, start, freq, channels, fmt)
    if not np.isnan(null):
        values = _nan_to_null(values, np.float32(null))
    return Series(values, timestamps, list(raw.sensor_ids), names, null, str(path), origin)


def _nan_to_null(values: np.ndarray, null: np.float32, rows: int = 1 << 12) -> np.ndarray:
    """``values`` ``[T, N, C]`` with NaN replaced by ``null``: in place, ``rows`` time steps at a time (no
    whole-array mask), when the array is writeable (the parsers' own arrays); else one new array."""
    if not values.flags.writeable:
        nan = np.isnan(values)
        return np.where(nan, null, values) if nan.any() else values
    for r0 in range(0, values.shape[0], rows):
        block = values[r0:r0 + rows]
        np.copyto(block, null, where=np.isnan(block))
    return values


def _options(raw: RawTable, path, T: int, C: int, null_value, start, freq, channels, fmt=None):
    """``(timestamps [T], channel names [C], null value, where the null convention came from)`` from
    the file and the caller's options."""
    if raw.timestamps is None:
        if start is None or freq is None:
            missing = " and ".join(n for n, v in (("start", start), ("freq", freq)) if v is None)
            raise DataFormatError(
                f"{where(path)}: {raw.no_time_reason}, and no {missing} was given; pass "
                f"start='2012-03-01 00:00' and freq='5min' (the dataset's first timestamp and "
                f"interval; on the command line --start/--freq, or --set data.start=... --set "
                f"data.freq=5min for a run), or read it through the dataset manifest which knows them")
        timestamps = regular_timestamps(start, freq, T, path)
    else:
        timestamps = np.asarray(raw.timestamps).astype("datetime64[ns]")
        _check_agrees(timestamps, start, freq, path)

    if channels is not None:
        names = [str(c) for c in ([channels] if isinstance(channels, str) else channels)]
        if len(names) != C:
            raise DataFormatError(
                f"{where(path)}: channels={names} names {len(names)} channel(s) but the file has {C}; "
                f"pass {C} name(s)" + (f" (the file calls them {raw.channels})" if raw.channels else ""))
    elif raw.channels is not None and len(raw.channels) == C:
        names = list(raw.channels)
    else:
        names = ["value"] if C == 1 else [f"channel_{i}" for i in range(C)]

    from .series import parse_null_value

    given = parse_null_value(null_value, "null_value")
    if given is not None:
        null, origin = given, "as given"
    elif raw.null_value is not None:
        null, origin = float(raw.null_value), raw.null_origin or "the file's own convention"
    else:
        null, origin = float("nan"), f"the default for a {_FORMAT_NAMES.get(fmt, 'file')} that declares no convention"
    return timestamps, names, float(null), origin


_FORMAT_NAMES = {"hdf5": "plain HDF5 file", "npz": ".npz archive", "csv": "CSV file"}


def _check_float32_range(wide: np.ndarray, narrow: np.ndarray, sensor_ids, path,
                         rows_per_check: int = 4096) -> None:
    """A finite float64 reading that became inf in float32 is an error (checked in row blocks)."""
    for a in range(0, narrow.shape[0], rows_per_check):
        inf = np.isinf(narrow[a:a + rows_per_check])
        if not inf.any():
            continue
        over = inf & np.isfinite(wide[a:a + rows_per_check])
        if over.any():
            t, n, c = (int(i) for i in np.argwhere(over)[0])
            raise DataFormatError(
                f"{where(path)}: value {float(wide[a + t, n, c])!r} at step {a + t}, sensor "
                f"'{sensor_ids[n]}' is beyond the float32 range (+-3.4e38) stgraph computes in; "
                f"expected sensor readings (fix the value or mark it missing)")


def regular_timestamps(start, freq, steps: int, path=None) -> np.ndarray:
    """``steps`` timestamps ``start, start + freq, ...`` as ``datetime64[ns]``."""
    t0 = _to_datetime(start, path)
    step = _to_timedelta(freq, path)
    return t0 + np.arange(steps, dtype=np.int64) * step


def _to_datetime(start, path) -> np.datetime64:
    try:
        if isinstance(start, str):
            t = np.datetime64(start.strip().replace(" ", "T", 1))
        else:
            t = np.datetime64(start)
        t = t.astype("datetime64[ns]")
    except (ValueError, TypeError) as exc:
        raise DataFormatError(
            f"{where(path)}: start={start!r} is not a timestamp ({exc}); expected ISO 8601 "
            f"like '2012-03-01 00:00'") from None
    if np.isnat(t):
        raise DataFormatError(f"{where(path)}: start={start!r} is NaT; expected a timestamp like '2012-03-01 00:00'")
    return t


def _to_timedelta(freq, path) -> np.timedelta64:
    if isinstance(freq, str):
        try:
            step = parse_interval(freq)
        except SeriesError as exc:
            raise DataFormatError(f"{where(path)}: freq: {exc}") from None
    else:
        try:
            step = np.timedelta64(freq).astype("timedelta64[ns]")
        except (ValueError, TypeError):
            raise DataFormatError(
                f"{where(path)}: freq={freq!r} is not an interval; expected e.g. '5min', '1h', '1D'") from None
    if int(step.astype(np.int64)) <= 0:
        raise DataFormatError(f"{where(path)}: freq={freq!r} must be a positive interval")
    return step


def _check_agrees(timestamps: np.ndarray, start, freq, path) -> None:
    """The file has its own timestamps: ``start``/``freq`` given too must match them."""
    if start is not None and timestamps.size and _to_datetime(start, path) != timestamps[0]:
        raise DataFormatError(
            f"{where(path)}: the file's first timestamp is {timestamps[0]} but start={start!r} was "
            f"passed; the file has its own timestamps, so drop start= (or fix it)")
    if freq is not None and timestamps.size > 1:
        step = _to_timedelta(freq, path)
        got = infer_interval(timestamps, path)
        if got != step:
            raise DataFormatError(
                f"{where(path)}: the file's interval is {format_interval(got)} but freq={freq!r} was "
                f"passed; the file has its own timestamps, so drop freq= (or fix it)")
