"""Synthetic weather and incidents on the synthetic road network, written as covariate files.

* **Rain** (:func:`rain_series`): episodes of 1-4 hours (about ``episodes_per_day`` a day) whose
  intensity (mm/h) rises and falls smoothly; :func:`apply_rain` slows every sensor by
  ``s_i * (1 - exp(-rain / 4 mm/h))`` of its speed, ``s_i`` drawn in ``[0.2, 0.35]`` per sensor
  (heavy rain of 8 mm/h costs 17-30 %). Network-wide: every sensor feels the same rain.
* **Incidents**: the simulator's own (:func:`stgraph.synth.simulate_speeds`, capacity drops whose
  queue spreads upstream); the covariate is a flag per sensor, 1 at the incident's sensor while it
  lasts (not at the upstream sensors its queue reaches: that is for the model to learn).

:func:`write_events` writes the synthetic dataset (:func:`stgraph.synth.write_synthetic`), the series
with the rain's slowdown, ``rain.csv`` (``timestamp,rain_mm_h``) and ``incidents.csv`` (``timestamp``
and one column per sensor); both are covariate files for ``stgraph train --covariates``. With ``reports``
also ``reports.csv``, text reports of the incidents, planned events near a venue (whose crowds slow the
series) and noise (:mod:`stgraph.synth.reports`).
Same arguments and seed, same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_open
from ..io.series import Series, iso, null_mask


def rain_series(timestamps: np.ndarray, seed: int = 0, episodes_per_day: float = 1.5) -> np.ndarray:
    """``[T]`` float32 rain intensity (mm/h, 0 when dry) at ``[T]`` datetime64 ``timestamps``.

    Episodes start at random times (Poisson, ``episodes_per_day``), last 1-4 hours, peak at a
    lognormal intensity (median 5 mm/h) and rise/fall as ``sin(pi * u) ** 0.5`` over their span.
    """
    t = np.asarray(timestamps).astype("datetime64[ns]").astype(np.int64) / 3.6e12  # hours
    rng = np.random.default_rng([int(seed), 1717])
    days = max((t[-1] - t[0]) / 24.0, 1e-9)
    n = int(rng.poisson(episodes_per_day * days))
    starts = rng.uniform(t[0], t[-1], size=n)
    lengths = rng.uniform(1.0, 4.0, size=n)
    peaks = rng.lognormal(np.log(5.0), 0.5, size=n)
    rain = np.zeros(t.size, dtype=np.float64)
    for s, L, p in zip(starts, lengths, peaks):
        a, b = np.searchsorted(t, s), np.searchsorted(t, s + L)
        u = (t[a:b] - s) / L
        rain[a:b] += p * np.sqrt(np.sin(np.pi * u))
    return rain.astype(np.float32)


def apply_rain(series: Series, rain: np.ndarray, seed: int = 0) -> Series:
    """The series with rain's slowdown: readings (not nulls) times ``1 - s_i * (1 - exp(-rain / 4))``.

    Args:
        series: speeds ``[T, N, C]``.
        rain: ``[T]`` mm/h (:func:`rain_series`).
        seed: draws the per-sensor sensitivity ``s_i`` in ``[0.2, 0.35]``.

    Returns:
        A new :class:`Series` (same timestamps, sensors, channels, null value).
    """
    rng = np.random.default_rng([int(seed), 1718])
    sens = rng.uniform(0.2, 0.35, size=series.num_nodes).astype(np.float32)
    factor = 1.0 - sens[None, :] * (1.0 - np.exp(-np.asarray(rain, np.float32) / 4.0))[:, None]  # [T, N]
    values = series.values * factor[:, :, None]
    values = np.where(null_mask(series.values, series.null_value), series.values, values).astype(np.float32)
    return Series(values, series.timestamps, series.sensor_ids, series.channels, series.null_value,
                  source=series.source, null_origin=series.null_origin)


def incident_flags(series: Series, incidents) -> np.ndarray:
    """``[T, N]`` float32: 1 at an incident's sensor for its duration (``incidents``: the simulator's
    :class:`stgraph.synth.Incident` list), else 0."""
    flags = np.zeros((series.num_steps, series.num_nodes), dtype=np.float32)
    col = {s: i for i, s in enumerate(series.sensor_ids)}
    for inc in incidents:
        flags[max(0, inc.start_step):max(0, inc.start_step + inc.duration_steps), col[inc.sensor_id]] = 1.0
    return flags


def _write_table(path: Path, timestamps: np.ndarray, header: list[str], values: np.ndarray, fmt: str) -> None:
    """CSV ``timestamp,<header...>`` with one row per timestamp; ``values`` ``[T, K]``."""
    with atomic_open(path, "w", newline="") as fh:
        fh.write(",".join(["timestamp", *header]) + "\n")
        for ts, row in zip(timestamps, values):
            fh.write(iso(ts) + "," + ",".join(fmt % v for v in row) + "\n")


def write_events(out_dir, num_sensors: int = 207, days: float = 7, seed: int = 0, start="2012-03-01",
                 rain: bool = True, incidents: bool = True, episodes_per_day: float = 1.5,
                 incident_rate: float = 0.05, *, force: bool = False, reports: bool = False) -> dict[str, Path]:
    """The synthetic dataset with weather and incidents, and their covariate files.

    Writes what :func:`stgraph.synth.write_synthetic` writes (``synthetic.h5`` then carries the rain's
    slowdown when ``rain``) plus ``rain.csv`` (``timestamp,rain_mm_h``) and ``incidents.csv``
    (``timestamp,<sensor ids>`` 0/1 flags), each only when asked for. Files in the way that stgraph did not
    write are refused before anything is written, unless ``force`` (:func:`stgraph.files.owned_outputs`).

    ``reports``: also ``reports.csv`` (:mod:`stgraph.synth.reports`); the series then carries the planned
    events' crowds. Returns ``{'data', 'adj', ..., 'rain', 'incidents', 'reports'}`` -> path.
    """
    from ..files import record_written
    from ..io import write_series
    from . import make_road_network, simulate_speeds, write_synthetic

    out = Path(out_dir)
    also = [name for name, on in (("rain.csv", rain), ("incidents.csv", incidents), ("reports.csv", reports)) if on]
    paths = write_synthetic(out, num_sensors=num_sensors, days=days, seed=seed, start=start,
                            incident_rate=incident_rate, force=force, also=also)
    graph = make_road_network(num_sensors, seed)
    series, log = simulate_speeds(graph, start=start, days=days, seed=seed, incident_rate=incident_rate,
                                  return_log=True)
    if reports:
        from .reports import incident_reports, noise_reports, planned_events, write_reports
        series, notices, _ = planned_events(series, graph, seed)
        step_min = float((series.timestamps[1] - series.timestamps[0]) / np.timedelta64(1, "m"))
        paths["reports"] = out / "reports.csv"
        write_reports(paths["reports"], incident_reports(log.incidents, series.timestamps, step_min, seed) + notices
                      + noise_reports(series.timestamps, series.sensor_ids, seed))
    if rain:
        r = rain_series(series.timestamps, seed, episodes_per_day)
        series = apply_rain(series, r, seed)
    if rain or reports:
        write_series(series, paths["data"], layout="pandas")
    if rain:
        paths["rain"] = out / "rain.csv"
        _write_table(paths["rain"], series.timestamps, ["rain_mm_h"], r[:, None], "%.3f")
    if incidents:
        paths["incidents"] = out / "incidents.csv"
        _write_table(paths["incidents"], series.timestamps, list(series.sensor_ids),
                     incident_flags(series, log.incidents), "%d")
    record_written([paths[k] for k in ("data", "rain", "incidents", "reports") if k in paths])
    return paths


def lane_closure(series: Series, sensor_ids, start_step: int, capacity: float = 0.5) -> Series:
    """The series after a lane closure at ``sensor_ids`` from ``start_step`` on (a change point).

    The road keeps ``capacity`` of its lanes. At those sensors, from ``start_step``, every reading is
    multiplied by ``1 - (1 - capacity) * (0.3 + 0.8 * rush(t))``, ``rush(t)`` in ``[0, 1]`` peaking at
    08:00 and 17:30: the road is slower at all times and much slower at rush hours (half the lanes:
    15 % slower at night, 55 % at the peaks). The factor is a fixed daily pattern (the noise is not
    amplified), so a model that learns the new pattern can forecast as well as before. Nulls stay null.
    Returns a new :class:`Series`.
    """
    values = series.values.copy()
    col = {s: i for i, s in enumerate(series.sensor_ids)}
    null = null_mask(values, series.null_value)
    ns = series.timestamps[start_step:].astype("datetime64[ns]").astype(np.int64)
    hour = (ns % (86_400 * 10**9)) / 3.6e12
    rush = np.exp(-((hour - 8.0) / 1.2) ** 2) + np.exp(-((hour - 17.5) / 1.5) ** 2)
    loss = ((1 - capacity) * (0.3 + 0.8 * np.minimum(rush, 1.0))).astype(np.float32)
    for sid in sensor_ids:
        j = col[str(sid)]
        after = values[start_step:, j, 0]
        values[start_step:, j, 0] = np.where(null[start_step:, j, 0], after, after * (1.0 - loss))
    return Series(values, series.timestamps, series.sensor_ids, series.channels, series.null_value,
                  source=series.source, null_origin=series.null_origin)


__all__ = ["rain_series", "apply_rain", "incident_flags", "write_events", "lane_closure"]
