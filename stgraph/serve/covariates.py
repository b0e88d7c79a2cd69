"""Covariates posted with a forecast request (``POST /forecast``, JSON ``covariates``) for a run trained with
covariate files.

A request names each source of the run by its name (the file's stem) and gives its table in the layout of the
covariate CSV: ``{"timestamps": [K], "columns": [M], "values": [K][M]}`` (``[K][M][C]`` for a per-sensor source
of ``C`` channels), ``null`` for a missing value. Columns are the sensor ids of a per-sensor source (sensors not
named are missing throughout, as in the file) and the series names of a shared one (weather) or the kinds of a
calendar-events one (0/1 flags, one row per step). The rows must cover the input steps and, for a source known
ahead (``FILE:forecast``, and by default shared series and events), the ``horizon`` steps after them.
Static features are the run's own (not posted). A reports source (text reports) is posted as
``{"reports": [{"timestamp", "text", "sensor"?, "lat"?, "lon"?, "end"?, "duration"?}, ...]}``: the rows of its
reports file (:func:`stgraph.io.reports.reports_from_records`), placed on the request's steps as the file is on
the run's series (:class:`stgraph.data.reports.ReportTokens`, the run's ``data.report_*``); at the forecast steps
only those published by the last input step count, as always.

The table goes through what reads a covariate file (:func:`stgraph.io.covariates.timed_source`: the same
alignment, with the tolerance the run's file was aligned with; events with none: a row per step) and the
run's scaling (:class:`stgraph.data.covariates.Exogenous` with its statistics), so a request holding a window's
covariate rows gets the numbers :func:`stgraph.forecast.forecast_at` gives for that window.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..data.fit import parse_at
from ..errors import RequestError, StgraphError
from ..io.series import Series, format_interval, iso

log = logging.getLogger(__name__)

__all__ = ["posted_exogenous", "parse_stamps"]


def parse_stamps(timestamps: list, field: str, ordered: bool = True) -> np.ndarray:
    """``[K]`` datetime64[ns] of ISO ``timestamps`` (no UTC offset), strictly increasing (unless not ``ordered``).

    Raises:
        RequestError: naming ``field[i]``, the first stamp that is not a timestamp or not after the one before.
    """
    out = np.empty(len(timestamps), dtype="datetime64[ns]")
    for i, t in enumerate(timestamps):
        try:
            out[i] = parse_at(str(t))
        except StgraphError as e:
            raise RequestError(f"{field}[{i}]", str(e)) from None
    bad = np.flatnonzero(np.diff(out) <= np.timedelta64(0)) if ordered else []
    if len(bad):
        i = int(bad[0]) + 1
        raise RequestError(f"{field}[{i}]", f"{iso(out[i])} is not after {field}[{i - 1}] ({iso(out[i - 1])}); "
                                            f"expected oldest first")
    return out


def posted_exogenous(data, posted: dict | None, series: Series, step: np.timedelta64, run=None):
    """The :class:`~stgraph.data.covariates.Exogenous` of a request: the run's covariate sources taken from
    ``posted`` (static ones from the run), aligned to ``series``' steps and the ``horizon`` steps after its
    last one (``step`` apart), scaled with the run's statistics (:meth:`stgraph.data.ForecastData.window_at`'s
    ``exogenous``).

    Args:
        data: the run's :class:`~stgraph.data.ForecastData` (with :attr:`exogenous`).
        posted: ``{source name: {"timestamps", "columns", "values"}}`` (plain lists, ``None`` for null).
        series: the request's readings (the input window ends at its last step).
        step: the run's interval.
        run: the run (its graph and ``data.report_*`` settings, for a reports source).

    Raises:
        RequestError: naming ``covariates`` or ``covariates.<name>[.timestamps[i] | .columns[j] | .values[i][j]]``:
            a source missing or not the run's, rows missing at an input (or known-ahead horizon) step, unknown or
            missing columns, a wrong shape, an infinite value.
    """
    from ..data.covariates import Exogenous

    exo = data.exogenous
    names = [s.name for s in exo.sources + exo.text_sources]
    posted = dict(posted or {})
    for name in posted:
        if name not in names:
            raise RequestError(f"covariates.{name}", f"not a covariate source of the run; its sources are {names}")
    times = np.concatenate([series.timestamps, series.timestamps[-1] + step * np.arange(1, data.horizon + 1)])
    sources = []
    for src in exo.sources:
        if src.kind == "static":
            if src.name in posted:
                raise RequestError(f"covariates.{src.name}", "static features (per sensor, not over time) are the "
                                                             "run's own; leave them out of the request")
            sources.append(src)
            continue
        if src.name not in posted:
            timed = [s.name for s in exo.sources if s.kind != "static"]
            raise RequestError(f"covariates.{src.name}" if posted else "covariates",
                               f"source '{src.name}' missing: the run was trained with covariate files {timed}; send "
                               f"each as {{timestamps, columns, values}} covering the {data.input_len} input steps"
                               f"{_ahead_note(exo.sources, data.horizon)}")
        sources.append(_posted_source(src, posted[src.name], times, series, data))
    for src in exo.text_sources:
        if src.name not in posted:
            raise RequestError(f"covariates.{src.name}", f"source '{src.name}' (text reports) missing: send "
                                                         f"{{reports: [{{timestamp, text, sensor ...}}]}}, [] for none")
        sources.append(_posted_reports(src, posted[src.name], times, series, run))
    try:
        return Exogenous(sources, series.num_nodes, stats=exo.state_dict(), device=data.device)
    except StgraphError as e:
        raise RequestError("covariates", str(e)) from None


def _posted_reports(src, table, times: np.ndarray, series: Series, run):
    """A posted ``{reports: [...]}`` as the run's reports source ``src``, placed on ``times`` (``[T + horizon]``)."""
    from ..data.reports import ReportOptions, ReportTokens
    from ..errors import BadRowError
    from ..io.reports import reports_from_records

    field = f"covariates.{src.name}"
    if not isinstance(table, dict) or set(table) != {"reports"} or not isinstance(table["reports"], list):
        raise RequestError(field, "a reports source: expected {reports: [{timestamp, text, sensor ...}]}")
    on = Series(np.zeros((len(times), series.num_nodes, 1), np.float32), times, list(series.sensor_ids), ["r"], 0.0)
    try:
        reports = reports_from_records(table["reports"], f"{field}.reports")
        tokens = ReportTokens(reports, on, run.prepared.nx_graph, run.graph, ReportOptions.of(run.config.data),
                              quiet=True)
    except BadRowError as e:  # a record's index (reports_from_records, and ReportTokens' lines are the indices)
        raise RequestError(f"{field}.reports[{e.row}]", e.reason) from None
    except StgraphError as e:
        raise RequestError(field, str(e)) from None
    return dataclasses.replace(src, table=tokens)


def _ahead_note(sources, horizon: int) -> str:
    ahead = [s.name for s in sources if s.kind != "static" and s.known_ahead]
    return f", and for {ahead} (known ahead) the {horizon} forecast steps after them" if ahead else ""


def _posted_source(src, table, times: np.ndarray, series: Series, data):
    """One posted table as the run's source ``src`` aligned to ``times`` (``[T + horizon]``)."""
    from ..io.covariates import timed_source

    field = f"covariates.{src.name}"
    if not isinstance(table, dict) or not {"timestamps", "columns", "values"} <= set(table):
        raise RequestError(field, "expected {timestamps: [K], columns: [M], values: [K][M]}")
    stamps = parse_stamps(table["timestamps"], f"{field}.timestamps")
    columns = [str(c) for c in table["columns"]]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise RequestError(f"{field}.columns", f"given more than once: {twice[:10]}")
    values = _values(table["values"], len(stamps), columns, src, field)
    if src.kind == "sensor":
        known = set(series.sensor_ids)
        bad = next((j for j, c in enumerate(columns) if c not in known), None)
        if bad is not None:
            raise RequestError(f"{field}.columns[{bad}]", f"'{columns[bad]}' is not a sensor of the run; a per-sensor "
                                                          f"source's columns are sensor ids (GET /sensors)")
        channels = list(src.channels)
    else:
        bad = next((j for j, c in enumerate(columns) if c not in src.channels), None)
        if bad is not None:
            raise RequestError(f"{field}.columns[{bad}]", f"'{columns[bad]}' is not a column of the run's source "
                                                          f"'{src.name}'; expected {list(src.channels)}")
        missing = [c for c in src.channels if c not in columns]
        if missing:
            raise RequestError(f"{field}.columns", f"{missing} missing; the run's source '{src.name}' has "
                                                   f"{list(src.channels)}")
        values, columns, channels = values[:, [columns.index(c) for c in src.channels]], list(src.channels), ["value"]
    tol = np.timedelta64(0, "ns") if src.kind == "event" else src.tolerance
    try:
        table_series = Series(values, stamps, columns, channels, float("nan"), field)
        got, rows = timed_source(table_series, stamps, times, series.sensor_ids, tol, field, src.name)
    except StgraphError as e:
        raise RequestError(f"{field}.timestamps", str(e)) from None
    _check_covered(rows, times, series, data, src, tol, field)
    return dataclasses.replace(got, kind=src.kind, known=src.known)


def _values(values, K: int, columns: list[str], src, field: str) -> np.ndarray:
    """``[K, M, C]`` float32 (null: NaN) of a posted table; a wrong shape or an infinite value refused."""
    try:
        arr = np.array(values, dtype=np.float64)  # None -> NaN
    except (TypeError, ValueError) as e:
        raise RequestError(f"{field}.values", f"not a rectangular array of numbers and nulls ({e})") from None
    C = src.num_channels if src.kind == "sensor" else 1
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape != (K, len(columns), C):
        raise RequestError(f"{field}.values", f"shape {list(arr.shape)}; expected [K={K}, M={len(columns)}]"
                                              f"{f'[C={C}]' if C > 1 else ''} (K timestamps, M columns)")
    if np.isinf(arr).any():
        i, j, _ = np.argwhere(np.isinf(arr))[0]
        raise RequestError(f"{field}.values[{i}][{j}]", "infinite; send a number, or null for a missing value")
    return arr.astype(np.float32)


def _check_covered(rows: np.ndarray, times: np.ndarray, series: Series, data, src, tol, field: str) -> None:
    """Every input step (and, known ahead, every horizon step) takes a row within the tolerance."""
    T = len(series.timestamps)
    need = np.arange(T - data.input_len, T + (data.horizon if src.known_ahead else 0))
    gap = need[rows[need] < 0]
    if not len(gap):
        return
    k = int(gap[0])
    what = "input" if k < T else "forecast"
    hold = "a row at that time" if tol == np.timedelta64(0) else f"a row at most {format_interval(tol)} before it"
    ahead = ", the forecast steps too: the source is known ahead" if src.known_ahead else ""
    span = f"{iso(times[need[0]])} .. {iso(times[need[-1]])}"
    raise RequestError(f"{field}.timestamps", f"no row for the {what} step {iso(times[k])}: expected {hold} (the "
                                              f"rows must cover {span}{ahead})")
