"""A synthetic daily network whose mobility graph changes every day and drives the counts
(``stgraph data synth --kind daily --dynamic-graph``; :func:`write_mobility`).

Regions (``R``, uniform in the unit square, populations log-normal) exchange trips every day:

* **neighbours**: each region sends 1% of its population to each of its 4 nearest regions, every day;
* **weekdays** (Mon-Fri): each region but the three largest (the hubs) commutes 8% of its population to its
  nearest hub;
* **weekends**: each region sends 6% of its population to its nearest of three leisure regions instead;
* **events**: on a day with probability 0.25 an event starts in a random region for 2-5 days; 8 random regions
  send 15% of their population to it while it lasts.

Every trip count gets multiplicative noise (log-normal, sigma 0.1). The counts (new cases a day) are driven by
the flows: what arrives at region ``j`` on day ``t`` is ``a_t[j] = y_t[j] * stay_j + 3 * sum_i y_t[i] *
trips_t[i -> j] / pop_i`` (travellers mix three times as much as those who stay), and the expected count is
``lambda_t[j] = base_j + 0.6 * sum_{k=1..7} g_k a_{t-k}[j]`` with the delay ``g = (.10, .18, .20, .17, .14, .11,
.10)`` (an incubation time), ``y_t ~ Poisson(lambda_t)``. So the flows of the last observed day shape the counts
of each of the next seven days: the graph of a window's last input step carries information at every horizon of
a 7-day forecast, which the same flows averaged over time (the mean static graph) do not.

Files (:func:`write_mobility`): ``cases.csv`` (``timestamp`` + one column per region), ``mobility.csv``
(``timestamp,source,target,weight`` with weight = ``log1p(trips) / log1p(largest trips)``, the flow transform of
:func:`stgraph.graph.convert.edge_similarity`, so it reads as similarities without flags) and
``mobility_mean.csv`` (``source,target,weight``: the mean of those weights over all days, a pair absent on a day
counting 0: the static graph a user would build). Deterministic for a seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..files import atomic_write, owned_outputs
from ..io.series import Series

__all__ = ["simulate_mobility", "write_mobility", "DELAY", "MIN_REGIONS"]

#: share of a day's arrivals that turns into cases 1..7 days later
DELAY = np.array([0.10, 0.18, 0.20, 0.17, 0.14, 0.11, 0.10])
_HUBS, _LEISURE, _NEIGHBOURS, _EVENT_SOURCES = 3, 3, 4, 8
#: fewest regions the layout works with
MIN_REGIONS = 8


def _layout(rng, R: int):
    xy = rng.random((R, 2))
    pop = np.exp(rng.normal(np.log(50_000), 0.6, R))
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(R) * 1e9  # R is a few dozen: the generator's own
    hubs = np.argsort(-pop)[:_HUBS]
    leisure = rng.choice(np.setdiff1d(np.arange(R), hubs), _LEISURE, replace=False)
    near = np.argsort(d, axis=1)[:, :_NEIGHBOURS]
    return xy, pop, d, hubs, leisure, near


def _day_edges(rng, R, pop, d, hubs, leisure, near, weekday: bool, events: list):
    """``(src, dst, trips)`` of one day (pairs may repeat: summed by the caller)."""
    src = [np.repeat(np.arange(R), _NEIGHBOURS)]
    dst = [near.reshape(-1)]
    share = [np.full(R * _NEIGHBOURS, 0.01)]
    targets, frac = (hubs, 0.08) if weekday else (leisure, 0.06)
    go = np.setdiff1d(np.arange(R), targets)
    src.append(go)
    dst.append(targets[np.argmin(d[np.ix_(go, targets)], axis=1)])
    share.append(np.full(go.size, frac))
    for e, sources in events:
        src.append(sources)
        dst.append(np.full(sources.size, e))
        share.append(np.full(sources.size, 0.15))
    src, dst, share = np.concatenate(src), np.concatenate(dst), np.concatenate(share)
    trips = share * pop[src] * np.exp(rng.normal(0, 0.1, src.size))
    key, inv = np.unique(src * R + dst, return_inverse=True)
    return key // R, key % R, np.bincount(inv, weights=trips)


def simulate_mobility(num_regions: int = 40, days: int = 730, seed: int = 0, start="2012-03-05"):
    """Simulate the network (module docstring).

    Returns:
        ``(series, flows)``: a :class:`~stgraph.io.series.Series` ``[days, R, 1]`` of daily cases (channel
        ``cases``, ids ``r0..``) and per day ``(src [E_t], dst [E_t], trips [E_t])``.
    """
    rng = np.random.default_rng(seed)
    R = int(num_regions)
    if R < MIN_REGIONS:
        raise ConfigError(f"num_regions is {R}; the mobility network needs at least {MIN_REGIONS} regions (3 hubs, "
                          f"3 leisure regions, 4 neighbours each)")
    xy, pop, d, hubs, leisure, near = _layout(rng, R)
    base = 0.0002 * pop
    t0 = np.datetime64(start, "D")
    stamps = t0 + np.arange(days)
    weekday = ((stamps.astype("datetime64[D]").view("int64") - 4) % 7) < 5  # 1970-01-05 was a Monday
    arrivals = np.zeros((days, R))
    y = np.zeros((days, R))
    flows, events = [], []
    for t in range(days):
        events = [(e, s, end) for e, s, end in events if end > t]  # (region, source regions, last day + 1)
        if rng.random() < 0.25:
            e = int(rng.integers(R))
            sources = rng.choice(np.setdiff1d(np.arange(R), [e]), min(_EVENT_SOURCES, R // 2), replace=False)
            events.append((e, sources, t + int(rng.integers(2, 6))))
        src, dst, trips = _day_edges(rng, R, pop, d, hubs, leisure, near, bool(weekday[t]),
                                     [(e, s) for e, s, _ in events])
        flows.append((src, dst, trips))
        k = np.arange(1, min(t, len(DELAY)) + 1)
        lam = base + 0.6 * (DELAY[k - 1, None] * arrivals[t - k]).sum(0)
        y[t] = rng.poisson(lam)
        stay = 1.0 - np.bincount(src, weights=trips, minlength=R) / pop
        arrivals[t] = y[t] * stay + 3.0 * np.bincount(dst, weights=y[t][src] * trips / pop[src], minlength=R)
    series = Series(y[:, :, None].astype(np.float32), stamps.astype("datetime64[ns]"), [f"r{i}" for i in range(R)],
                    ["cases"], float("nan"), source="synthetic mobility network")
    return series, flows


def write_mobility(out_dir, num_regions: int = 40, days: int = 730, seed: int = 0, start="2012-03-05", *,
                   force: bool = False) -> dict[str, Path]:
    """Write ``cases.csv``, ``mobility.csv`` (the dynamic graph) and ``mobility_mean.csv`` (its mean static graph)
    into ``out_dir`` (module docstring). Returns ``{'data', 'graph', 'mean_graph'}`` -> path."""
    series, flows = simulate_mobility(num_regions, days, seed, start)
    out = Path(out_dir)
    paths = {"data": out / "cases.csv", "graph": out / "mobility.csv", "mean_graph": out / "mobility_mean.csv"}
    ids = series.sensor_ids
    top = np.log1p(max(float(f[2].max()) for f in flows))
    stamps = np.datetime_as_string(series.timestamps, unit="D")
    rows = ["timestamp,source,target,weight"]
    R = len(ids)
    total = np.zeros(R * R)
    for day, (src, dst, trips) in zip(stamps, flows):
        w = np.log1p(trips) / top
        np.add.at(total, src * R + dst, w)
        rows += [f"{day},{ids[a]},{ids[b]},{x:.5f}" for a, b, x in zip(src, dst, w)]
    mean = total / len(flows)
    keep = np.flatnonzero(mean > 0)
    with owned_outputs(paths.values(), force=force):
        out.mkdir(parents=True, exist_ok=True)
        values = series.values[:, :, 0].astype(np.int64).astype(str)
        atomic_write(paths["data"], "timestamp," + ",".join(ids) + "\n"
                     + "".join(f"{s}," + ",".join(v) + "\n" for s, v in zip(stamps, values)))
        atomic_write(paths["graph"], "\n".join(rows) + "\n")
        atomic_write(paths["mean_graph"], "source,target,weight\n" + "".join(
            f"{ids[k // R]},{ids[k % R]},{mean[k]:.6f}\n" for k in keep))
    return paths
