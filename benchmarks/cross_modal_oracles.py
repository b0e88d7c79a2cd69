"""Ceilings for the cross-modal bench (``bench_cross_modal.py``): per-sensor covariate files that say, as numbers,
what a perfect reader of the incident reports would know, and what the simulation knows.

Both are observed per-sensor series (held at the last input step at the forecast steps: the origin's value), so
neither can tell of an incident that starts after the forecast origin:

* **parsed** (:func:`parsed_files`): what the words of each incident report say, read perfectly, placed as the
  reports are (its sensor and 2 hops upstream, from its publication until 30 minutes past the end its words
  state): ``parsed_sev.csv``, the middle of the severity band its grade names (minor 0.325, moderate 0.5, major
  0.675) times 0.7 per hop (the simulation's mean decay), and ``parsed_left.csv``, the minutes left until that
  stated end (read through typos, which :func:`stgraph.data.reports.stated_end` may not). The words give no more than this (the grade's band, the duration within +-20 %).
* **truth** (:func:`truth_files`): at each step ``t``, the share of the speed that the incidents started by ``t``
  will take 15, 30 and 60 minutes later at every sensor (``truth_15.csv``, ``truth_30.csv``, ``truth_60.csv``;
  the simulation's own queues, exact severity, decay per hop and duration, every hop upstream): the most any
  input that respects "a report is observed, not known ahead" could tell.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["parsed_files", "truth_files"]

_MID = {"minor": 0.325, "moderate": 0.5, "major": 0.675}


def _against(graph):
    from stgraph.synth.layout import node_order
    from stgraph.synth.roads import road_graph, road_predecessors

    nodes = node_order(graph)
    return road_graph(road_predecessors(graph, nodes)).reverse(copy=False), len(nodes)


def _write(path: Path, timestamps, ids, values: np.ndarray) -> str:
    from stgraph.synth.events import _write_table

    _write_table(path, timestamps, list(ids), values, "%.4f")
    return str(path)


def parsed_files(out: Path, series, graph, log, seed: int, after_min: float = 30.0) -> list[str]:
    """``[parsed_sev.csv, parsed_long.csv]`` under ``out`` (module docstring); ``series`` the simulated one."""
    from stgraph.synth.reports import _grade, incident_reports
    from stgraph.synth.roads import upstream

    ts = series.timestamps.astype("datetime64[ns]")
    step_min = float((ts[1] - ts[0]) / np.timedelta64(1, "m"))
    against, n = _against(graph)
    pos = {s: i for i, s in enumerate(series.sensor_ids)}
    sev = np.zeros((len(ts), n), np.float32)
    left = np.zeros((len(ts), n), np.float32)
    rows = incident_reports(log.incidents, series.timestamps, step_min, seed)   # one per incident, in its order
    for inc, (when, sensor, _, _, _, text) in zip(log.incidents, rows):
        # the only number of an incident report is its stated minutes (a typo may hide the unit from stated_end)
        end = np.datetime64(when, "ns") + np.timedelta64(int(re.search(r"\d+", text).group()), "m")
        a = int(np.searchsorted(ts, when))
        b = int(np.searchsorted(ts, end + np.timedelta64(int(after_min), "m")))
        until = ((end - ts[a:b]) / np.timedelta64(1, "m")).clip(0).astype(np.float32)
        for node, h in upstream(against, pos[sensor], 2):
            np.maximum(sev[a:b, node], _MID[_grade(inc.severity)] * 0.7 ** h, out=sev[a:b, node])
            np.maximum(left[a:b, node], until, out=left[a:b, node])
    return [_write(out / "parsed_sev.csv", series.timestamps, series.sensor_ids, sev),
            _write(out / "parsed_left.csv", series.timestamps, series.sensor_ids, left)]


def truth_files(out: Path, series, graph, log, ahead=(3, 6, 12)) -> list[str]:
    """``[truth_15.csv, truth_30.csv, truth_60.csv]`` under ``out`` (module docstring)."""
    from stgraph.synth.disruptions import incident_drop

    ts = series.timestamps
    T = len(ts)
    step_min = float((ts[1] - ts[0]) / np.timedelta64(1, "m"))
    against, n = _against(graph)
    pos = {s: i for i, s in enumerate(series.sensor_ids)}
    known = np.zeros((len(ahead), T, n), np.float32)
    for inc, dec in zip(log.incidents, log.hop_decay):
        drop = incident_drop([inc], np.array([dec]), against, pos, T, n, step_min, log.upstream_lag_minutes)
        s = max(0, inc.start_step)
        for j, k in enumerate(ahead):
            if s + k < T:
                known[j, s:T - k] += drop[s + k:]
    np.clip(known, 0.0, 0.92, out=known)
    return [_write(out / f"truth_{int(k * step_min)}.csv", ts, series.sensor_ids, known[j])
            for j, k in enumerate(ahead)]
