"""Synthetic text reports that carry what 0/1 incident flags do not: severity, expected duration, planned events.

* **Incident reports** (:func:`incident_reports`): each simulated incident (:class:`stgraph.synth.Incident`,
  whose speed drop grows with its ``severity`` and lasts its ``duration_steps``) gets a report 0-10 minutes
  after it starts, at its sensor, from varied templates: the words say how bad (``minor`` / ``major``, lanes
  blocked, the cause) and for how long (``expect 90 minutes``, a stated duration within +-20 % of the true
  one, rounded to 5 minutes), with paraphrases and typos (a letter swapped in 1 word of 12).
* **Planned events** (:func:`planned_events`): a venue sensor; on about half of the evenings an event (a
  match or a concert) ends between 21:00 and 23:30 and raises demand near the venue: speeds at the venue and
  the sensors upstream within 2 hops drop by up to 45 % (big events) or 20 % (small) for 30-60 minutes
  after the end. A real event is on the schedule long before it happens, so its notice is published at the
  start of its day (00:00), placed by the venue's ``lat`` / ``lon``, saying what, how big, when it ends and for
  how long crowds are expected; its ``end`` is that stated end of the crowds (the notice's own words).
* **Noise** (:func:`noise_reports`): irrelevant reports (road works next month, a lost dog, clear skies) at
  random sensors and times, some network-wide; about ``rate`` a day per 10 sensors.

:func:`write_reports` writes ``reports.csv`` (``timestamp,sensor,lat,lon,end,text``; :mod:`stgraph.io.reports`;
``end`` empty but for the event notices).
:func:`affected_mask` gives the ``[T, N]`` steps an incident or event touches (the benchmark's "affected
steps"). Everything is drawn from its own seeded stream: same seed, same reports.
"""
from __future__ import annotations

import math

import numpy as np

from ..cells import safe_cell
from ..files import atomic_open
from ..io.series import Series, iso, null_mask
from .roads import road_graph, road_predecessors, upstream

__all__ = ["incident_reports", "planned_events", "noise_reports", "write_reports", "affected_mask"]

_CAUSE = {"minor": ["fender bender", "stalled car", "debris on the road", "minor collision"],
          "moderate": ["two-car collision", "vehicle fire", "spilled load"],
          "major": ["jack-knifed lorry", "overturned truck", "multi-vehicle crash"]}
_LANES = {"minor": ["right shoulder blocked", "one lane blocked", "left lane partly blocked"],
          "moderate": ["two lanes blocked", "two right lanes closed", "two left lanes blocked"],
          "major": ["all lanes blocked", "three lanes closed", "road fully closed"]}
_DURATION = ["expect {m} minutes", "clearance expected in about {m} min", "should be cleared within {m} minutes",
             "est. duration {m} min", "delays for around {m} minutes", "expected to last {m} min"]
_OPEN = ["{grade} incident: {cause}, {lanes}", "{cause} reported, {lanes} ({grade})", "{Grade}: {lanes} after a {cause}",
         "traffic alert - {cause}; {lanes}", "{lanes} due to {cause}, {grade} delays"]
_NOISE = ["road works planned on this corridor next month", "lost dog seen near the exit ramp",
          "clear skies and dry roads", "new speed camera installed", "billboard maintenance on the overpass",
          "community cleanup event next weekend", "reminder: toll rates change next year"]


def _grade(severity: float) -> str:
    return "minor" if severity < 0.4 else "moderate" if severity < 0.6 else "major"


def _typos(text: str, rng: np.random.Generator, p: float = 1 / 12) -> str:
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) > 3 and w.isalpha() and rng.random() < p:
            j = int(rng.integers(0, len(w) - 1))
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def incident_reports(incidents, timestamps: np.ndarray, step_min: float, seed: int = 0) -> list[tuple]:
    """``[(time, sensor, lat, lon, end, text), ...]``: one report per incident (module docstring)."""
    rng = np.random.default_rng([int(seed), 2701])
    rows = []
    for inc in incidents:
        if inc.start_step >= len(timestamps):
            continue
        g = _grade(inc.severity)
        minutes = inc.duration_steps * step_min * rng.uniform(0.8, 1.2)
        words = {"grade": g, "Grade": g.capitalize(), "cause": rng.choice(_CAUSE[g]), "lanes": rng.choice(_LANES[g])}
        text = rng.choice(_OPEN).format(**words) + ", " + rng.choice(_DURATION).format(m=int(5 * round(minutes / 5)))
        when = timestamps[max(0, inc.start_step)] + np.timedelta64(int(rng.integers(0, 11)), "m")
        rows.append((when, inc.sensor_id, "", "", "", _typos(text, rng)))
    return rows


def planned_events(series: Series, graph, seed: int = 0) -> tuple[Series, list[tuple], list[tuple]]:
    """Evening events at a venue: ``(series with their demand, notices, [(venue node, first step, last step,
    nodes reached, step the notice is published), ...])`` (module docstring). ``graph``: the synthetic road network (node ``lat`` / ``lon``)."""
    from .layout import node_order

    rng = np.random.default_rng([int(seed), 2702])
    nodes = node_order(graph)
    against = road_graph(road_predecessors(graph, nodes)).reverse(copy=False)
    venue = int(rng.integers(0, len(nodes)))
    reach = upstream(against, venue, 2)
    lat, lon = (float(graph.nodes[nodes[venue]][k]) for k in ("lat", "lon"))
    ts = series.timestamps.astype("datetime64[ns]")
    step_min = float((ts[1] - ts[0]) / np.timedelta64(1, "m"))
    values = series.values.copy()
    null = null_mask(values, series.null_value)
    notices, events = [], []
    for day in np.unique(ts.astype("datetime64[D]")):
        if rng.random() >= 0.5:
            continue
        big = bool(rng.random() < 0.5)
        end = day + np.timedelta64(int(21 * 60 + 30 * rng.integers(0, 6)), "m")
        span = int(rng.integers(6, 13)) * 5                       # 30-60 minutes of leaving crowds
        a = int(np.searchsorted(ts, end))
        b = int(np.searchsorted(ts, end + np.timedelta64(span, "m")))
        if a >= len(ts):
            continue
        u = (np.arange(a, b) - a + 0.5) / max(b - a, 1)
        shape = np.sin(np.pi * u) ** 0.5                          # [b - a]
        for node, h in reach:
            drop = (0.45 if big else 0.2) * 0.7 ** h * shape
            values[a:b, node, 0] = np.where(null[a:b, node, 0], values[a:b, node, 0],
                                            values[a:b, node, 0] * (1 - drop))
        what = rng.choice(["sold-out concert", "championship match", "big festival"] if big else
                          ["small club match", "community concert", "school game"])
        clock = str(end.astype("datetime64[m]"))[11:16]
        text = rng.choice(["{w} at the stadium ends at {c}, heavy traffic expected for {s} minutes afterwards",
                           "stadium: {w} finishing {c}; expect crowds leaving for about {s} min",
                           "event notice - {w} ends {c}, congestion near the venue for {s} minutes"]).format(
            w=what, c=clock, s=span)
        crowds_end = iso(end + np.timedelta64(span, "m")).replace("T", " ")[:16]
        notices.append((day.astype("datetime64[ns]"), "", f"{lat:.6f}", f"{lon:.6f}", crowds_end, _typos(text, rng)))
        events.append((venue, a, b, [n for n, _ in reach], int(np.searchsorted(ts, day.astype("datetime64[ns]")))))
    out = Series(values.astype(np.float32), series.timestamps, series.sensor_ids, series.channels,
                 series.null_value, source=series.source, null_origin=series.null_origin)
    return out, notices, events


def noise_reports(timestamps: np.ndarray, sensor_ids, seed: int = 0, rate: float = 3.0) -> list[tuple]:
    """Irrelevant reports, about ``rate`` a day per 10 sensors; one in five network-wide."""
    rng = np.random.default_rng([int(seed), 2703])
    days = (timestamps[-1] - timestamps[0]) / np.timedelta64(1, "D")
    n = int(rng.poisson(rate * days * max(1.0, len(sensor_ids) / 10)))
    rows = []
    for _ in range(n):
        t = timestamps[int(rng.integers(0, len(timestamps)))]
        s = "" if rng.random() < 0.2 else str(sensor_ids[int(rng.integers(0, len(sensor_ids)))])
        rows.append((t, s, "", "", "", _typos(str(rng.choice(_NOISE)), rng)))
    return rows


def write_reports(path, rows: list[tuple]) -> None:
    """``reports.csv``: ``timestamp,sensor,lat,lon,end,text``, rows ``(time, sensor, lat, lon, end, text)`` in
    time order."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    with atomic_open(path, "w", newline="") as fh:
        fh.write("timestamp,sensor,lat,lon,end,text\n")
        for t, s, la, lo, end, text in rows:
            fh.write(f"{iso(t).replace('T', ' ')[:16]},{safe_cell(s)},{la},{lo},{end},\"{text}\"\n")


def affected_mask(incidents, events, graph, T: int, step_min: float, hops: int = 2,
                  reported: bool = False) -> np.ndarray:
    """``[T, N]`` bool: steps at an incident's sensor and the sensors upstream within ``hops``, from its start
    to 30 minutes after its end, and the steps of each event's crowds at the sensors it reaches.

    ``reported``: instead ``[T, N]`` int64, the step from which the disruption touching that step is foreseeable
    (an incident from its start, which its flag shows and its report follows within 10 minutes; an event from its
    notice's publication), a large number where none touches it: a forecast issued at step ``o`` can know of the
    steps with ``value <= o``."""
    from .layout import node_order

    nodes = node_order(graph)
    pos = {str(graph.nodes[v].get("sensor_id", v)): i for i, v in enumerate(nodes)}
    against = road_graph(road_predecessors(graph, nodes)).reverse(copy=False)
    never = np.iinfo(np.int64).max // 2
    since = np.full((T, len(nodes)), never, np.int64)
    tail = int(math.ceil(30 / step_min))
    for inc in incidents:
        a, b = max(0, inc.start_step), min(T, inc.start_step + inc.duration_steps + tail)
        for node, _ in upstream(against, pos[inc.sensor_id], hops):
            since[a:b, node] = np.minimum(since[a:b, node], inc.start_step)
    for _, a, b, reach, notice in events:
        since[a:b, reach] = np.minimum(since[a:b, reach], notice)
    return since if reported else since < never
