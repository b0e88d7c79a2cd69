"""Counts on a road graph read as stops or regions: hourly boardings (:func:`simulate_counts`) and daily
counts (:func:`simulate_daily_counts`), with real zeros and daily / weekly profiles. Same arguments and
seed, identical arrays.
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np

from ..errors import SeriesError
from ..io.series import Series
from .layout import node_order, rng_stream
from .roads import gauss, inbound_score, road_predecessors, smooth_on_graph, time_axis

__all__ = ["DAILY_SCALE", "simulate_counts", "simulate_daily_counts"]


def _hourly_counts(graph: nx.DiGraph, start, days: int, seed: int, scale: float = 1.0):
    """``(counts [T, N] float32, hourly timestamps, ids)``: the hourly simulation of :func:`simulate_counts`,
    every rate multiplied by ``scale``."""
    if int(days) != days or days < 1:
        raise SeriesError(f"days must be a whole number >= 1, got {days}")
    if not scale > 0:
        raise SeriesError(f"scale must be > 0, got {scale}")
    rng = rng_stream(seed, 7)
    nodes = node_order(graph)
    n = len(nodes)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in nodes]
    ts = time_axis(start, days, 60)
    T = ts.size
    preds = road_predecessors(graph, nodes)
    lam = np.exp(smooth_on_graph(rng.normal(1.6, 0.9, n), preds, rounds=1)) * scale
    mix = np.clip(0.5 + 0.35 * inbound_score(graph, nodes, rng), 0.1, 0.9)
    hour = ((ts - ts.astype("datetime64[D]")).astype("timedelta64[m]").astype(np.int64) / 60.0).astype(np.float32)
    dow = ((ts.astype("datetime64[D]").astype(np.int64) + 3) % 7)  # Monday = 0
    am, pm = gauss(hour, np.array([8.0]), np.array([1.3]))[:, 0], gauss(hour, np.array([17.5]), np.array([1.8]))[:, 0]
    mid = gauss(hour, np.array([13.0]), np.array([3.0]))[:, 0]
    night = np.where((hour >= 1) & (hour < 5), 0.01, 0.06).astype(np.float32)
    weekday = (mix[None, :] * am[:, None] + (1 - mix[None, :]) * pm[:, None] + 0.35 * mid[:, None] + night[:, None])
    weekend_scale = np.select([dow == 5, dow == 6], [0.4, 0.3], 0.0)
    weekend = (mid[:, None] + night[:, None]) * weekend_scale[:, None]
    rate = lam[None, :] * np.where((dow < 5)[:, None], weekday, weekend)
    day_factor = np.exp(rng.normal(0.0, 0.15, days))[np.arange(T) // 24]
    log_ar = np.zeros((T, n))
    eps = rng.normal(0.0, 0.25 * math.sqrt(1 - 0.8 ** 2), (T, n))
    log_ar[0] = rng.normal(0.0, 0.25, n)
    for t in range(1, T):  # the AR(1) recursion over time, vectorised over stops
        log_ar[t] = 0.8 * log_ar[t - 1] + eps[t]
    return rng.poisson(rate * day_factor[:, None] * np.exp(log_ar)).astype(np.float32), ts, ids


def simulate_counts(graph: nx.DiGraph, start="2012-03-05", days: int = 56, seed: int = 0) -> Series:
    """Hourly boardings at every node of ``graph`` read as a stop: ``[T, N, 1]`` whole counts >= 0.

    Each stop ``i`` has a size ``lam_i`` (log-normal, smoothed along the road links so neighbours are
    alike) and a commuter mix ``a_i`` (towards the centre: busier mornings; away: busier evenings).
    Weekday rate: ``lam_i * (a_i * am(h) + (1 - a_i) * pm(h) + 0.35 * midday(h) + night(h))`` with
    Gaussian bumps at 08:00, 17:30 and 13:00 and a near-zero night; Saturdays and Sundays carry a
    midday bump at 40% / 30% of it. The rate is multiplied by a network-wide factor per day
    (weather, events) and a per-stop AR(1) factor on the log scale (``phi = 0.8`` an hour), and the
    count drawn from a Poisson law: zeros are real readings (every night hour at small stops), and
    nothing is missing (``null_value`` NaN: zeros are values). Deterministic in ``seed``.
    """
    counts, ts, ids = _hourly_counts(graph, start, days, seed)
    return Series(counts[:, :, None], ts, ids, ["boardings"], float("nan"), source=None,
                  null_origin="synthetic counts: nothing is missing, zeros are real")


#: rate multiplier of :func:`simulate_daily_counts`: a median region sees a handful a day, the smallest often none
DAILY_SCALE = 0.1


def simulate_daily_counts(graph: nx.DiGraph, start="2012-03-05", days: int = 56, seed: int = 0,
                          scale: float = DAILY_SCALE) -> Series:
    """Daily counts at every node of ``graph`` read as a region (daily new cases, daily boardings):
    ``[days, N, 1]`` whole counts >= 0, one reading a day stamped at midnight.

    The day's count is the sum of the hourly simulation of :func:`simulate_counts` over that day, with
    every rate multiplied by ``scale`` (a sum of independent Poisson counts, so Poisson given the day's
    rate): a weekly rhythm (Saturdays and Sundays at about a third of a weekday), a network-wide factor
    per day, regions of very different sizes (log-normal) and real zeros, most of them in small regions
    on weekends. Nothing is missing (``null_value`` NaN). Deterministic in ``seed``.
    """
    counts, ts, ids = _hourly_counts(graph, start, days, seed, scale)
    daily = counts.reshape(-1, 24, counts.shape[1]).sum(axis=1)  # the first hour is midnight of ``start``
    return Series(daily[:, :, None], ts[::24].astype("datetime64[D]").astype(ts.dtype), ids, ["count"],
                  float("nan"), source=None, null_origin="synthetic daily counts: nothing is missing, zeros are real")
