"""What ``stgraph serve`` computes, without the web framework: requests checked into input windows, forecasts
answered in data units, the newest forecast of a watched file, and the run's sensors and model facts.

Every bad request raises :class:`stgraph.errors.RequestError` naming the field at fault (the app turns it into
a JSON 4xx). Forecasts go through :func:`stgraph.forecast.forecast_batch`, the forward ``stgraph predict``
uses, so a request holding the same window gets the same numbers.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..data.fit import check_fits, parse_at
from ..errors import RequestError, StgraphError
from ..io.series import Series, format_interval, infer_interval, iso
from .covariates import parse_stamps

log = logging.getLogger(__name__)


class Engine:
    """A trained run ready to answer requests.

    Args:
        run: a :class:`~stgraph.training.run.Run` (:func:`stgraph.open_run`).
        data_path: a series file to forecast from for ``/forecast/latest`` (re-read when it changes).
        locations: CSV of sensor coordinates (default: the graph's, or ``graph_sensor_locations.csv`` beside
            the run's graph file).
        amp: precision of the forward, as :func:`stgraph.forecast.forecast_at`.
        tiles: map tile URL template for the page (:func:`stgraph.serve.facts.check_tiles`; default none).
    """

    def __init__(self, run, *, data_path: str | Path | None = None, locations: str | Path | None = None,
                 amp: str = "off", tiles: str | None = None) -> None:
        from .facts import check_tiles

        self.run, self.amp, self.tiles = run, amp, check_tiles(tiles)
        self.data_path = None if data_path is None else Path(data_path)
        self.ids = [str(s) for s in run.series.sensor_ids]
        self.pos = {s: i for i, s in enumerate(self.ids)}
        self.channels = list(run.series.channels)
        self.null = float(run.data.null_value)
        self.interval = infer_interval(run.series.timestamps)
        self.locations = locations
        self._latest: tuple | None = None  # (file version, series)
        self._lock = threading.Lock()
        self._model_info: dict | None = None

    # ------------------------------------------------------------------ requests -> series
    def series_from_json(self, timestamps: list, sensors: list, values) -> Series:
        """A request's readings as a :class:`Series` in the run's sensor order.

        Args:
            timestamps: ``T`` ISO timestamps, one run interval apart, oldest first.
            sensors: ``N`` sensor ids, each of the run's exactly once (any order).
            values: ``[T][N]`` (one channel) or ``[T][N][C]`` numbers; ``None`` is a missing reading.

        Raises:
            RequestError: naming ``timestamps[i]``, ``sensors`` or ``values`` and what was wrong.
        """
        sensors = [str(s) for s in sensors]
        order = self._order(sensors)
        try:
            arr = np.array(values, dtype=np.float64)  # None -> NaN
        except (TypeError, ValueError) as e:
            raise RequestError("values", f"not a rectangular array of numbers and nulls ({e})") from None
        T, C = len(timestamps), len(self.channels)
        if arr.ndim == 2 and C == 1:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape != (T, len(sensors), C):
            raise RequestError("values", f"shape {list(arr.shape)}; expected [T={T}, N={len(sensors)}]"
                                         f"{'' if C > 1 else ' or [T, N, 1]'} with C={C} channel(s) "
                                         f"{self.channels} (T timestamps, N sensors)")
        if np.isinf(arr).any():
            t, n, _ = np.argwhere(np.isinf(arr))[0]
            raise RequestError(f"values[{t}][{n}]", "infinite; send a number, or null for a missing reading")
        stamps = self._timestamps(timestamps)
        arr[np.isnan(arr)] = self.null
        return self._series(arr[:, order], stamps, "the request")

    def series_from_csv(self, body: bytes) -> Series:
        """A CSV body (the layout ``stgraph`` reads: a timestamp column, one column per sensor) as a
        :class:`Series` in the run's sensor order, read by stgraph's one CSV reader (:func:`stgraph.io.read_series`).

        Raises:
            RequestError: ``body`` (unreadable CSV), ``sensors``, ``timestamps[i]`` or ``values``.
        """
        from ..io import read_series

        d = self.run.config.data
        with tempfile.TemporaryDirectory(prefix="stgraph-serve-") as tmp:
            path = Path(tmp) / "request.csv"
            path.write_bytes(body)
            try:
                s = read_series(path, null_value=d.null_value, start=d.start, freq=d.freq)
            except (StgraphError, ValueError, OSError) as e:
                raise RequestError("body", str(e).replace(str(path), "the CSV body")) from None
        if list(s.channels) != self.channels and not len(s.channels) == len(self.channels) == 1:
            raise RequestError("body", f"channels {list(s.channels)}; the run's are {self.channels}")
        order = self._order([str(i) for i in s.sensor_ids])
        self._timestamps([iso(t) for t in s.timestamps])
        values = s.values[:, order]
        values[~np.isfinite(values)] = self.null  # an empty cell: the run's missing reading
        return self._series(values, s.timestamps, "the CSV body")

    def _order(self, sensors: list[str]) -> list[int]:
        """Positions in ``sensors`` of the run's sensors, in the run's order (unknown / missing / repeated ids
        refused, naming them)."""
        if len(set(sensors)) != len(sensors):
            twice = sorted({s for s in sensors if sensors.count(s) > 1})
            raise RequestError("sensors", f"given more than once: {twice[:20]}")
        unknown = [s for s in sensors if s not in self.pos]
        if unknown:
            raise RequestError("sensors", f"{len(unknown)} unknown sensor(s) {unknown[:20]}; the run has "
                                          f"{len(self.ids)} sensors (GET /sensors lists them)")
        given = set(sensors)
        missing = [s for s in self.ids if s not in given]
        if missing:
            raise RequestError("sensors", f"{len(missing)} of the run's sensors missing: {missing[:20]}; send every "
                                          f"sensor (null readings for the ones without data)")
        where = {s: i for i, s in enumerate(sensors)}
        return [where[s] for s in self.ids]

    def _timestamps(self, timestamps: list) -> np.ndarray:
        """``[T]`` datetime64[ns]: ISO stamps, at least ``input_len`` of them, one run interval apart."""
        need = self.run.data.input_len
        if len(timestamps) < need:
            raise RequestError("timestamps", f"{len(timestamps)} step(s); the run needs the latest {need} "
                                             f"readings (one every {format_interval(self.interval)})")
        out = parse_stamps(timestamps, "timestamps", ordered=False)  # checked below against the run's interval
        steps = np.diff(out)
        bad = np.flatnonzero(steps != self.interval)
        if len(bad):
            i = int(bad[0]) + 1
            what = "not after" if steps[i - 1] <= np.timedelta64(0) else f"{format_interval(steps[i - 1])} after"
            raise RequestError(f"timestamps[{i}]", f"{iso(out[i])} is {what} timestamps[{i - 1}] "
                                                   f"({iso(out[i - 1])}); expected oldest first, one every "
                                                   f"{format_interval(self.interval)} (the run's interval)")
        return out

    def _series(self, values: np.ndarray, stamps: np.ndarray, source: str) -> Series:
        try:
            s = Series(values.astype(np.float32), stamps, list(self.ids), list(self.channels), self.null, source)
            check_fits(s, self.run.trained_on)
        except StgraphError as e:
            raise RequestError("values", str(e)) from None
        return s

    # ------------------------------------------------------------------ series -> forecast
    def window(self, series: Series, at: str | None = None, covariates: dict | None = None):
        """``(x [1, T_in, N, C_in], covariates, future [T_out], issued_at)``: the model input ending at ``at``
        (default the last step), as :func:`stgraph.forecast.forecast_at` builds it. ``covariates``: a request's
        tables for a run trained with covariate files (:func:`stgraph.serve.covariates.posted_exogenous`);
        ``None``: the run's own files, aligned to its own series (which ``series`` must then be)."""
        d, exo = self.run.data, None
        if d.exogenous is None and covariates:
            raise RequestError("covariates", "the run was trained without covariate files; send none")
        static = d.exogenous is not None and not d.exogenous.text_sources and all(
            s.kind == "static" for s in d.exogenous.sources)  # nothing to send: the run's own features
        if d.exogenous is not None and (covariates is not None or static):
            from .covariates import posted_exogenous
            exo = posted_exogenous(d, covariates, series, self.interval, self.run)
        elif d.exogenous is not None:
            ts = series.timestamps
            if len(ts) != d.num_steps or ts[0] != d.timestamps[0] or ts[-1] != d.timestamps[-1]:
                raise RequestError("covariates", "this run takes covariate files: send them with the readings as "
                                                 "JSON 'covariates' ({name: {timestamps, columns, values}}; a CSV "
                                                 "body cannot carry them), or GET /forecast/latest, which forecasts "
                                                 "from the run's series (or --data with the same timestamps)")
        try:
            x, cov, future = self.run.data.window_at(series, at, exogenous=exo)
        except StgraphError as e:
            raise RequestError("at" if at is not None else "values", str(e)) from None
        return x, cov, future, series.timestamps[-1] if at is None else parse_at(at)

    def forward(self, x, cov) -> tuple:
        """One forward of stacked windows ``x [B, T_in, N, C_in]``: ``(mean, std, q05, q95)`` ``[B, T_out, N,
        C_out]`` (:func:`stgraph.forecast.forecast_batch`)."""
        from ..forecast import forecast_batch

        return forecast_batch(self.run, x, cov, self.amp)

    def answer(self, arrays: tuple, future: np.ndarray, issued) -> dict:
        """The answer of one forecast: ``forecast`` (and ``std``, ``q05``, ``q50``, ``q95`` for a probabilistic run)
        numpy ``[T_out, N, C_out]`` in data units, with the step timestamps, sensor ids and channel names
        (:func:`dumps` writes it as JSON)."""
        mean, std, q05, q95 = arrays
        out = {"issued_at": iso(issued), "steps": [iso(t) for t in future], "sensors": self.ids,
               "channels": [self.channels[c] for c in self.run.data.target_channels],
               "forecast": np.ascontiguousarray(mean), "probabilistic": std is not None,
               "null_convention": self.run.null_convention()}
        if std is not None:
            out.update({k: np.ascontiguousarray(v) for k, v in (("std", std), ("q05", q05), ("q50", mean),
                                                                ("q95", q95))})
        return out

    # ------------------------------------------------------------------ the watched file
    def latest_series(self) -> tuple[tuple, Series]:
        """``(version, series)`` of ``data_path``, re-read only when its size or modification time changed."""
        if self.data_path is None:
            raise RequestError("data", "the server was started without --data FILE; POST /forecast instead", 404)
        try:
            st = os.stat(self.data_path)
        except OSError as e:
            raise RequestError("data", f"'{self.data_path}' cannot be read ({e.strerror})", 503) from None
        version = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if self._latest is None or self._latest[0] != version:
                from ..io import read_series
                d = self.run.config.data
                try:
                    s = read_series(self.data_path, null_value=d.null_value, start=d.start, freq=d.freq)
                    check_fits(s, self.run.trained_on)
                except (StgraphError, OSError) as e:
                    raise RequestError("data", str(e), 503) from None
                log.info(f"read {self.data_path} ({len(s.timestamps)} steps, last {iso(s.timestamps[-1])})")
                self._latest = (version, s)
            return self._latest

    def series_now(self) -> Series:
        """The series forecasts are issued from without a request: ``data_path`` as it is now, else the run's."""
        return self.latest_series()[1] if self.data_path is not None else self.run.series

    def context(self, series: Series, issued) -> dict:
        """``history`` ``[T_in][N][C_out]`` (the input window's readings of the target channels), its
        ``history_steps``, and ``truth`` ``[T_out][N][C_out]`` (the readings of the forecast steps the series
        already has); missing or not yet read readings as ``None``."""
        from ..metrics import valid_mask

        d = self.run.data
        ts, chans = series.timestamps, list(d.target_channels)
        end = int(np.searchsorted(ts, np.datetime64(issued, "ns"), side="right")) - 1
        past = series.values[end - d.input_len + 1:end + 1][..., chans]
        later = series.values[end + 1:end + 1 + d.horizon][..., chans]

        def cells(a):
            a = a.astype(np.float64)
            a[~valid_mask(a, float(d.null_value))] = np.nan
            return [[[None if np.isnan(v) else float(v) for v in row] for row in step] for step in a]

        truth = cells(later) + [[[None] * len(chans)] * len(self.ids)] * (d.horizon - len(later))
        return {"history": cells(past), "history_steps": [iso(t) for t in ts[end - d.input_len + 1:end + 1]],
                "truth": truth}

    def latest(self, at: str | None = None) -> dict:
        """The answer of ``GET /forecast/latest`` computed here, without the batching queue (``stgraph report``)."""
        series = self.series_now()
        x, cov, future, issued = self.window(series, at)
        arrays = tuple(None if a is None else a[0] for a in self.forward(x, cov))
        return {**self.answer(arrays, future, issued), **self.context(series, issued)}

    # ------------------------------------------------------------------ facts
    def sensors(self) -> dict:
        """``{"sensors": [{id, lat, lon, in_degree, out_degree}], "edges": [[from, to], ...], "tiles"}`` (positions in
        the sensor list; self loops left out; ``lat``/``lon`` ``None`` when no coordinates are known; ``tiles`` the
        map tile URL template or ``None``)."""
        from .facts import sensor_table

        return {**sensor_table(self.run, self.locations), "tiles": self.tiles}

    def model(self) -> dict:
        """The model, its config, data fingerprint, when it was trained and its test MAE per horizon."""
        if self._model_info is None:
            from .facts import model_facts
            self._model_info = model_facts(self.run)
        return self._model_info


def dumps(obj) -> bytes:
    """JSON bytes of an answer, numpy arrays as nested lists (float32 values as their shortest text, which reads
    back to the same float32). With orjson (the ``serve`` extra) in about a tenth of the time of :mod:`json`
    (1 ms against 9 for stgt's five ``[12, 207, 1]`` arrays); NaN as ``null``."""
    try:
        import orjson
    except ImportError:
        return json.dumps(obj, separators=(",", ":"), default=plain).encode()
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def plain(obj):
    """``json.dumps``' ``default``: numpy arrays and scalars as lists and numbers."""
    if isinstance(obj, np.ndarray) and obj.dtype.kind == "f" and not np.isfinite(obj).all():
        return np.where(np.isfinite(obj), obj, None).tolist()  # NaN as null
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
