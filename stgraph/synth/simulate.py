"""Traffic speeds on a road graph, METR-LA-like: :func:`simulate_speeds`.

:func:`simulate_speeds` produces 5-minute speeds on any road graph (e.g. from
:func:`~stgraph.synth.layout.make_road_network`): free flow around 60-70 mph, rush hours whose
strength depends on the direction of travel (inbound in the morning, outbound in the evening),
lighter weekends, incidents whose queue spreads upstream, sensor noise and dead detectors
recorded as ``0``. Its phases: per-sensor profiles, recurrent congestion, incidents and outages
(:mod:`.disruptions`), noise; each draws from its own random stream. Counts on the same graphs are
in :mod:`.counts`. Same arguments and seed, identical arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import networkx as nx
import numpy as np

from ..errors import GraphError, SeriesError
from ..io.series import Series
from .disruptions import Incident, Outage, incident_drop, outages, random_incidents
from .layout import node_order, rng_stream
from .roads import gauss, inbound_score, road_graph, road_predecessors, smooth_on_graph, time_axis

__all__ = ["SimulationLog", "simulate_speeds"]


@dataclass
class SimulationLog:
    """What :func:`simulate_speeds` did, returned with ``return_log=True``.

    ``outage_mask`` (``[T, N]`` bool) is True exactly where the series holds
    the null value 0; ``incidents`` lists the random and the given incidents;
    ``free_flow`` is each sensor's free-flow speed (mph); ``hop_decay`` ``[len(incidents)]`` how much weaker
    each incident's queue is per hop upstream.
    """
    incidents: list[Incident]
    outages: list[Outage]
    outage_mask: np.ndarray
    free_flow: np.ndarray
    upstream_lag_minutes: float = 8.0
    hop_decay: np.ndarray | None = None


def simulate_speeds(graph: nx.DiGraph, start="2012-03-01", days: float = 7, interval_minutes: float = 5,
                    seed: int = 0, *, incidents: Iterable[Sequence] | None = None,
                    incident_rate: float = 0.05, missing_ratio: float = 0.05, noise_mph: float = 1.5,
                    return_log: bool = False):
    """Traffic speeds (mph) on ``graph``: a :class:`Series` with channel ``speed``.

    Args:
        graph: a road graph (e.g. from :func:`make_road_network`). Sensors are
            ordered by the node attribute ``index`` when every node has one;
            their ids are ``sensor_id`` (or the node key). Coordinates and
            ``heading`` shape the rush-hour direction; ``hops == 1`` edges (or
            all edges) are the roads along which incident queues spread upstream.
        start, days, interval_minutes: the time axis; ``days * 1440`` must be
            a multiple of ``interval_minutes`` (5 -> 288 steps a day, 60 -> 24).
        seed: same seed, same arrays. Each component (profiles, noise,
            incidents, outages) has its own random stream.
        incidents: extra incidents ``(sensor_id, start_step, duration_steps,
            severity)``, added to the random ones (``incident_rate=0`` turns
            those off). Severity in (0, 1] is the fractional speed drop at the
            sensor; the queue reaches upstream road neighbours ``~8`` minutes
            per hop later, weaker by ~0.7 per hop, and clears after the
            incident with a ~25-minute recovery.
        incident_rate: random incidents per sensor per day.
        missing_ratio: target share of readings recorded as 0 (dead detector):
            network-wide gaps, multi-hour outages and short dropouts.
        noise_mph: standard deviation of the per-reading sensor noise.
        return_log: also return a :class:`SimulationLog` (outage mask, incidents).

    Returns:
        ``Series`` (``[T, N, 1]`` float32, ``null_value=0.0``), or
        ``(Series, SimulationLog)`` with ``return_log=True``.
    """
    if graph.number_of_nodes() == 0:
        raise GraphError("cannot simulate speeds on an empty graph")
    if not 0.0 <= missing_ratio < 0.9:
        raise SeriesError(f"missing_ratio must be in [0, 0.9), got {missing_ratio}")
    if incident_rate < 0:
        raise SeriesError(f"incident_rate must be >= 0, got {incident_rate}")
    ts = time_axis(start, days, interval_minutes)
    T = ts.shape[0]
    step_min = float(interval_minutes)
    nodes = node_order(graph)
    n = len(nodes)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in nodes]
    id_pos = {s: i for i, s in enumerate(ids)}
    preds = road_predecessors(graph, nodes)
    prof = _profiles(graph, nodes, preds, rng_stream(seed, 2))
    keep = _recurrent_keep(ts, step_min, prof, rng_stream(seed, 3))   # 1 - share of free flow lost, [T, N]

    # ---------------------------------------------------- incidents
    ri = rng_stream(seed, 4)
    inc_list = random_incidents(ri, n, T * step_min, step_min, incident_rate, ids)
    n_random = len(inc_list)
    inc_list += _given_incidents(incidents, id_pos)
    lag_min, decay = 8.0, 0.7
    hop_decay = np.zeros(0)
    if inc_list:
        # random incidents get a random decay per hop; given ones the documented 0.7
        hop_decay = np.full(len(inc_list), decay)
        hop_decay[:n_random] = ri.uniform(0.55, 0.85, size=n_random)
        inc_drop = incident_drop(inc_list, hop_decay, road_graph(preds).reverse(copy=False), id_pos, T, n,
                                 step_min, lag_min)
        keep *= (1.0 - inc_drop)
        del inc_drop

    speed = _noisy_speeds(keep, prof.free_flow, rng_stream(seed, 5), noise_mph, step_min)

    # ---------------------------------------------------- dead detectors
    mask, outage_list = outages(rng_stream(seed, 6), T, n, step_min, missing_ratio, ids)
    speed[mask] = 0.0

    series = Series(speed[:, :, None], ts, ids, ["speed"], 0.0, source=None)
    if return_log:
        log = SimulationLog(incidents=inc_list, outages=outage_list, outage_mask=mask,
                            free_flow=prof.free_flow.astype(np.float32), upstream_lag_minutes=lag_min,
                            hop_decay=hop_decay)
        return series, log
    return series


@dataclass
class _Profiles:
    """Per-sensor parameters of :func:`simulate_speeds` (``[N]`` float64 each; ``corridor`` ``[N]`` int, the
    corridor of each sensor, ``0 .. n_corr - 1``): free-flow speed, and for the morning, evening and midday
    congestion its amplitude, peak hour and width."""
    free_flow: np.ndarray
    corridor: np.ndarray
    n_corr: int
    amp_m: np.ndarray
    amp_e: np.ndarray
    amp_mid: np.ndarray
    mu_m: np.ndarray
    sd_m: np.ndarray
    mu_e: np.ndarray
    sd_e: np.ndarray
    mu_mid: np.ndarray
    sd_mid: np.ndarray


def _profiles(graph: nx.DiGraph, nodes: list, preds: list[list[int]], rp: np.random.Generator) -> _Profiles:
    """The per-sensor parameters, drawn from ``rp`` (the profiles' stream) in a fixed order."""
    n = len(nodes)
    attrs = [graph.nodes[v] for v in nodes]
    corridor = np.array([int(a.get("corridor", 0)) for a in attrs])
    _, corridor = np.unique(corridor, return_inverse=True)
    n_corr = int(corridor.max()) + 1
    free_flow = rp.uniform(60.0, 70.0, size=n)
    inbound = inbound_score(graph, nodes, rp)
    corr_strength = rp.uniform(0.7, 1.3, size=n_corr)
    corr_shift_m = rp.normal(0.0, 0.3, size=n_corr)
    corr_shift_e = rp.normal(0.0, 0.3, size=n_corr)
    # bottleneck depth: spatially smooth along the roads, a few severe spots
    depth = rp.gamma(1.3, 0.4, size=n) + 2.5 * (rp.random(n) < 0.08)
    depth = smooth_on_graph(depth, preds, rounds=2) * corr_strength[corridor]
    amp_m = depth * (0.55 + 0.45 * inbound)
    amp_e = depth * (0.6 - 0.4 * inbound)
    amp_mid = depth * 0.2
    mu_m = 7.75 + corr_shift_m[corridor] + rp.normal(0, 0.15, size=n)
    sd_m = rp.uniform(0.8, 1.2, size=n)
    mu_e = 17.4 + corr_shift_e[corridor] + rp.normal(0, 0.15, size=n)
    sd_e = rp.uniform(1.1, 1.6, size=n)
    mu_mid = rp.uniform(12.5, 14.5, size=n)
    sd_mid = rp.uniform(2.0, 3.0, size=n)
    return _Profiles(free_flow, corridor, n_corr, amp_m, amp_e, amp_mid, mu_m, sd_m, mu_e, sd_e, mu_mid, sd_mid)


def _recurrent_keep(ts: np.ndarray, step_min: float, p: _Profiles, rd: np.random.Generator) -> np.ndarray:
    """``[T, N]`` float32 share of the free-flow speed left by the rush hours and midday traffic, in
    ``[0.15, 1]``: each day of week weighted, each day and corridor varied by ``rd`` (the days' stream)."""
    # ---------------------------------------------------- calendar
    ns_day = 86_400 * 10**9
    t_ns = ts.astype(np.int64)
    day_abs = t_ns // ns_day
    tod = ((t_ns - day_abs * ns_day) / 3.6e12 + step_min / 120.0).astype(np.float32)  # hour, mid-interval
    dow = ((day_abs + 3) % 7).astype(np.int64)            # 1970-01-01 was a Thursday; Monday = 0
    day_idx = (day_abs - day_abs[0]).astype(np.int64)
    n_days = int(day_idx[-1]) + 1
    #                   Mon   Tue   Wed   Thu   Fri   Sat   Sun
    f_morning = np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.12, 0.08], dtype=np.float32)[dow]
    f_evening = np.array([0.95, 1.0, 1.0, 1.05, 1.15, 0.3, 0.25], dtype=np.float32)[dow]
    f_midday = np.array([0.6, 0.6, 0.6, 0.65, 0.8, 0.9, 0.75], dtype=np.float32)[dow]
    day_var = rd.lognormal(0.0, 0.15, size=(n_days, p.n_corr)).astype(np.float32)
    dv = day_var[day_idx[:, None], p.corridor[None, :]]      # [T, N]

    # ---------------------------------------------------- recurrent congestion
    load = gauss(tod, p.mu_m, p.sd_m)
    load *= (f_morning[:, None] * p.amp_m[None, :].astype(np.float32))
    g = gauss(tod, p.mu_e, p.sd_e)
    g *= (f_evening[:, None] * p.amp_e[None, :].astype(np.float32))
    load += g
    g = gauss(tod, p.mu_mid, p.sd_mid)
    g *= (f_midday[:, None] * p.amp_mid[None, :].astype(np.float32))
    load += g
    del g
    load *= dv
    del dv
    # congestion share of the free-flow speed lost, saturating at 85 %
    np.negative(load, out=load)
    np.exp(load, out=load)
    keep = load                                           # 1 - loss, in [0.15, 1]
    keep *= np.float32(0.85)
    keep += np.float32(0.15)
    return keep


def _given_incidents(incidents: Iterable[Sequence] | None, id_pos: dict[str, int]) -> list[Incident]:
    """The caller's incidents ``(sensor_id, start_step, duration_steps, severity)``, checked."""
    out = []
    for item in incidents or ():
        sid, s0, dur, sev = item
        sid = str(sid)
        if sid not in id_pos:
            raise GraphError(f"incident at sensor '{sid}', which is not in the graph")
        if not 0 < float(sev) <= 1:
            raise SeriesError(f"incident severity must be in (0, 1], got {sev}")
        if int(dur) < 1:
            raise SeriesError(f"incident duration must be >= 1 step, got {dur}")
        out.append(Incident(sid, int(s0), int(dur), float(sev)))
    return out


def _noisy_speeds(keep: np.ndarray, free_flow: np.ndarray, rn: np.random.Generator, noise_mph: float,
                  step_min: float) -> np.ndarray:
    """``[T, N]`` float32 speeds (mph, in ``[3, 80]``): ``keep`` (overwritten) times the free-flow speed, plus
    sensor noise and a slow wander (``rn``: the noise stream), noisier in congestion."""
    T, n = keep.shape
    # ---------------------------------------------------- speeds, noise
    speed = keep
    speed *= free_flow[None, :].astype(np.float32)
    congested = 1.0 + 2.0 * (1.0 - keep / free_flow[None, :].astype(np.float32))   # noisier in traffic
    noise = rn.standard_normal((T, n), dtype=np.float32)
    noise *= np.float32(noise_mph)
    # slow wander: a moving average of white noise over ~30 minutes
    w = max(1, int(round(30.0 / step_min)))
    if w > 1 and T > w:
        white = rn.standard_normal((T + w, n), dtype=np.float32)
        cs = np.cumsum(white, axis=0, dtype=np.float64)
        slow = ((cs[w:] - cs[:-w]) / math.sqrt(w)).astype(np.float32)
        del cs, white
        noise += slow * np.float32(0.8 * noise_mph)
        del slow
    noise *= congested
    del congested
    speed += noise
    del noise
    np.clip(speed, 3.0, 80.0, out=speed)
    return speed
