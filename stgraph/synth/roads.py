"""What the simulators share: the time axis, the road links along which traffic flows, which way each
sensor heads (towards the city centre or away), smoothing along the roads and Gaussian daily bumps.
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np

from ..errors import SeriesError

__all__ = ["time_axis", "road_predecessors", "road_graph", "upstream", "inbound_score", "smooth_on_graph", "gauss"]


def time_axis(start, days: float, interval_minutes: float) -> np.ndarray:
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


def road_predecessors(graph: nx.DiGraph, nodes: list) -> list[list[int]]:
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


def road_graph(preds: list[list[int]]) -> nx.DiGraph:
    """The road links ``u -> v`` for every upstream neighbour ``u`` in ``preds[v]``; nodes ``0..N-1``."""
    road = nx.DiGraph()
    road.add_nodes_from(range(len(preds)))
    road.add_edges_from((u, v) for v, ps in enumerate(preds) for u in ps)
    return road


def upstream(against: nx.DiGraph, src: int, max_hops: int) -> list[tuple[int, int]]:
    """``(node, hops)`` for ``src`` and the nodes upstream of it within ``max_hops`` road links
    (breadth-first search on the reversed road graph ``against``, hops = shortest hop count)."""
    return list(nx.single_source_shortest_path_length(against, src, cutoff=max_hops).items())


def inbound_score(graph: nx.DiGraph, nodes: list, rng: np.random.Generator) -> np.ndarray:
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


def smooth_on_graph(x: np.ndarray, preds: list[list[int]], rounds: int = 2) -> np.ndarray:
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


def gauss(t: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    z = (t[:, None] - mu[None, :].astype(np.float32)) / sd[None, :].astype(np.float32)
    return np.exp(np.float32(-0.5) * z * z)
