"""Traffic on a road graph: METR-LA-like speeds, hourly passenger counts and daily counts.

:func:`simulate_speeds` produces 5-minute speeds on any road graph (e.g. from
:func:`~stgraph.synth.layout.make_road_network`): free flow around 60-70 mph, rush hours whose
strength depends on the direction of travel (inbound in the morning, outbound in the evening),
lighter weekends, incidents whose queue spreads upstream, sensor noise and dead detectors
recorded as ``0``. :func:`simulate_counts` produces hourly passenger boardings at the same
points read as stops: counts with real zeros (most night hours), strong daily and weekly profiles
and spatially correlated stops; :func:`simulate_daily_counts` sums that simulation to days (daily new
cases or boardings per region, a weekly rhythm, zeros in small regions). Same arguments and seed, identical arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import networkx as nx
import numpy as np

from ..errors import GraphError, SeriesError
from ..io.series import Series
from .layout import _node_order, _rng

__all__ = ["Incident", "Outage", "SimulationLog", "simulate_speeds", "simulate_counts", "simulate_daily_counts"]


class Incident(NamedTuple):
    """A congestion event at ``sensor_id`` from ``start_step`` for
    ``duration_steps`` steps; ``severity`` in (0, 1] is the fractional speed
    drop at the sensor; the queue spreads to the road neighbours upstream."""
    sensor_id: str
    start_step: int
    duration_steps: int
    severity: float


class Outage(NamedTuple):
    """Readings recorded as the null value: ``sensor_id`` (``None`` = every
    sensor), ``num_steps`` steps from ``start_step``; ``kind`` is ``dropout``
    (minutes), ``outage`` (hours to days) or ``network`` (all sensors)."""
    sensor_id: str | None
    start_step: int
    num_steps: int
    kind: str


@dataclass
class SimulationLog:
    """What :func:`simulate_speeds` did, returned with ``return_log=True``.

    ``outage_mask`` (``[T, N]`` bool) is True exactly where the series holds
    the null value 0; ``incidents`` lists the random and the given incidents;
    ``free_flow`` is each sensor's free-flow speed (mph).
    """
    incidents: list[Incident]
    outages: list[Outage]
    outage_mask: np.ndarray
    free_flow: np.ndarray
    upstream_lag_minutes: float = 8.0


def _timestamps(start, days: float, interval_minutes: float) -> np.ndarray:
    if not interval_minutes > 0:
        raise SeriesError(f"interval_minutes must be > 0, got {interval_minutes}")
    if not days > 0:
        raise SeriesError(f"days must be > 0, got {days}")
    steps = days * 1440.0 / interval_minutes
    t = int(round(steps))
    if abs(steps - t) > 1e-6 or t < 1:
        raise SeriesError(f"{days} days is not a whole number of {interval_minutes}-minute steps")
    step_ns = int(round(interval_minutes * 60e9))
    try:
        t0 = np.datetime64(str(start), "ns") if not isinstance(start, np.datetime64) else start.astype("datetime64[ns]")
    except ValueError as e:
        raise SeriesError(f"start '{start}' is not a date/time: {e}") from None
    return t0 + np.arange(t, dtype=np.int64) * np.timedelta64(step_ns, "ns")


def _road_predecessors(graph: nx.DiGraph, nodes: list) -> list[list[int]]:
    """Upstream road neighbours of each node: ``graph.graph['road_links']``
    when present (every direct road link, including any the kernel threshold
    dropped), else the edges with ``hops == 1`` when the graph carries hop
    counts, else every edge."""
    pos = {v: i for i, v in enumerate(nodes)}
    by_id = {str(graph.nodes[v].get("sensor_id", v)): v for v in nodes}
    links = graph.graph.get("road_links")
    if links is not None:
        pairs = [(by_id.get(str(l[0]), l[0]), by_id.get(str(l[1]), l[1])) for l in links]
        pairs = [(u, v) for u, v in pairs if u in pos and v in pos]
    else:
        has_hops = any("hops" in d for _, _, d in graph.edges(data=True))
        pairs = [(u, v) for u, v, d in graph.edges(data=True) if not (has_hops and d.get("hops", 1) != 1)]
    preds: list[list[int]] = [[] for _ in nodes]
    for u, v in pairs:
        if u != v and pos[u] not in preds[pos[v]]:
            preds[pos[v]].append(pos[u])
    return preds


def _road_graph(preds: list[list[int]]) -> nx.DiGraph:
    """The road links ``u -> v`` for every upstream neighbour ``u`` in ``preds[v]``; nodes ``0..N-1``."""
    road = nx.DiGraph()
    road.add_nodes_from(range(len(preds)))
    road.add_edges_from((u, v) for v, ps in enumerate(preds) for u in ps)
    return road


def _upstream(against: nx.DiGraph, src: int, max_hops: int) -> list[tuple[int, int]]:
    """``(node, hops)`` for ``src`` and the nodes upstream of it within ``max_hops`` road links
    (breadth-first search on the reversed road graph ``against``, hops = shortest hop count)."""
    return list(nx.single_source_shortest_path_length(against, src, cutoff=max_hops).items())


def _inbound_score(graph: nx.DiGraph, nodes: list, rng: np.random.Generator) -> np.ndarray:
    """+1 for a sensor whose traffic heads towards the city centre, -1 away from it.

    Uses ``lat``/``lon`` and ``heading`` (or the direction to the downstream
    neighbours); a graph without coordinates gets random scores."""
    attrs = [graph.nodes[v] for v in nodes]
    if not all("lat" in a and "lon" in a for a in attrs):
        return rng.uniform(-1.0, 1.0, size=len(nodes))
    lat = np.array([a["lat"] for a in attrs], dtype=float)
    lon = np.array([a["lon"] for a in attrs], dtype=float)
    clat, clon = graph.graph.get("centre", (lat.mean(), lon.mean()))
    kx = math.cos(math.radians(clat))
    px, py = (lon - clon) * kx, lat - clat
    hx = np.zeros(len(nodes))
    hy = np.zeros(len(nodes))
    pos = {v: i for i, v in enumerate(nodes)}
    for i, (v, a) in enumerate(zip(nodes, attrs)):
        if "heading" in a:
            h = math.radians(float(a["heading"]))
            hx[i], hy[i] = math.sin(h), math.cos(h)
        else:
            for w in graph.successors(v):
                j = pos[w]
                hx[i] += px[j] - px[i]
                hy[i] += py[j] - py[i]
    r = np.hypot(px, py)
    hn = np.hypot(hx, hy)
    ok = (r > 1e-9) & (hn > 1e-12)
    score = np.zeros(len(nodes))
    score[ok] = -(hx[ok] * px[ok] + hy[ok] * py[ok]) / (hn[ok] * r[ok])
    score[~ok] = rng.uniform(-1.0, 1.0, size=int((~ok).sum()))
    return score


def _smooth_on_graph(x: np.ndarray, preds: list[list[int]], rounds: int = 2) -> np.ndarray:
    """Average a per-sensor parameter with its road neighbours (spatial correlation)."""
    n = len(x)
    src = np.array([p for i, ps in enumerate(preds) for p in ps], dtype=int)
    dst = np.array([i for i, ps in enumerate(preds) for _ in ps], dtype=int)
    for _ in range(rounds):
        acc = x.copy()
        cnt = np.ones(n)
        np.add.at(acc, dst, x[src])
        np.add.at(acc, src, x[dst])
        np.add.at(cnt, dst, 1.0)
        np.add.at(cnt, src, 1.0)
        x = acc / cnt
    return x


def _gauss(t: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    z = (t[:, None] - mu[None, :].astype(np.float32)) / sd[None, :].astype(np.float32)
    return np.exp(np.float32(-0.5) * z * z)


def _random_incidents(rng, n: int, total_minutes: float, step_min: float, rate: float,
                      ids: list[str]) -> list[Incident]:
    days = total_minutes / 1440.0
    count = int(rng.poisson(rate * n * days)) if rate > 0 else 0
    if count == 0:
        return []
    day = rng.integers(0, max(1, int(math.ceil(days))), size=count)
    busy = rng.random(count) < 0.7
    minute = np.where(busy, rng.uniform(6 * 60, 20 * 60, size=count), rng.uniform(0, 1440, size=count))
    start = ((day * 1440 + minute) / step_min).astype(np.int64)
    dur_min = np.clip(rng.lognormal(math.log(45.0), 0.6, size=count), 15.0, 240.0)
    dur = np.maximum(1, np.round(dur_min / step_min)).astype(np.int64)
    sev = rng.uniform(0.25, 0.75, size=count)
    who = rng.integers(0, n, size=count)
    T = int(round(total_minutes / step_min))
    return [Incident(ids[w], int(s), int(d), float(round(v, 3)))
            for w, s, d, v in zip(who, start, dur, sev) if s < T]


def _outages(rng, T: int, n: int, step_min: float, ratio: float, ids: list[str]):
    """Mask of missing readings and its list of events; about ``ratio`` of the cells."""
    mask = np.zeros((T, n), dtype=bool)
    events: list[Outage] = []
    if ratio <= 0:
        return mask, events
    budget = ratio * T * n
    steps_of = lambda minutes: np.maximum(1, np.round(np.asarray(minutes) / step_min)).astype(np.int64)  # noqa: E731

    # network-wide gaps (the whole row is 0, as in METR-LA)
    dur_net = steps_of(np.clip(rng.lognormal(math.log(90.0), 0.7, size=64), 10, 720))
    k = int(rng.poisson(0.12 * budget / n / max(1.0, float(dur_net.mean()))))
    for d in dur_net[:k]:
        s = int(rng.integers(0, T))
        e = min(T, s + int(d))
        mask[s:e, :] = True
        events.append(Outage(None, s, e - s, "network"))

    # long outages (hours to days) on unreliable sensors
    reliability = rng.gamma(0.6, 1.0, size=n)
    reliability /= reliability.sum()
    mean_long = 6 * 60.0
    k = int(rng.poisson(0.5 * budget / max(1.0, float(steps_of(mean_long)))))
    if k:
        who = rng.choice(n, size=k, p=reliability)
        dur = steps_of(np.clip(rng.lognormal(math.log(240.0), 1.0, size=k), 60, 5 * 1440))
        start = rng.integers(0, T, size=k)
        for w, s, d in zip(who, start, dur):
            e = min(T, int(s) + int(d))
            mask[int(s):e, int(w)] = True
            events.append(Outage(ids[int(w)], int(s), e - int(s), "outage"))

    # short dropouts (one to a few readings), vectorised
    k = int(rng.poisson(0.38 * budget / 2.0))
    if k:
        who = rng.integers(0, n, size=k)
        start = rng.integers(0, T, size=k)
        length = np.minimum(rng.geometric(0.5, size=k), 6)
        length = np.minimum(length, T - start)
        for off in range(6):
            sel = off < length
            mask[start[sel] + off, who[sel]] = True
        events.extend(Outage(ids[w], int(s), int(l), "dropout") for w, s, l in zip(who.tolist(), start, length))
    return mask, events


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
    ts = _timestamps(start, days, interval_minutes)
    T = ts.shape[0]
    step_min = float(interval_minutes)
    nodes = _node_order(graph)
    n = len(nodes)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in nodes]
    id_pos = {s: i for i, s in enumerate(ids)}
    preds = _road_predecessors(graph, nodes)

    # ---------------------------------------------------- per-sensor parameters
    rp = _rng(seed, 2)
    attrs = [graph.nodes[v] for v in nodes]
    corridor = np.array([int(a.get("corridor", 0)) for a in attrs])
    _, corridor = np.unique(corridor, return_inverse=True)
    n_corr = int(corridor.max()) + 1
    free_flow = rp.uniform(60.0, 70.0, size=n)
    inbound = _inbound_score(graph, nodes, rp)
    corr_strength = rp.uniform(0.7, 1.3, size=n_corr)
    corr_shift_m = rp.normal(0.0, 0.3, size=n_corr)
    corr_shift_e = rp.normal(0.0, 0.3, size=n_corr)
    # bottleneck depth: spatially smooth along the roads, a few severe spots
    depth = rp.gamma(1.3, 0.4, size=n) + 2.5 * (rp.random(n) < 0.08)
    depth = _smooth_on_graph(depth, preds, rounds=2) * corr_strength[corridor]
    amp_m = depth * (0.55 + 0.45 * inbound)
    amp_e = depth * (0.6 - 0.4 * inbound)
    amp_mid = depth * 0.2
    mu_m = 7.75 + corr_shift_m[corridor] + rp.normal(0, 0.15, size=n)
    sd_m = rp.uniform(0.8, 1.2, size=n)
    mu_e = 17.4 + corr_shift_e[corridor] + rp.normal(0, 0.15, size=n)
    sd_e = rp.uniform(1.1, 1.6, size=n)
    mu_mid = rp.uniform(12.5, 14.5, size=n)
    sd_mid = rp.uniform(2.0, 3.0, size=n)

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
    rd = _rng(seed, 3)
    day_var = rd.lognormal(0.0, 0.15, size=(n_days, n_corr)).astype(np.float32)
    dv = day_var[day_idx[:, None], corridor[None, :]]      # [T, N]

    # ---------------------------------------------------- recurrent congestion
    load = _gauss(tod, mu_m, sd_m)
    load *= (f_morning[:, None] * amp_m[None, :].astype(np.float32))
    g = _gauss(tod, mu_e, sd_e)
    g *= (f_evening[:, None] * amp_e[None, :].astype(np.float32))
    load += g
    g = _gauss(tod, mu_mid, sd_mid)
    g *= (f_midday[:, None] * amp_mid[None, :].astype(np.float32))
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

    # ---------------------------------------------------- incidents
    ri = _rng(seed, 4)
    inc_list = _random_incidents(ri, n, T * step_min, step_min, incident_rate, ids)
    n_random = len(inc_list)
    for item in incidents or ():
        sid, s0, dur, sev = item
        sid = str(sid)
        if sid not in id_pos:
            raise GraphError(f"incident at sensor '{sid}', which is not in the graph")
        if not 0 < float(sev) <= 1:
            raise SeriesError(f"incident severity must be in (0, 1], got {sev}")
        if int(dur) < 1:
            raise SeriesError(f"incident duration must be >= 1 step, got {dur}")
        inc_list.append(Incident(sid, int(s0), int(dur), float(sev)))
    lag_min, decay, recovery_min, rise_min = 8.0, 0.7, 25.0, 10.0
    max_hops = 8
    if inc_list:
        # random incidents get a random decay per hop; given ones the documented 0.7
        hop_decay = np.full(len(inc_list), decay)
        hop_decay[:n_random] = ri.uniform(0.55, 0.85, size=n_random)
        inc_drop = np.zeros((T, n), dtype=np.float32)
        cache: dict[int, list[tuple[int, int]]] = {}
        against = _road_graph(preds).reverse(copy=False)
        for inc, dec in zip(inc_list, hop_decay):
            src = id_pos[inc.sensor_id]
            if src not in cache:
                cache[src] = _upstream(against, src, max_hops)
            t0 = inc.start_step * step_min
            t_end = (inc.start_step + inc.duration_steps) * step_min
            for node, h in cache[src]:
                mag = inc.severity * dec ** h
                if mag < 0.03:
                    continue
                onset = t0 + h * lag_min
                clear = t_end + 0.5 * h * lag_min
                if onset >= clear:
                    continue
                k0 = max(0, int(math.floor(onset / step_min)))
                k1 = min(T, int(math.ceil((clear + 5 * recovery_min) / step_min)) + 1)
                if k0 >= k1:
                    continue
                tk = (np.arange(k0, k1) + 1) * step_min          # end of each reading's interval
                rise = np.clip((tk - onset) / rise_min, 0.0, 1.0)
                fall = np.where(tk <= clear, 1.0, np.exp(-(tk - clear) / recovery_min))
                inc_drop[k0:k1, node] += (mag * rise * fall).astype(np.float32)
        np.clip(inc_drop, 0.0, 0.92, out=inc_drop)
        keep *= (1.0 - inc_drop)
        del inc_drop

    # ---------------------------------------------------- speeds, noise
    speed = keep
    speed *= free_flow[None, :].astype(np.float32)
    rn = _rng(seed, 5)
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

    # ---------------------------------------------------- dead detectors
    ro = _rng(seed, 6)
    mask, outages = _outages(ro, T, n, step_min, missing_ratio, ids)
    speed[mask] = 0.0

    series = Series(speed[:, :, None], ts, ids, ["speed"], 0.0, source=None)
    if return_log:
        log = SimulationLog(incidents=inc_list, outages=outages, outage_mask=mask,
                            free_flow=free_flow.astype(np.float32), upstream_lag_minutes=lag_min)
        return series, log
    return series


def _hourly_counts(graph: nx.DiGraph, start, days: int, seed: int, scale: float = 1.0):
    """``(counts [T, N] float32, hourly timestamps, ids)``: the hourly simulation of :func:`simulate_counts`,
    every rate multiplied by ``scale``."""
    if int(days) != days or days < 1:
        raise SeriesError(f"days must be a whole number >= 1, got {days}")
    if not scale > 0:
        raise SeriesError(f"scale must be > 0, got {scale}")
    rng = _rng(seed, 7)
    nodes = _node_order(graph)
    n = len(nodes)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in nodes]
    ts = _timestamps(start, days, 60)
    T = ts.size
    preds = _road_predecessors(graph, nodes)
    lam = np.exp(_smooth_on_graph(rng.normal(1.6, 0.9, n), preds, rounds=1)) * scale
    mix = np.clip(0.5 + 0.35 * _inbound_score(graph, nodes, rng), 0.1, 0.9)
    hour = ((ts - ts.astype("datetime64[D]")).astype("timedelta64[m]").astype(np.int64) / 60.0).astype(np.float32)
    dow = ((ts.astype("datetime64[D]").astype(np.int64) + 3) % 7)  # Monday = 0
    am, pm = _gauss(hour, np.array([8.0]), np.array([1.3]))[:, 0], _gauss(hour, np.array([17.5]), np.array([1.8]))[:, 0]
    mid = _gauss(hour, np.array([13.0]), np.array([3.0]))[:, 0]
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
