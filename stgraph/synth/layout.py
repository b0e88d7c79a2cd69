"""The synthetic road network: freeway corridors of loop detectors around a city centre.

:func:`make_road_network` lays out a few freeway corridors around a city centre (Los Angeles by
default), each carried by two directed chains of loop detectors (one per direction of travel),
with on/off ramps branching from the mainline and interchanges where corridors cross.

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
is never shorter than the straight line (``networkx.single_source_dijkstra`` on the
directed road links). Then, exactly as DCRNN's
``gen_adj_mx.py``::

    sigma  = std(candidate distances)            # graph.graph["sigma"]
    weight = exp(-(distance / sigma) ** 2)
    keep the pair as an edge if weight >= 0.1    # graph.graph["threshold"]

If the thresholded graph is not weakly connected, the shortest dropped pairs
that join two of its pieces are put back (Kruskal order, ``networkx.utils.UnionFind``), so every edge with
``weight < threshold`` is a bridge of the graph. Edge attributes are
``distance`` (metres), ``weight``, ``hops`` (road links on the shortest path;
1 for a direct link) and ``kind`` (``mainline``, ``ramp``, ``interchange``,
``connector`` or ``multi-hop``). ``graph.graph["candidates"]`` lists every
candidate ``(from, to, distance)``.

Determinism: the same arguments and seed give identical graphs and arrays.
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
from networkx.utils import UnionFind

from ..errors import GraphError, SeriesError

__all__ = ["PRESETS", "LA_CENTRE", "MIN_SENSORS", "preset", "haversine_m", "make_road_network", "node_order", "rng_stream"]

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


def rng_stream(seed: int, tag: int) -> np.random.Generator:
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


def _connect_pieces(lay: _Layout, lat: np.ndarray, lon: np.ndarray) -> None:
    """Join pieces of the road network that no interchange reached (small
    networks with corridors that do not cross) by connector roads between
    their closest sensors, in both directions."""
    n = len(lay.xy)
    while True:
        pieces = UnionFind(range(n))
        for u, v, _, _ in lay.links:
            pieces.union(u, v)
        roots = np.array([pieces[i] for i in range(n)])
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


def _direct_links(links: list[tuple[int, int, str, float]], dist: np.ndarray) -> dict[tuple[int, int], tuple[float, str]]:
    """``{(u, v): (distance, kind)}`` of the road links; of parallel links the shortest (the first on a tie)."""
    direct: dict[tuple[int, int], tuple[float, str]] = {}
    for (u, v, kind, _), d in zip(links, dist):
        if (u, v) not in direct or d < direct[(u, v)][0]:
            direct[(u, v)] = (float(d), kind)
    return direct


def _candidate_pairs(n: int, direct: dict[tuple[int, int], tuple[float, str]],
                     reach_m: float) -> list[tuple[int, int, float, int, str]]:
    """Every directed pair within ``reach_m`` of road distance (Dijkstra on the directed road
    links ``direct``), plus every direct link whatever its length: ``(u, v, distance, hops, kind)``."""
    road = nx.DiGraph()
    road.add_nodes_from(range(n))
    road.add_weighted_edges_from((u, v, d) for (u, v), (d, _) in direct.items())
    out: list[tuple[int, int, float, int, str]] = []
    for src in range(n):
        length, path = nx.single_source_dijkstra(road, src, cutoff=reach_m)
        best = {v: (d, len(path[v]) - 1) for v, d in length.items()}
        for v, a in road[src].items():  # a direct link is a candidate even beyond reach_m
            if v not in best or a["weight"] < best[v][0]:
                best[v] = (a["weight"], 1)
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
    rng = rng_stream(seed, 1)
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

    direct = _direct_links(lay.links, link_dist)
    cands = _candidate_pairs(n, direct, reach_km * 1000.0)
    cands.sort(key=lambda c: (c[0], c[1]))
    dist = np.round(np.array([c[2] for c in cands]), 1)
    sigma = float(dist.std())
    if not sigma > 0:
        sigma = float(dist.mean()) or 1.0
    weight = np.exp(-np.square(dist / sigma))
    keep = weight >= threshold

    # restore the shortest dropped pairs needed for weak connectivity (Kruskal)
    pieces = UnionFind(range(n))
    for (u, v, *_), k in zip(cands, keep):
        if k:
            pieces.union(u, v)
    for i in np.argsort(dist, kind="stable"):
        u, v = cands[i][0], cands[i][1]
        if not keep[i] and pieces[u] != pieces[v]:
            pieces.union(u, v)
            keep[i] = True

    ids = [str(_ID_BASE + i) for i in range(n)]
    g = nx.DiGraph(name=f"synthetic-{n}", seed=int(seed), centre=(float(lat0), float(lon0)),
                   sigma=sigma, threshold=float(threshold), reach_km=float(reach_km),
                   candidates=[(ids[c[0]], ids[c[1]], float(d)) for c, d in zip(cands, dist)],
                   road_links=sorted((ids[u], ids[v], d, kind) for (u, v), (d, kind) in direct.items()))
    for i in range(n):
        g.add_node(ids[i], sensor_id=ids[i], index=i, lat=float(lat[i]), lon=float(lon[i]), **lay.attrs[i])
    for (u, v, _, hops, kind), d, w, k in zip(cands, dist, weight, keep):
        if k:
            g.add_edge(ids[u], ids[v], distance=float(d), weight=float(w), hops=int(hops), kind=kind)
    return g


def node_order(graph: nx.DiGraph) -> list:
    """Node keys by their ``index`` attribute when every node has one, else in insertion order."""
    nodes = list(graph.nodes)
    if nodes and all("index" in graph.nodes[v] for v in nodes):
        nodes.sort(key=lambda v: graph.nodes[v]["index"])
    return nodes
