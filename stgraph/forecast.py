"""Forecasts of a trained run from any point of a series, written as CSV or HDF5.

:func:`forecast_at` takes the ``input_len`` steps of the run's series that end
at ``at`` (default: the last step), and returns the next ``horizon`` steps for
every sensor (the point forecast; for probabilistic runs also the standard deviation and the
5% / 95% quantiles of the run's distribution, :mod:`stgraph.distributions`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cells import safe_cell
from .data.fit import check_fits, parse_at
from .distributions import interval, point
from .errors import ConfigError, SeriesError
from .runtime import autocast_context


@dataclass
class Forecast:
    """A forecast issued at ``issued_at`` (the last observed step).

    Attributes:
        mean: ``[T_out, N, C_out]`` forecast in data units (a distribution's median: its mean for
            the Normal).
        std: ``[T_out, N, C_out]`` standard deviation, or ``None`` for point models.
        q05, q95: ``[T_out, N, C_out]`` the central 90% band, or ``None`` for point models.
        timestamps: ``[T_out]`` the forecast steps' timestamps.
        sensor_ids: ``N`` ids; ``channels``: ``C_out`` target channel names.
    """

    mean: np.ndarray
    std: np.ndarray | None
    timestamps: np.ndarray
    sensor_ids: list[str]
    channels: list[str]
    issued_at: np.datetime64
    q05: np.ndarray | None = None
    q95: np.ndarray | None = None


def forecast_at(run, at: str | None = None, series=None, amp: str = "off") -> Forecast:
    """Forecast the ``horizon`` steps after ``at`` from ``run`` (under ``torch.inference_mode``).

    Args:
        run: a :class:`~stgraph.training.run.Run` (e.g. :meth:`~stgraph.training.run.Run.open`).
        at: ISO timestamp of the last observed step; ``None``: the series' last step.
        series: a :class:`~stgraph.io.series.Series` ``[T, N, C]`` with the run's sensors and
            channels (e.g. the latest readings); ``None``: the series the run was trained on.
            ``T`` may be as short as ``input_len``.
        amp: ``'off'`` (float32), ``'bf16'`` (bfloat16 autocast: about 2x faster on a CPU with
            AVX512-BF16 or AMX, at a cost in accuracy measured in ``benchmarks/results/inference.md``)
            or ``'auto'`` (bf16 on CUDA only), as ``train.amp``.

    Returns:
        a :class:`Forecast` with ``mean`` (and ``std``) ``[T_out, N, C_out]`` in data units.

    Raises:
        ConfigError: ``at`` is not a timestamp or has a UTC offset (:func:`stgraph.data.fit.parse_at`).
        SeriesError: ``series`` does not fit the run (interval, sensors, channels:
            :func:`stgraph.data.fit.check_fits`), ``at`` is not one of its steps, or the input window ending there
            crosses a gap in time or holds no reading (:func:`stgraph.data.fit.check_window`).
    """
    data = run.data
    if series is None:
        series = run.series
    else:
        check_fits(series, run.trained_on)
    try:
        x, cov, future = data.window_at(series, at)
    except (ConfigError, SeriesError) as e:
        raise type(e)(f"at={e}") from None
    mean, std, q05, q95 = forecast_batch(run, x, cov, amp)
    chans = [series.channels[c] for c in data.target_channels]
    issued = series.timestamps[-1] if at is None else parse_at(at)
    return Forecast(mean[0], None if std is None else std[0], future, list(series.sensor_ids), chans, issued,
                    None if q05 is None else q05[0], None if q95 is None else q95[0])


def forecast_batch(run, x: torch.Tensor, cov: dict, amp: str = "off"):
    """One forward of ``run``'s model on a batch of input windows, in data units (under ``torch.inference_mode``).

    Args:
        run: a :class:`~stgraph.training.run.Run`.
        x: ``[B, T_in, N, C_in]`` scaled inputs (:meth:`stgraph.data.ForecastData.window_at`, stacked).
        cov: the calendar (and covariate) tensors of those windows, batch first (``tod_in [B, T_in]``, ...).
        amp: as :func:`forecast_at`.

    Returns:
        ``(mean, std, q05, q95)`` numpy ``[B, T_out, N, C_out]`` float32; ``std``/``q05``/``q95`` ``None`` for a
        point model.
    """
    device = run.forecaster.device
    run.model.eval()
    with torch.inference_mode():
        with autocast_context(device, amp)():
            from .data.batches import each_tensor
            cov = {k: each_tensor(v, lambda t: t.to(device)) for k, v in cov.items()}  # text reports: a dict
            out = run.model(x.to(device), run.forecaster.graph_for(cov), cov)  # a dynamic graph: each window's
        out = run.forecaster.in_units(out)  # clipped at 0 with data.nonnegative
        if isinstance(out, torch.distributions.Distribution):
            lo, hi = (b.float().cpu().numpy() for b in interval(out, 0.9))
            return point(out).float().cpu().numpy(), out.stddev.float().cpu().numpy(), lo, hi
        return out.float().cpu().numpy(), None, None, None


FORECAST_SUFFIXES = (".csv", ".h5", ".hdf5")


def check_forecast_path(path: str | Path, force: bool = False) -> Path:
    """``path`` must end in .csv, .h5 or .hdf5, not be a folder, and not be a file stgraph did not write (unless
    ``force``: :func:`stgraph.files.check_replaceable`); checked before anything is created."""
    from .files import check_replaceable

    path = Path(path)
    if path.suffix.lower() not in FORECAST_SUFFIXES:
        raise ConfigError(f"out='{path}': expected a .csv or .h5 file (suffix {path.suffix or 'none'!r})")
    if path.is_dir():
        raise ConfigError(f"out='{path}' is a folder; expected a .csv or .h5 file name")
    check_replaceable([path], force=force)
    return path


def write_forecast(fc: Forecast, path: str | Path, force: bool = False) -> Path:
    """Write ``fc`` as long-format CSV (timestamp, sensor_id, horizon, channel, forecast[, std, q05, q95]) or HDF5.
    In the CSV a sensor id or channel name beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return (or ``'``) gets a leading ``'`` so that a spreadsheet shows it as text instead of running it
    as a formula (:func:`stgraph.cells.safe_cell`; numbers are untouched, stgraph's CSV reader removes the
    ``'``). Written atomically: an interrupted write leaves the previous file, never half of one. A file
    already at ``path`` is replaced only if stgraph wrote it (or with ``force``), and the new one is recorded as
    stgraph's."""
    from .files import record_written

    path = check_forecast_path(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_forecast(fc, path)
    record_written([path])
    return path


def _write_forecast(fc: Forecast, path: Path) -> None:
    from .files import atomic_open, atomic_path
    from .io.series import iso

    T, N, C = fc.mean.shape
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            f["forecast"] = fc.mean
            if fc.std is not None:
                f["std"] = fc.std
            if fc.q05 is not None:
                f["q05"], f["q95"] = fc.q05, fc.q95
            f["timestamps"] = fc.timestamps.astype("datetime64[ns]").astype(np.int64)
            f["sensor_ids"] = np.array(fc.sensor_ids, dtype=h5py.string_dtype())
            f.attrs["channels"] = fc.channels
            f.attrs["issued_at"] = iso(fc.issued_at)
            f.attrs["layout"] = "forecast [T_out, N, C_out]; timestamps int64 ns"
        return
    stamps = np.datetime_as_string(fc.timestamps, unit="s")
    ids = [safe_cell(str(s)) for s in fc.sensor_ids]  # no cell a spreadsheet runs as a formula (stgraph.cells)
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        band = fc.q05 is not None
        w.writerow(["timestamp", "sensor_id", "horizon", "channel", "forecast"] + (["std"] if fc.std is not None else [])
                   + (["q05", "q95"] if band else []))
        for t in range(T):
            for c in range(C):
                cols = [np.full(N, stamps[t]), ids, np.full(N, t + 1), np.full(N, safe_cell(str(fc.channels[c]))),
                        np.round(fc.mean[t, :, c], 4)]
                if fc.std is not None:
                    cols.append(np.round(fc.std[t, :, c], 4))
                if band:
                    cols += [np.round(fc.q05[t, :, c], 4), np.round(fc.q95[t, :, c], 4)]
                w.writerows(zip(*cols))
