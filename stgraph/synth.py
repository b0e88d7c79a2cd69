"""A synthetic road network and traffic speeds: the embedded default dataset.

Nothing here downloads anything. :func:`make_road_network` lays out a few
freeway corridors around a city centre (Los Angeles by default), each carried
by two directed chains of loop detectors (one per direction of travel), with
on/off ramps branching from the mainline and interchanges where corridors
cross. :func:`simulate_speeds` produces METR-LA-like 5-minute speeds on any
such graph: free flow around 60-70 mph, rush hours whose strength depends on
the direction of travel (inbound in the morning, outbound in the evening),
lighter weekends, incidents whose queue spreads upstream, sensor noise and
dead detectors recorded as ``0``. :func:`simulate_counts` produces hourly
passenger boardings at the same points read as stops: counts with real zeros
(most night hours), strong daily and weekly profiles and spatially correlated
stops; :func:`write_synthetic_counts` writes them as a CSV with a distance-
weighted node-link graph. :func:`generate` does both and
:func:`write_synthetic` writes the files in the layout of the DCRNN release
(``metr-la.h5``-style HDF5, ``adj_mx.pkl``, ``distances_la_2012.csv``-style
distances, sensor locations and ids).

The graph
---------
Node keys are 6-digit sensor id strings (``'700001'``, ...); node attributes
are ``sensor_id``, ``index`` (column in the series), ``lat``, ``lon`` and,
for the simulator, ``corridor``, ``direction`` (0/1), ``kind`` (``mainline``,
``on_ramp``, ``off_ramp``) and ``heading`` (degrees clockwise from north).

The candidate pairs are built the way DCRNN's ``distances_la_2012.csv`` is: a
row ``(from, to, cost)`` for every directed pair of sensors that the road
network connects within ``reach_km`` of road distance (plus every direct road
link). The road distance of a direct link is the haversine distance of its
ends times a detour factor >= 1, and of a longer pair the shortest path, so it
is never shorter than the straight line. Then, exactly as DCRNN's
``gen_adj_mx.py``::

    sigma  = std(candidate distances)            # graph.graph["sigma"]
    weight = exp(-(distance / sigma) ** 2)
    keep the pair as an edge if weight >= 0.1    # graph.graph["threshold"]

If the thresholded graph is not weakly connected, the shortest dropped pairs
that join two of its pieces are put back (Kruskal order), so every edge with
``weight < threshold`` is a bridge of the graph. Edge attributes are
``distance`` (metres), ``weight``, ``hops`` (road links on the shortest path;
1 for a direct link) and ``kind`` (``mainline``, ``ramp``, ``interchange``,
``connector`` or ``multi-hop``). ``graph.graph["candidates"]`` lists every
candidate ``(from, to, distance)``.

Determinism: the same arguments and seed give identical graphs and arrays.
"""
from __future__ import annotations

import heapq
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import networkx as nx
import numpy as np

from .errors import GraphError, SeriesError
from .files import atomic_write
from .io.series import Series

__all__ = [
    "PRESETS", "LA_CENTRE", "Incident", "Outage", "SimulationLog",
    "make_road_network", "simulate_speeds", "generate", "write_synthetic",
    "simulate_counts", "write_synthetic_counts",
    "dcrnn_adj_mx", "haversine_m", "preset",
]

#: ``name -> (num_sensors, days)``; ``metr-la`` matches METR-LA's size
#: (207 sensors, 34,272 five-minute steps = 119 days).
PRESETS: dict[str, tuple[int, int]] = {
    "tiny": (50, 1),
    "small": (207, 7),
    "metr-la": (207, 119),
}

#: Downtown Los Angeles, (lat, lon).
LA_CENTRE = (34.05, -118.25)

MIN_SENSORS = 4
_EARTH_RADIUS_M = 6_371_008.8
_KM_PER_DEG_LAT = 110.574
_ID_BASE = 700_001


def preset(name: str) -> dict:
    """``PRESETS[name]`` as keyword arguments: ``generate(**preset('tiny'))``."""
    if name not in PRESETS:
        raise SeriesError(f"unknown synthetic preset '{name}'; available: {sorted(PRESETS)}")
    n, d = PRESETS[name]
    return {"num_sensors": n, "days": d}


def _rng(seed: int, tag: int) -> np.random.Generator:
    """An independent stream per (seed, component), so that e.g. adding an
    incident never changes the noise or the outages."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, tag]))


def haversine_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


# =============================================================================
# Road network
# =============================================================================
class _Layout:
    """Working state while the network is laid out (km frame, x east, y north)."""

    def __init__(self) -> None:
        self.xy: list[tuple[float, float]] = []
        self.attrs: list[dict] = []
        self.links: list[tuple[int, int, str, float]] = []  # (u, v, kind, detour factor)

    def add_node(self, x: float, y: float, **attrs) -> int:
        self.xy.append((float(x), float(y)))
        self.attrs.append(attrs)
        return len(self.xy) - 1


def _allocate(num_sensors: int, rng: np.random.Generator, num_corridors: int | None,
              ramp_fraction: float) -> tuple[int, list[int], list[int]]:
    """Number of corridors, mainline sensors per directed chain, ramp sizes."""
    n = num_sensors
    if num_corridors is None:
        k = int(np.clip(round(math.sqrt(n / 8.0)), 2, 16))
        while k > 1 and n < 4 * k + 2:
            k -= 1
    else:
        k = int(num_corridors)
        if k < 1 or n < 4 * k:
            raise GraphError(f"{n} sensors cannot carry {k} corridors: need at least 4 sensors per corridor")
    chains = 2 * k
    n_ramp = int(round(ramp_fraction * n))
    n_ramp = max(0, min(n_ramp, n - 2 * chains))
    n_main = n - n_ramp
    per = np.full(chains, n_main // chains, dtype=int)
    extra = n_main - per.sum()
    if extra:
        per[rng.choice(chains, size=extra, replace=False)] += 1
    ramps: list[int] = []
    left = n_ramp
    while left > 0:
        size = 2 if left >= 2 and rng.random() < 0.3 else 1
        ramps.append(size)
        left -= size
    return k, per.tolist(), ramps


def _lay_out(num_sensors: int, rng: np.random.Generator, num_corridors: int | None,
             ramp_fraction: float) -> tuple[_Layout, list[list[list[int]]]]:
    k, per_chain, ramp_sizes = _allocate(num_sensors, rng, num_corridors, ramp_fraction)
    lay = _Layout()
    mean_spacing = 0.5 + 1.5 * 1.5 / (1.5 + 3.5)             # mean of the spacing law below
    span = max(per_chain) * mean_spacing                      # typical corridor length, km

    # corridor axes: alternately east-west-ish and north-south-ish, spread across the city
    groups = [[i for i in range(k) if i % 2 == g] for g in (0, 1)]
    axes = []
    for c in range(k):
        g = c % 2
        members = groups[g]
        pos = members.index(c)
        base = 0.0 if g == 0 else 90.0
        angle = math.radians(base + rng.uniform(-20.0, 20.0))
        u = np.array([math.cos(angle), math.sin(angle)])      # direction 0 travels along +u
        nrm = np.array([-u[1], u[0]])
        m = len(members)
        frac = 0.0 if m == 1 else (pos / (m - 1) - 0.5) * 0.55
        offset = (frac + rng.uniform(-0.05, 0.05)) * span
        axes.append((u, nrm, offset))

    chains: list[list[list[int]]] = []                       # chains[c][d] = node ids in travel order
    for c, (u, nrm, offset) in enumerate(axes):
        n0, n1 = per_chain[2 * c], per_chain[2 * c + 1]
        m = max(n0, n1)
        gaps = 0.5 + 1.5 * rng.beta(1.5, 3.5, size=m - 1)     # 0.5 .. 2 km between detectors
        s = np.concatenate([[0.0], np.cumsum(gaps)])
        s -= s[-1] / 2 + rng.uniform(-0.05, 0.05) * s[-1]
        origin = nrm * offset
        dir_chains = []
        for d, count in ((0, n0), (1, n1)):
            sel = np.sort(rng.choice(m, size=count, replace=False)) if count < m else np.arange(m)
            pos_s = s[sel] + rng.normal(0.0, 0.05, size=count)
            pos_s = np.sort(pos_s)
            travel = u if d == 0 else -u
            right = np.array([travel[1], -travel[0]])           # right-hand traffic
            heading = (math.degrees(math.atan2(travel[0], travel[1])) + 360.0) % 360.0
            order = range(count) if d == 0 else range(count - 1, -1, -1)
            ids = []
            for i in order:
                p = origin + u * pos_s[i] + right * 0.03 + nrm * rng.normal(0.0, 0.02)
                ids.append(lay.add_node(p[0], p[1], corridor=c, direction=d, kind="mainline",
                                        heading=round(heading, 1), s_km=float(pos_s[i])))
            for a, b in zip(ids[:-1], ids[1:]):
                lay.links.append((a, b, "mainline", float(rng.uniform(1.0, 1.06))))
            dir_chains.append(ids)
        chains.append(dir_chains)

    _add_interchanges(lay, chains, axes, rng)
    _add_ramps(lay, chains, ramp_sizes, rng)
    return lay, chains


def _add_interchanges(lay: _Layout, chains, axes, rng) -> None:
    """Where two corridor axes cross inside both corridors, link every direction
    of one to every direction of the other (a full interchange)."""
    xy = np.asarray(lay.xy)
    k = len(axes)
    for a in range(k):
        for b in range(a + 1, k):
            ua, na, oa = axes[a]
            ub, nb, ob = axes[b]
            det = ua[0] * (-ub[1]) - ua[1] * (-ub[0])
            if abs(det) < 0.2:                                 # nearly parallel
                continue
            pa, pb = na * oa, nb * ob
            rhs = pb - pa
            ta = (rhs[0] * (-ub[1]) - rhs[1] * (-ub[0])) / det   # along a
            tb = (ua[0] * rhs[1] - ua[1] * rhs[0]) / det         # along b
            for (c1, t1, u1), (c2, t2, u2) in (((a, ta, ua), (b, tb, ub)), ((b, tb, ub), (a, ta, ua))):
                for d1 in (0, 1):
                    ch1 = chains[c1][d1]
                    s1 = (xy[ch1] @ u1) * (1 if d1 == 0 else -1)
                    tt1 = t1 * (1 if d1 == 0 else -1)
                    before = [i for i, s in zip(ch1, s1) if s <= tt1]
                    if not before:
                        continue
                    src = before[-1]
                    for d2 in (0, 1):
                        ch2 = chains[c2][d2]
                        s2 = (xy[ch2] @ u2) * (1 if d2 == 0 else -1)
                        tt2 = t2 * (1 if d2 == 0 else -1)
                        after = [i for i, s in zip(ch2, s2) if s > tt2]
                        if not after:
                            continue
                        lay.links.append((src, after[0], "interchange", float(rng.uniform(1.05, 1.25))))


def _add_ramps(lay: _Layout, chains, ramp_sizes, rng) -> None:
    """Short side branches: on-ramps merge into a mainline sensor, off-ramps leave one."""
    mainline = [(c, d, i) for c, dc in enumerate(chains) for d, ch in enumerate(dc) for i in range(len(ch))]
    if not ramp_sizes:
        return
    picks = rng.choice(len(mainline), size=len(ramp_sizes), replace=len(ramp_sizes) > len(mainline))
    for size, pick in zip(ramp_sizes, picks):
        c, d, i = mainline[int(pick)]
        node = chains[c][d][i]
        attrs = lay.attrs[node]
        h = math.radians(attrs["heading"])
        travel = np.array([math.sin(h), math.cos(h)])
        right = np.array([travel[1], -travel[0]])
        on = bool(rng.random() < 0.5)
        kind = "on_ramp" if on else "off_ramp"
        p0 = np.asarray(lay.xy[node])
        prev = node
        for j in range(size):
            along = rng.uniform(0.2, 0.45) * (j + 1)
            side = rng.uniform(0.1, 0.25) * (j + 1)
            p = p0 + travel * (-along if on else along) + right * side
            r = lay.add_node(p[0], p[1], corridor=attrs["corridor"], direction=attrs["direction"],
                             kind=kind, heading=attrs["heading"], s_km=attrs["s_km"])
            if on:
                lay.links.append((r, prev, "ramp", float(rng.uniform(1.05, 1.3))))
            else:
                lay.links.append((prev, r, "ramp", float(rng.uniform(1.05, 1.3))))
            prev = r


class _DSU:
    def __init__(self, n: int) -> None:
        self.p = list(range(n))

    def find(self, a: int) -> int:
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.p[ra] = rb
        return True


def _connect_pieces(lay: _Layout, lat: np.ndarray, lon: np.ndarray) -> None:
    """Join pieces of the road network that no interchange reached (small
    networks with corridors that do not cross) by connector roads between
    their closest sensors, in both directions."""
    n = len(lay.xy)
    while True:
        dsu = _DSU(n)
        for u, v, _, _ in lay.links:
            dsu.union(u, v)
        roots = np.array([dsu.find(i) for i in range(n)])
        comps = np.unique(roots)
        if comps.size <= 1:
            return
        first = np.flatnonzero(roots == roots[0])
        rest = np.flatnonzero(roots != roots[0])
        d = haversine_m(lat[first][:, None], lon[first][:, None], lat[rest][None, :], lon[rest][None, :])
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        a, b = int(first[i]), int(rest[j])
        lay.links.append((a, b, "connector", 1.2))
        lay.links.append((b, a, "connector", 1.2))


def _candidate_pairs(n: int, links: list[tuple[int, int, str, float]], dist: np.ndarray,
                     reach_m: float) -> list[tuple[int, int, float, int, str]]:
    """Every directed pair within ``reach_m`` of road distance (Dijkstra on the
    directed road links), plus every direct link: ``(u, v, distance, hops, kind)``."""
    adj: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    direct: dict[tuple[int, int], tuple[float, str]] = {}
    for (u, v, kind, _), d in zip(links, dist):
        if (u, v) not in direct or d < direct[(u, v)][0]:
            direct[(u, v)] = (float(d), kind)
    for (u, v), (d, _) in direct.items():
        adj[u].append((v, d))
    out: list[tuple[int, int, float, int, str]] = []
    for src in range(n):
        best = {src: (0.0, 0)}
        heap = [(0.0, 0, src)]
        while heap:
            d, h, u = heapq.heappop(heap)
            if d > best[u][0]:
                continue
            for v, w in adj[u]:
                nd = d + w
                if nd > reach_m and (u != src):
                    continue
                if v not in best or nd < best[v][0]:
                    best[v] = (nd, h + 1)
                    heapq.heappush(heap, (nd, h + 1, v))
        for v, (d, h) in best.items():
            if v == src:
                continue
            kind = direct[(src, v)][1] if h == 1 and (src, v) in direct else "multi-hop"
            out.append((src, v, d, h, kind))
    return out


def make_road_network(num_sensors: int, seed: int = 0, *, centre: tuple[float, float] = LA_CENTRE,
                      num_corridors: int | None = None, ramp_fraction: float = 0.12,
                      reach_km: float = 5.0, threshold: float = 0.1) -> nx.DiGraph:
    """A synthetic freeway network of exactly ``num_sensors`` loop detectors.

    Args:
        num_sensors: number of sensors (nodes), at least 4; 10..2000 is the usual range.
        seed: the layout is a pure function of the arguments and this seed.
        centre: city centre ``(lat, lon)``; corridors pass around it.
        num_corridors: freeways (each = two directed chains); default grows
            with ``sqrt(num_sensors)`` (5 for 207 sensors, 16 for 2000).
        ramp_fraction: share of sensors on on/off ramps.
        reach_km: road distance within which a pair of sensors is a candidate
            (the rows of the distances CSV).
        threshold: DCRNN's ``normalized_k``; candidates with a smaller kernel weight are dropped.

    Returns:
        ``networkx.DiGraph``; see the module docstring for its attributes.
    """
    n = int(num_sensors)
    if n < MIN_SENSORS:
        raise GraphError(f"a synthetic road network needs at least {MIN_SENSORS} sensors, got {num_sensors}")
    if not 0.0 <= ramp_fraction < 0.5:
        raise GraphError(f"ramp_fraction must be in [0, 0.5), got {ramp_fraction}")
    if not 0.0 < threshold < 1.0:
        raise GraphError(f"threshold must be in (0, 1), got {threshold}")
    rng = _rng(seed, 1)
    lay, _ = _lay_out(n, rng, num_corridors, ramp_fraction)
    assert len(lay.xy) == n

    xy = np.asarray(lay.xy)
    lat0, lon0 = centre
    lat = lat0 + xy[:, 1] / _KM_PER_DEG_LAT
    lon = lon0 + xy[:, 0] / (111.320 * math.cos(math.radians(lat0)))
    lat, lon = np.round(lat, 6), np.round(lon, 6)
    _connect_pieces(lay, lat, lon)

    u_idx = np.array([l[0] for l in lay.links])
    v_idx = np.array([l[1] for l in lay.links])
    detour = np.array([l[3] for l in lay.links])
    straight = haversine_m(lat[u_idx], lon[u_idx], lat[v_idx], lon[v_idx])
    link_dist = np.round(np.maximum(straight * detour, np.maximum(straight, 30.0)), 1)

    cands = _candidate_pairs(n, lay.links, link_dist, reach_km * 1000.0)
    cands.sort(key=lambda c: (c[0], c[1]))
    dist = np.round(np.array([c[2] for c in cands]), 1)
    sigma = float(dist.std())
    if not sigma > 0:
        sigma = float(dist.mean()) or 1.0
    weight = np.exp(-np.square(dist / sigma))
    keep = weight >= threshold

    # restore the shortest dropped pairs needed for weak connectivity (Kruskal)
    dsu = _DSU(n)
    for (u, v, *_), k in zip(cands, keep):
        if k:
            dsu.union(u, v)
    for i in np.argsort(dist, kind="stable"):
        if not keep[i] and dsu.union(cands[i][0], cands[i][1]):
            keep[i] = True

    ids = [str(_ID_BASE + i) for i in range(n)]
    road = {}
    for (u, v, kind, _), d in zip(lay.links, link_dist):
        if (u, v) not in road or d < road[(u, v)][2]:
            road[(u, v)] = (ids[u], ids[v], float(d), kind)
    g = nx.DiGraph(name=f"synthetic-{n}", seed=int(seed), centre=(float(lat0), float(lon0)),
                   sigma=sigma, threshold=float(threshold), reach_km=float(reach_km),
                   candidates=[(ids[c[0]], ids[c[1]], float(d)) for c, d in zip(cands, dist)],
                   road_links=sorted(road.values()))
    for i in range(n):
        g.add_node(ids[i], sensor_id=ids[i], index=i, lat=float(lat[i]), lon=float(lon[i]), **lay.attrs[i])
    for (u, v, _, hops, kind), d, w, k in zip(cands, dist, weight, keep):
        if k:
            g.add_edge(ids[u], ids[v], distance=float(d), weight=float(w), hops=int(hops), kind=kind)
    return g


def _node_order(graph: nx.DiGraph) -> list:
    nodes = list(graph.nodes)
    if nodes and all("index" in graph.nodes[v] for v in nodes):
        nodes.sort(key=lambda v: graph.nodes[v]["index"])
    return nodes


def dcrnn_adj_mx(graph: nx.DiGraph) -> tuple[list[str], dict[str, int], np.ndarray]:
    """``[sensor_ids, {id: index}, W]`` as DCRNN's ``gen_adj_mx.py`` pickles it:
    ``W[i, j]`` is the weight of edge ``i -> j``, float32, ones on the diagonal."""
    nodes = _node_order(graph)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in nodes]
    pos = {v: i for i, v in enumerate(nodes)}
    w = np.zeros((len(nodes), len(nodes)), dtype=np.float32)
    for u, v, data in graph.edges(data=True):
        w[pos[u], pos[v]] = data.get("weight", 1.0)
    np.fill_diagonal(w, 1.0)
    return ids, {s: i for i, s in enumerate(ids)}, w


# =============================================================================
# Speeds
# =============================================================================
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


def _upstream(preds: list[list[int]], src: int, max_hops: int) -> list[tuple[int, int]]:
    """``(node, hops)`` for ``src`` and the nodes upstream of it (BFS against edge direction)."""
    seen = {src: 0}
    frontier = [src]
    out = [(src, 0)]
    for h in range(1, max_hops + 1):
        nxt = []
        for u in frontier:
            for p in preds[u]:
                if p not in seen:
                    seen[p] = h
                    nxt.append(p)
                    out.append((p, h))
        frontier = nxt
        if not frontier:
            break
    return out


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
        for inc, dec in zip(inc_list, hop_decay):
            src = id_pos[inc.sensor_id]
            if src not in cache:
                cache[src] = _upstream(preds, src, max_hops)
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


# =============================================================================
# Convenience
# =============================================================================
def generate(num_sensors: int = 50, days: float = 7, seed: int = 0, start="2012-03-01",
             interval_minutes: float = 5, **simulate_kwargs) -> tuple[Series, nx.DiGraph]:
    """``(series, graph)``: :func:`make_road_network` then :func:`simulate_speeds`."""
    graph = make_road_network(num_sensors, seed)
    series = simulate_speeds(graph, start=start, days=days, interval_minutes=interval_minutes,
                             seed=seed, **simulate_kwargs)
    return series, graph


def write_synthetic(out_dir, num_sensors: int = 207, days: float = 7, seed: int = 0,
                    start="2012-03-01", interval_minutes: float = 5, **simulate_kwargs) -> dict[str, Path]:
    """Generate a dataset and write it in METR-LA's / DCRNN's file layout.

    Files in ``out_dir``: ``synthetic.h5`` (pandas HDF5, as ``metr-la.h5``),
    ``adj_mx.pkl`` (``[ids, {id: index}, W]``, pickle protocol 2),
    ``distances.csv`` (``from,to,cost`` in metres, every candidate pair),
    ``graph_sensor_locations.csv`` (``index,sensor_id,latitude,longitude``)
    and ``graph_sensor_ids.txt`` (comma-separated ids).

    Returns ``{'data', 'adj', 'distances', 'locations', 'sensor_ids'}`` -> path.
    """
    from .io import write_series  # written alongside; imported lazily

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series, graph = generate(num_sensors, days, seed, start, interval_minutes, **simulate_kwargs)
    paths = {
        "data": out / "synthetic.h5",
        "adj": out / "adj_mx.pkl",
        "distances": out / "distances.csv",
        "locations": out / "graph_sensor_locations.csv",
        "sensor_ids": out / "graph_sensor_ids.txt",
    }
    write_series(series, paths["data"], layout="pandas")

    ids, id_to_ind, w = dcrnn_adj_mx(graph)
    atomic_write(paths["adj"], pickle.dumps([ids, id_to_ind, w], protocol=2))
    rows = ["from,to,cost"] + [f"{u},{v},{d:.1f}" for u, v, d in graph.graph["candidates"]]
    atomic_write(paths["distances"], ("\n".join(rows) + "\n").encode())
    nodes = _node_order(graph)
    loc = ["index,sensor_id,latitude,longitude"] + [
        f"{i},{graph.nodes[v]['sensor_id']},{graph.nodes[v]['lat']:.6f},{graph.nodes[v]['lon']:.6f}"
        for i, v in enumerate(nodes)]
    atomic_write(paths["locations"], ("\n".join(loc) + "\n").encode())
    atomic_write(paths["sensor_ids"], ",".join(ids).encode())
    return paths



# =============================================================================
# Hourly passenger counts
# =============================================================================
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
    if int(days) != days or days < 1:
        raise SeriesError(f"days must be a whole number >= 1, got {days}")
    rng = _rng(seed, 7)
    nodes = _node_order(graph)
    n = len(nodes)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in nodes]
    ts = _timestamps(start, days, 60)
    T = ts.size
    preds = _road_predecessors(graph, nodes)
    lam = np.exp(_smooth_on_graph(rng.normal(1.6, 0.9, n), preds, rounds=1))
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
    counts = rng.poisson(rate * day_factor[:, None] * np.exp(log_ar)).astype(np.float32)
    return Series(counts[:, :, None], ts, ids, ["boardings"], float("nan"), source=None,
                  null_origin="synthetic counts: nothing is missing, zeros are real")


def write_synthetic_counts(out_dir, num_sensors: int = 207, days: int = 56, seed: int = 0,
                           start="2012-03-05") -> dict[str, Path]:
    """The synthetic counts network as a user would bring it: ``counts.csv`` (a ``timestamp`` column and
    one column of hourly boardings per stop; no null convention, so zeros are readings), ``graph.json``
    (node-link; edge ``weight`` = road distance in metres, declared ``weight_meaning: distance``) and
    ``graph_sensor_locations.csv``. Returns ``{'data', 'graph', 'locations'}`` -> path."""
    from .files import atomic_open
    from .graph import write_graph

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    road = make_road_network(num_sensors, seed)
    series = simulate_counts(road, start=start, days=days, seed=seed)
    paths = {"data": out / "counts.csv", "graph": out / "graph.json", "locations": out / "graph_sensor_locations.csv"}
    stamps = np.datetime_as_string(series.timestamps, unit="s")
    values = series.values[:, :, 0].astype(np.int64)
    with atomic_open(paths["data"], "w", newline="") as fh:
        fh.write("timestamp," + ",".join(series.sensor_ids) + "\n")
        np.savetxt(fh, np.column_stack([stamps, values.astype(str)]), fmt="%s", delimiter=",")
    g = nx.DiGraph(weight_meaning="distance")
    for v in _node_order(road):
        a = road.nodes[v]
        g.add_node(str(a["sensor_id"]), lat=float(a["lat"]), lon=float(a["lon"]))
    for u, v, a in road.edges(data=True):
        g.add_edge(str(road.nodes[u]["sensor_id"]), str(road.nodes[v]["sensor_id"]), weight=float(a["distance"]))
    write_graph(g, paths["graph"])
    loc = ["sensor_id,latitude,longitude"] + [f"{v},{a['lat']:.6f},{a['lon']:.6f}" for v, a in g.nodes(data=True)]
    atomic_write(paths["locations"], ("\n".join(loc) + "\n").encode())
    return paths
