"""Text report files (incident reports, event notices): read the rows of a reports CSV.

Layout (a CSV read by :func:`stgraph.io.csv.read_rows`, the one CSV reader; the delimiter is sniffed)::

    timestamp,sensor,lat,lon,end,duration,text
    2012-03-02 08:03,773869,,,,,"two right lanes blocked by a jack-knifed lorry, expect 90 minutes"
    2012-03-02 21:40,,34.1527,-118.2732,2012-03-02 22:30,,stadium event ends 22:30
    2012-03-03 10:00,,,,,,light rain expected this afternoon

* ``timestamp`` (or ``time`` / ``published``): when the report was published; it reaches the series
  from that time on, never before.
* the place: ``sensor`` (or ``sensor_id``) an id of the series, or ``lat`` / ``lon`` (degrees; resolved to
  the sensors within a radius by :mod:`stgraph.data.reports`), or both empty: network-wide.
* ``end`` (a time) or ``duration`` (minutes, or ``90min`` / ``2h``), optional: until when it holds.
* ``text``: the words (required, not empty).

A header with a ``text`` column marks a reports file (:func:`is_reports_header`); the other covariate kinds
are told apart by their columns too (:mod:`stgraph.io.covariates`). A row without a readable time, with
empty text, with only one of ``lat`` / ``lon`` or with an end before its time is refused with a message
naming the file and the line, or skipped and counted with ``skip_bad_rows`` (``--skip-bad-rows``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BadRowError, DataFormatError, where
from .csv import _TS, _timestamps, read_rows
from .series import parse_interval

log = logging.getLogger(__name__)

__all__ = ["ReportTable", "is_reports_header", "read_reports", "reports_from_records"]

_TIME = ("timestamp", "time", "published", "datetime", "date")
_SENSOR = ("sensor", "sensor_id", "id", "node")
_LAT, _LON = ("lat", "latitude"), ("lon", "lng", "longitude")


@dataclass
class ReportTable:
    """The valid rows of a reports file, ``R`` of them.

    Attributes:
        times: ``[R]`` datetime64[ns] publication times (UTC offsets applied: naive UTC).
        ends: ``[R]`` datetime64[ns], ``NaT`` where neither end nor duration is given.
        sensors: ``R`` sensor ids as written (``""``: none given).
        lat, lon: ``[R]`` float64 degrees, NaN where none is given.
        texts: ``R`` report texts.
        lines: ``[R]`` the file's line of each row (for messages).
        origin: the file.
        skipped: rows left out (``skip_bad_rows``), ``[(line, reason), ...]``.
    """

    times: np.ndarray
    ends: np.ndarray
    sensors: list
    lat: np.ndarray
    lon: np.ndarray
    texts: list
    lines: np.ndarray
    origin: str = ""
    skipped: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, keep: np.ndarray) -> "ReportTable":
        """The rows where ``keep [R]`` (bool) holds."""
        idx = np.flatnonzero(keep)
        return ReportTable(self.times[idx], self.ends[idx], [self.sensors[i] for i in idx], self.lat[idx],
                           self.lon[idx], [self.texts[i] for i in idx], self.lines[idx], self.origin,
                           list(self.skipped))


def is_reports_header(header) -> bool:
    """Whether a CSV header (lower-case names) is a reports file's: a ``text`` column and a time column."""
    return "text" in header and any(k in header for k in _TIME)


def _column(header: list[str], names) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _duration(cell: str) -> np.timedelta64:
    if re.fullmatch(r"\s*\d+(\.\d*)?\s*", cell):
        return np.timedelta64(int(round(float(cell) * 60)), "s").astype("timedelta64[ns]")
    return parse_interval(cell)


def _row(r: list[str], cols: dict, line: int) -> tuple:
    """One row -> ``(time, end, sensor, lat, lon, text)`` or raises ValueError with the reason."""
    def cell(name):
        i = cols[name]
        return r[i].strip() if i is not None and i < len(r) else ""

    t = cell("time")
    if not t or not _TS.fullmatch(t):
        raise ValueError(f"no publication time ({t!r}); expected ISO text such as 2012-03-02 08:03")
    text = cell("text")
    if not text:
        raise ValueError("empty text")
    la, lo = cell("lat"), cell("lon")
    if bool(la) != bool(lo):
        raise ValueError(f"lat {la!r} and lon {lo!r}: expected both or neither")
    try:
        lat, lon = (float(la), float(lo)) if la else (np.nan, np.nan)
    except ValueError:
        raise ValueError(f"lat {la!r} / lon {lo!r} are not numbers") from None
    when = _timestamps(np.array([t], dtype=object), np.array([line]), "timestamp", "")[0]
    end, dur = cell("end"), cell("duration")
    stop = np.datetime64("NaT", "ns")
    if end:
        if not _TS.fullmatch(end):
            raise ValueError(f"end {end!r} is not a time")
        stop = _timestamps(np.array([end], dtype=object), np.array([line]), "end", "")[0]
    elif dur:
        try:
            stop = when + _duration(dur)
        except (ValueError, DataFormatError):
            raise ValueError(f"duration {dur!r} is not minutes or an interval such as 90min") from None
    if not np.isnat(stop) and stop <= when:
        raise ValueError(f"end {stop} is not after the publication time {when}")
    return when, stop, cell("sensor"), lat, lon, text


def read_reports(path, skip_bad_rows: bool = False) -> ReportTable:
    """The rows of a reports file (module docstring).

    Args:
        path: the CSV.
        skip_bad_rows: leave bad rows out (counted in :attr:`ReportTable.skipped`, and logged) instead of
            refusing the file.

    Raises:
        DataFormatError: no text or time column, no valid row, or (without ``skip_bad_rows``) a bad row,
            naming the file, the line and what is wrong.
    """
    path = Path(path)
    rows, lines = read_rows(path)
    header = [h.strip().lower() for h in rows[0]]
    cols = {"time": _column(header, _TIME), "text": _column(header, ("text",)), "sensor": _column(header, _SENSOR),
            "lat": _column(header, _LAT), "lon": _column(header, _LON), "end": _column(header, ("end",)),
            "duration": _column(header, ("duration", "duration_min"))}
    if cols["time"] is None or cols["text"] is None:
        raise DataFormatError(f"{where(path)}: header {rows[0]}: a reports file needs a 'timestamp' and a 'text' "
                              f"column (and optionally sensor, lat, lon, end, duration)")
    good, skipped = [], []
    for r, line in zip(rows[1:], lines[1:]):
        try:
            good.append((*_row(r, cols, line), line))
        except (ValueError, DataFormatError) as exc:
            if not skip_bad_rows:
                raise BadRowError(f"{where(path)}: line {line}: {exc}; fix the row or pass --skip-bad-rows "
                                  f"(data.skip_bad_rows) to leave bad rows out", line, str(exc)) from None
            skipped.append((line, str(exc)))
    if skipped:
        log.warning("%s: %d bad report row(s) skipped (first: line %d, %s)", path, len(skipped), *skipped[0])
    if not good:
        raise DataFormatError(f"{where(path)}: no valid report row; expected rows 'timestamp,sensor,...,text'")
    return _table(good, str(path), skipped)


def _table(good: list[tuple], origin: str, skipped: list) -> ReportTable:
    """A :class:`ReportTable` of rows ``(time, end, sensor, lat, lon, text, line)``."""
    if not good:
        return ReportTable(np.zeros(0, "datetime64[ns]"), np.zeros(0, "datetime64[ns]"), [], np.zeros(0),
                           np.zeros(0), [], np.zeros(0, np.int64), origin, skipped)
    t, e, s, la, lo, x, ln = zip(*good)
    return ReportTable(np.array(t, "datetime64[ns]"), np.array(e, "datetime64[ns]"), list(s),
                       np.array(la, np.float64), np.array(lo, np.float64), list(x), np.array(ln), origin, skipped)


_RECORD_COLUMNS = ("timestamp", "text", "sensor", "lat", "lon", "end", "duration")


def reports_from_records(records: list[dict], origin: str) -> ReportTable:
    """Reports given as records (``{"timestamp", "text", "sensor"?, "lat"?, "lon"?, "end"?, "duration"?}``, e.g.
    a forecast request's), read as the rows of a reports file (module docstring); ``lines`` are the records'
    indices. May be empty (no report).

    Raises:
        BadRowError: a bad record (``.row`` its index, ``.reason``; the message names ``origin[index]``).
    """
    cols = {"time": 0, "text": 1, "sensor": 2, "lat": 3, "lon": 4, "end": 5, "duration": 6}
    good = []
    for i, rec in enumerate(records):
        cells = ["" if rec.get(k) is None else str(rec.get(k)) for k in _RECORD_COLUMNS]
        try:
            good.append((*_row(cells, cols, i), i))
        except (ValueError, DataFormatError) as exc:
            raise BadRowError(f"{origin}[{i}]: {exc}", i, str(exc)) from None
    return _table(good, origin, [])
