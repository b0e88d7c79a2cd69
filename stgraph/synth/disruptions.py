"""Disruptions of simulated traffic: incidents (random and given) whose queue spreads upstream, and
outages (network-wide gaps, multi-hour outages, short dropouts) recorded as the null value.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import networkx as nx
import numpy as np

from .roads import upstream

__all__ = ["Incident", "Outage", "random_incidents", "incident_drop", "outages"]


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


def random_incidents(rng, n: int, total_minutes: float, step_min: float, rate: float,
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


def outages(rng, T: int, n: int, step_min: float, ratio: float, ids: list[str]):
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


def incident_drop(inc_list: list[Incident], hop_decay: np.ndarray, against: nx.DiGraph, id_pos: dict[str, int],
                  T: int, n: int, step_min: float, lag_min: float, recovery_min: float = 25.0,
                  rise_min: float = 10.0, max_hops: int = 8) -> np.ndarray:
    """``[T, N]`` float32 share of the speed each incident's queue takes, in ``[0, 0.92]``.

    The queue reaches the nodes upstream of the incident (``against``: the reversed road graph) ``lag_min``
    minutes per hop later, ``hop_decay`` weaker per hop (one per incident), rises over ``rise_min`` minutes
    and clears after the incident with a ``recovery_min`` recovery."""
    inc_drop = np.zeros((T, n), dtype=np.float32)
    cache: dict[int, list[tuple[int, int]]] = {}
    for inc, dec in zip(inc_list, hop_decay):
        src = id_pos[inc.sensor_id]
        if src not in cache:
            cache[src] = upstream(against, src, max_hops)
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
    return inc_drop
