"""Covariate files beyond the calendar: read them and align them to a series (:func:`read_covariates`).

Four kinds of source, each one file (its name, the file's stem, is the source's name):

* **shared series** (weather): a time column and one or more value columns that are not sensor
  ids, e.g. ``timestamp,rain_mm_h,temperature_c``; every sensor sees the same values. Stored
  ``[T, C]``.
* **per-sensor series** (incident flags): a time column and one column per sensor, headed by
  the series' sensor ids (a wide CSV, or any series file stgraph reads: HDF5, ``.npz``); several
  channels in an HDF5 series file become several covariate channels. Stored ``[T, N, C]``.
  Sensors the file does not name are missing (null) throughout.
* **static features** (lanes, speed limit, road class): a CSV with a ``sensor_id`` (or
  ``sensor``/``id``) column and no time column, or ``graph:ATTR[,ATTR...]`` for node attributes
  of the road graph. Text columns are one-hot encoded. Stored ``[N, C]``.
* **calendar events** (holidays, games): a CSV with ``start`` and ``end`` columns (and optionally
  ``kind``): a flag is 1 at the steps with ``start <= t < end``, one channel per kind. Stored
  ``[T, C]``.

Every CSV is read by :mod:`stgraph.io.csv` (:func:`~stgraph.io.csv.read_header`,
:func:`~stgraph.io.csv.read_rows`, :func:`~stgraph.io.read.read_series`), with its one delimiter rule.

Alignment (:func:`align_times`): each series step takes the latest covariate reading at or before
it, if that reading is at most ``tolerance`` old (default: the covariate file's own interval, so an
hourly reading holds for its hour); otherwise the step is missing (NaN, the null convention of
covariates). A file whose readings cover none of the series' steps cannot be aligned: that is an
error naming the file, its time range and the series' time range.

The aligned :class:`Source` objects are data: :meth:`stgraph.data.ForecastData.from_series`
(``covariates=``) scales them and gathers them into batches (:mod:`stgraph.data.covariates`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError, SeriesError, where
from .covariate_specs import id_like_columns, near_ids, parse_specs, to_series_clock, zone_of_file
from .csv import _timestamps, read_header, read_rows
from .read import read_series
from .series import iso, parse_interval
from .sniff import existing_file

__all__ = ["KINDS", "Source", "align_times", "read_covariates", "timed_source"]

log = logging.getLogger(__name__)

KINDS = ("shared", "sensor", "static", "event", "text")
_ID_NAMES = ("sensor_id", "sensor", "id", "node", "node_id")
#: whether a kind's values at the forecast steps may be used (known ahead) or are held at the last input step,
#: unless the spec declares it (``FILE:observed`` / ``FILE:forecast``, :mod:`stgraph.io.covariate_specs`)
_FLAG_KINDS_AHEAD = {"shared": True, "event": True, "static": True, "sensor": False, "text": False}


@dataclass
class Source:
    """One covariate source aligned to a series of ``T`` steps and ``N`` sensors.

    Attributes:
        name: the source's name (file stem, or ``graph``).
        kind: one of :data:`KINDS`.
        channels: ``C`` channel names.
        values: float32, ``[T, C]`` (shared, event), ``[T, N, C]`` (sensor) or ``[N, C]`` (static);
            NaN marks a missing value.
        origin: the file (or ``graph:...``) it came from.
        known: ``'forecast'`` / ``'observed'`` as the spec declared it, ``None``: the kind's default.
        table: for ``text`` sources, the :class:`~stgraph.io.reports.ReportTable` (``values`` is empty:
            :mod:`stgraph.data.reports` places the reports on the series' tokens).
        tolerance: for ``shared`` / ``sensor`` sources, how old a reading could be at a series step when it was
            aligned (:func:`align_times`); a request's covariates are aligned with it (:mod:`stgraph.serve`).
    """

    name: str
    kind: str
    channels: list
    values: np.ndarray
    origin: str = ""
    known: str | None = None
    table: object = None
    tolerance: np.timedelta64 | None = None

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def known_ahead(self) -> bool:
        """Whether the values at the forecast steps may be used: as declared, else the kind's default."""
        return self.known == "forecast" if self.known else _FLAG_KINDS_AHEAD[self.kind]


# ----------------------------------------------------------------------------------- alignment
def align_times(file_times: np.ndarray, series_times: np.ndarray, tolerance: np.timedelta64 | None,
                origin: str) -> np.ndarray:
    """Row of the covariate file each series step takes (``-1``: none within ``tolerance``).

    Args:
        file_times: ``[K]`` datetime64, strictly increasing (the covariate file's).
        series_times: ``[T]`` datetime64 (the series').
        tolerance: how old a reading may be; ``None``: the file's median interval (0 for one row).
        origin: the file, for messages.

    Returns:
        ``[T]`` int64 row indices into the file.

    Raises:
        SeriesError: the file's timestamps are not increasing, or no series step finds a reading.
    """
    ft = np.asarray(file_times).astype("datetime64[ns]").astype(np.int64)
    st = np.asarray(series_times).astype("datetime64[ns]").astype(np.int64)
    if ft.size == 0:
        raise SeriesError(f"{where(origin)}: no rows; expected one row per time step")
    bad = np.flatnonzero(np.diff(ft) <= 0)
    if bad.size:
        i = int(bad[0])
        raise SeriesError(f"{where(origin)}: timestamps must be strictly increasing, but row {i + 2} "
                          f"({iso(np.datetime64(int(ft[i + 1]), 'ns'))}) follows "
                          f"{iso(np.datetime64(int(ft[i]), 'ns'))}; sort the file and drop duplicates")
    tol = _tolerance_ns(ft, tolerance)
    row = np.searchsorted(ft, st, side="right") - 1
    ok = row >= 0
    ok[ok] = st[ok] - ft[row[ok]] <= tol
    if not ok.any():
        def span(t):
            return f"{iso(np.datetime64(int(t[0]), 'ns'))} .. {iso(np.datetime64(int(t[-1]), 'ns'))}"
        raise SeriesError(
            f"{where(origin)}: cannot be aligned to the series: its readings span {span(ft)} ({ft.size} rows) and "
            f"the series spans {span(st)} ({st.size} steps); no series step has a reading at most "
            f"{np.timedelta64(tol, 'ns').astype('timedelta64[s]')} before it. Expected a file covering the "
            f"series' time range (same clock, naive local time), or a larger tolerance "
            f"(data.covariate_tolerance)")
    return np.where(ok, row, -1)


def _tolerance_ns(ft: np.ndarray, tolerance: np.timedelta64 | None) -> int:
    """``tolerance`` in ns; ``None``: the median interval of the file's times ``ft`` (int64 ns; 0 for one row)."""
    if tolerance is None:
        return int(np.median(np.diff(ft))) if ft.size > 1 else 0
    return int(np.timedelta64(tolerance, "ns").astype(np.int64))


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` with NaN where ``rows == -1``; ``values`` is ``[K, ...]``."""
    out = values[np.maximum(rows, 0)].astype(np.float32)
    out[rows < 0] = np.nan
    return out


# ----------------------------------------------------------------------------------- reading
def _dict_rows(path: Path) -> list[dict]:
    """The rows after the header as ``{lower-case column: stripped cell}`` (a short row's missing
    cells are ``""``, a long row's extra cells are dropped)."""
    rows, _ = read_rows(path)
    if len(rows) < 2:
        raise DataFormatError(f"{where(path)}: a header but no rows; expected one row per sensor or event")
    header = [h.strip().lower() for h in rows[0]]
    return [{k: (r[i] if i < len(r) else "").strip() for i, k in enumerate(header)} for r in rows[1:]]


def _dates(cells: Sequence[str], column: str, path: Path) -> np.ndarray:
    """``[K]`` datetime64[ns] from ISO cells (rows from line 2 on); UTC offsets applied (naive UTC)."""
    return _timestamps(np.asarray(cells, dtype=object), np.arange(2, len(cells) + 2), column, path)


def _read_events(path: Path, series_times: np.ndarray, time_zone: str | None = None) -> Source:
    rows = _dict_rows(path)
    start = _dates([r.get("start", "") for r in rows], "start", path)
    end = _dates([r.get("end", "") for r in rows], "end", path)
    zone = zone_of_file(path, "start")
    if zone is not None:  # read as UTC (offsets applied), then on the series' clock
        start, end = to_series_clock((start, end), time_zone, zone, path)
    bad = np.flatnonzero(end <= start)
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(f"{where(path)}: row {i + 2}: end {iso(end[i])} is not after start {iso(start[i])}; "
                              f"an event covers start <= t < end")
    kinds = [r.get("kind") or "event" for r in rows]
    names = sorted(set(kinds))
    t = np.asarray(series_times).astype("datetime64[ns]")
    values = np.zeros((t.size, len(names)), dtype=np.float32)
    for s, e, k in zip(start, end, kinds):
        a, b = np.searchsorted(t, s, side="left"), np.searchsorted(t, e, side="left")
        values[a:b, names.index(k)] = 1.0
    if not values.any():
        raise SeriesError(f"{where(path)}: cannot be aligned to the series: none of its {len(rows)} events "
                          f"({iso(start.min())} .. {iso(end.max())}) falls in the series' time range "
                          f"{iso(t[0])} .. {iso(t[-1])}; expected events within it")
    return Source(path.stem, "event", names, values, str(path))


def _encode_columns(table: dict[str, list], origin: str, sensor_ids: list[str]) -> tuple[list[str], np.ndarray]:
    """Numbers stay, text is one-hot (``column=value``), empty is NaN; ``[N, C]`` float32."""
    names, cols = [], []
    for col, cells in table.items():
        cells = ["" if c is None else str(c).strip() for c in cells]
        try:
            cols.append(np.array([float(c) if c not in ("", "nan", "NA") else np.nan for c in cells], np.float32))
            names.append(col)
        except ValueError:
            for v in sorted({c for c in cells if c}):
                cols.append(np.array([1.0 if c == v else 0.0 for c in cells], np.float32))
                names.append(f"{col}={v}")
    if not cols:
        raise DataFormatError(f"{where(origin)}: no feature columns; expected e.g. lanes, speed_limit, road_class")
    return names, np.stack(cols, axis=1)


def _read_static_csv(path: Path, sensor_ids: list[str]) -> Source:
    rows = _dict_rows(path)
    key = next((k for k in _ID_NAMES if k in rows[0]), None)
    if key is None:
        raise DataFormatError(f"{where(path)}: no sensor column; expected one named {' / '.join(_ID_NAMES)} "
                              f"(static features) or a time column (series)")
    ids = [r[key] for r in rows]
    unknown = sorted(set(ids) - set(sensor_ids))
    if unknown:
        raise SeriesError(f"{where(path)}: {len(unknown)} sensor id(s) not in the series: {unknown[:10]}; expected "
                          f"the series' sensor ids (e.g. {sensor_ids[:3]})")
    pos = {s: i for i, s in enumerate(ids)}
    cols = [k for k in rows[0] if k != key]
    table = {c: [rows[pos[s]][c] if s in pos else "" for s in sensor_ids] for c in cols}
    names, values = _encode_columns(table, str(path), sensor_ids)
    return Source(path.stem, "static", names, values, str(path))


def _read_static_graph(spec: str, nx_graph, sensor_ids: list[str]) -> Source:
    attrs = [a.strip() for a in spec.split(":", 1)[1].split(",") if a.strip()]
    if nx_graph is None:
        raise ConfigError(f"covariates '{spec}': the run has no road graph (data.graph) to read node attributes from")
    if not attrs:
        raise ConfigError(f"covariates '{spec}': expected graph:ATTR[,ATTR...], e.g. graph:lanes,speed_limit")
    by_id = {str(d.get("sensor_id", v)): d for v, d in nx_graph.nodes(data=True)}
    missing = [a for a in attrs if not any(a in d for d in by_id.values())]
    if missing:
        have = sorted({k for d in by_id.values() for k in d})
        raise ConfigError(f"covariates '{spec}': no node has attribute(s) {missing}; the graph's nodes have {have}")
    table = {a: [by_id.get(s, {}).get(a, "") for s in sensor_ids] for a in attrs}
    names, values = _encode_columns(table, spec, sensor_ids)
    return Source("graph", "static", names, values, spec)


def _refuse_id_like(path: Path, columns, sensor_ids) -> None:
    """A file none of whose columns is a sensor of the series, but some look like sensor ids, is refused."""
    odd = id_like_columns(columns, sensor_ids)
    if not odd:
        return
    near = near_ids(odd, sensor_ids)
    hint = (f"; {', '.join(f'{k} would be sensor {v}' for k, v in list(near.items())[:3])} if written as an "
            f"integer: write the ids as the series does") if near else ""
    raise SeriesError(f"{where(path)}: columns {odd[:10]} look like sensor ids but match no sensor of the series "
                      f"(e.g. {list(sensor_ids)[:3]}){hint}. Read as a shared series (weather) every sensor would "
                      f"see those columns, known ahead of time; expected a per-sensor file headed by the series' "
                      f"sensor ids, or a shared file whose value columns are named (e.g. rain_mm_h)")


def _read_timed(path: Path, series, tolerance, time_zone: str | None = None) -> Source:
    cov = read_series(path, null_value="nan")
    times = cov.timestamps
    zone = zone_of_file(path)
    if zone is not None:
        times = to_series_clock(times, time_zone, zone, path)
    return timed_source(cov, times, series.timestamps, series.sensor_ids, tolerance, str(path), path.stem)[0]


def timed_source(cov, file_times: np.ndarray, series_times: np.ndarray, sensor_ids, tolerance, origin: str,
                 name: str) -> tuple[Source, np.ndarray]:
    """A covariate table read as a series (``cov``: ``[K, M, C]`` values, ``M`` columns as its sensor ids) as a
    ``shared`` or ``sensor`` :class:`Source` aligned to ``series_times`` (columns naming sensors of
    ``sensor_ids``: per-sensor; none: shared), and the file row each step took.

    Args:
        cov: the table (:class:`~stgraph.io.series.Series`, null NaN), e.g. :func:`~stgraph.io.read_series` of a
            file, or a request's table (:mod:`stgraph.serve.covariates`).
        file_times: ``[K]`` its timestamps on the series' clock.
        series_times: ``[T]`` the steps to align to; ``sensor_ids``: the series' ``N`` sensors.
        tolerance: as :func:`align_times`; ``origin``: the file, for messages; ``name``: the source's name.

    Returns:
        ``(source, rows)``: values ``[T, C]`` (shared) or ``[T, N, C]`` (sensor), NaN where no reading is
        within the tolerance; ``rows`` ``[T]`` as :func:`align_times`.

    Raises:
        SeriesError: the columns mix sensors and other names, look like sensor ids of no sensor
            (:func:`~stgraph.io.covariate_specs.id_like_columns`), or no step finds a reading.
    """
    ids = set(sensor_ids)
    named = [s for s in cov.sensor_ids if s in ids]
    names = [c if cov.num_channels == 1 else f"{c}:{ch}" for c in cov.sensor_ids for ch in cov.channels]
    rows = align_times(file_times, series_times, tolerance, origin)
    tol = np.timedelta64(_tolerance_ns(np.asarray(file_times).astype("datetime64[ns]").astype(np.int64), tolerance),
                         "ns")
    if not named:  # shared: every column (x channel) is one covariate channel
        _refuse_id_like(origin, cov.sensor_ids, sensor_ids)
        flat = cov.values.reshape(cov.num_steps, -1)
        return Source(name, "shared", names, _take(flat, rows), origin, tolerance=tol), rows
    unknown = [s for s in cov.sensor_ids if s not in ids]
    if unknown:
        raise SeriesError(f"{where(origin)}: columns {unknown[:10]} are not sensors of the series while "
                          f"{named[:3]} are; a per-sensor covariate file has one column per sensor of the series "
                          f"(a shared one has none)")
    full = np.full((cov.num_steps, len(sensor_ids), cov.num_channels), np.nan, dtype=np.float32)
    col = {s: i for i, s in enumerate(sensor_ids)}
    full[:, [col[s] for s in cov.sensor_ids], :] = cov.values
    return Source(name, "sensor", list(cov.channels), _take(full, rows), origin, tolerance=tol), rows


_KIND_TEXT = {"shared": "shared series", "sensor": "per-sensor series", "static": "static features",
              "event": "calendar events", "text": "text reports"}


def _read_reports(path: Path, time_zone, skip_bad_rows: bool) -> Source:
    from .reports import read_reports

    table = read_reports(path, skip_bad_rows)
    zone = zone_of_file(path)
    if zone is not None:
        table.times, table.ends = to_series_clock((table.times, table.ends), time_zone, zone, path)
    return Source(path.stem, "text", ["text"], np.zeros(0, np.float32), str(path), table=table)


def _read_one(path: Path, series, tol, time_zone, skip_bad_rows: bool = False) -> Source:
    from .reports import is_reports_header

    header = [h.strip().lower() for h in read_header(path)] if path.suffix.lower() in (".csv", ".txt") else []
    if is_reports_header(header):
        return _read_reports(path, time_zone, skip_bad_rows)
    if "start" in header and "end" in header:
        return _read_events(path, series.timestamps, time_zone)
    if header and any(k in header for k in _ID_NAMES) and not any(
            h in ("timestamp", "time", "date", "datetime") for h in header):
        return _read_static_csv(path, series.sensor_ids)
    return _read_timed(path, series, tol, time_zone)


def read_covariates(specs: Sequence[str], series, nx_graph=None, tolerance: str | None = None,
                    time_zone: str | None = None, skip_bad_rows: bool = False) -> list[Source]:
    """Read and align covariate sources to ``series`` (a :class:`~stgraph.io.series.Series`).

    Args:
        specs: file paths (CSV, HDF5, ``.npz``) or ``graph:ATTR[,ATTR...]``, each optionally with
            ``:observed`` / ``:forecast`` (whether its values at the forecast steps are known), or a
            ``.yaml`` listing them (:mod:`stgraph.io.covariate_specs`); the kind of each is told by its
            content (module docstring). Each source's kind and known-ahead choice is logged.
        series: the series they are aligned to (its timestamps and sensor ids).
        nx_graph: the road graph, for ``graph:`` sources.
        tolerance: how old a reading may be, e.g. ``'10min'``; ``None``: each file's own interval.
        time_zone: the zone of the series' clock (``data.time_zone``), to which files whose timestamps
            carry UTC offsets are converted; ``None``: such files are refused.
        skip_bad_rows: bad rows of a reports file are skipped and counted instead of refused.

    Returns:
        One :class:`Source` per file, aligned (``T`` = ``series.num_steps``, ``N`` = its sensors).

    Raises:
        MissingFileError / DataFormatError / SeriesError / ConfigError naming the file.
    """
    tol = None if tolerance in (None, "") else parse_interval(str(tolerance))
    out: list[Source] = []
    for spec, known, given in parse_specs(specs):
        if spec.startswith("graph:"):
            src = _read_static_graph(spec, nx_graph, series.sensor_ids)
        else:
            src = _read_one(existing_file(spec), series, tol, time_zone, skip_bad_rows)
        if known and src.kind == "static":
            raise ConfigError(f"covariates '{given}': static features do not change over time, so ':{known}' does "
                              f"not apply; give the file without it")
        if known == "forecast" and src.kind == "text":
            raise ConfigError(f"covariates '{given}': a report is observed from its publication time on, never "
                              f"known ahead; give the file without ':forecast'")
        src.known = known
        if any(s.name == src.name for s in out):
            raise ConfigError(f"covariates: two sources are named '{src.name}' ({given}); rename one file")
        log.info("covariate %s (%s): %s, %d channel(s), %s", src.name, given, _KIND_TEXT[src.kind],
                 src.num_channels, ("observed from each report's publication on" if src.kind == "text" else
                                    "known ahead (forecast)" if src.known_ahead else
                                    "observed (held at the last input step)") +
                 ("" if known or src.kind == "text" else " by default for its kind"))
        out.append(src)
    return out
