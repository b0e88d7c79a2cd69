"""Synthetic datasets on disk: :func:`generate` a network and its speeds, :func:`write_synthetic` them in
the DCRNN release's layout, :func:`write_synthetic_counts` an hourly or daily counts network as a user would
bring it.

Graphs and sensor locations are written through :mod:`stgraph.graph`, the series through
:func:`stgraph.io.write_series`, every file atomically. A file already in the output folder is replaced only if
stgraph wrote it (or with ``force=True``): :func:`stgraph.files.owned_outputs`, checked for every file before
any is written.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np

from ..cells import safe_cell
from ..errors import SeriesError
from ..files import atomic_open, atomic_write, owned_outputs
from ..graph import write_graph, write_locations
from ..io import write_series
from ..io.series import Series
from .layout import make_road_network, node_order
from .counts import simulate_counts, simulate_daily_counts
from .simulate import simulate_speeds

__all__ = ["generate", "write_synthetic", "write_synthetic_counts"]


def generate(num_sensors: int = 50, days: float = 7, seed: int = 0, start="2012-03-01",
             interval_minutes: float = 5, **simulate_kwargs) -> tuple[Series, nx.DiGraph]:
    """``(series, graph)``: :func:`make_road_network` then :func:`simulate_speeds`."""
    graph = make_road_network(num_sensors, seed)
    series = simulate_speeds(graph, start=start, days=days, interval_minutes=interval_minutes,
                             seed=seed, **simulate_kwargs)
    return series, graph


def write_synthetic(out_dir, num_sensors: int = 207, days: float = 7, seed: int = 0,
                    start="2012-03-01", interval_minutes: float = 5, *, force: bool = False,
                    also=(), **simulate_kwargs) -> dict[str, Path]:
    """Generate a dataset and write it in METR-LA's / DCRNN's file layout.

    Files in ``out_dir``: ``synthetic.h5`` (pandas HDF5, as ``metr-la.h5``),
    ``adj_mx.pkl`` (``[ids, {id: index}, W]``, pickle protocol 2, no diagonal: see
    :func:`stgraph.graph.adj_mx`),
    ``distances.csv`` (``from,to,cost`` in metres, every candidate pair),
    ``graph_sensor_locations.csv`` (``index,sensor_id,latitude,longitude``)
    and ``graph_sensor_ids.txt`` (comma-separated ids).

    Returns ``{'data', 'adj', 'distances', 'locations', 'sensor_ids'}`` -> path. ``also``: names of files the
    caller writes into ``out_dir`` next, checked with these.
    """
    out = Path(out_dir)
    paths = {
        "data": out / "synthetic.h5",
        "adj": out / "adj_mx.pkl",
        "distances": out / "distances.csv",
        "locations": out / "graph_sensor_locations.csv",
        "sensor_ids": out / "graph_sensor_ids.txt",
    }
    with owned_outputs([*paths.values(), *(out / name for name in also)], force=force):
        out.mkdir(parents=True, exist_ok=True)
        series, graph = generate(num_sensors, days, seed, start, interval_minutes, **simulate_kwargs)
        write_series(series, paths["data"], layout="pandas")
        write_graph(graph, paths["adj"])
        rows = ["from,to,cost"] + [f"{safe_cell(str(u))},{safe_cell(str(v))},{d:.1f}"
                                   for u, v, d in graph.graph["candidates"]]
        atomic_write(paths["distances"], ("\n".join(rows) + "\n").encode())
        write_locations(graph, paths["locations"])
        atomic_write(paths["sensor_ids"], ",".join(series.sensor_ids).encode())
    return paths


def write_synthetic_counts(out_dir, num_sensors: int = 207, days: int = 56, seed: int = 0,
                           start="2012-03-05", interval: str = "hour", *, force: bool = False) -> dict[str, Path]:
    """The synthetic counts network as a user would bring it: ``counts.csv`` (a ``timestamp`` column and
    one column of counts per stop; no null convention, so zeros are readings), ``graph.json``
    (node-link; edge ``weight`` = road distance in metres, declared ``weight_meaning: distance``) and
    ``graph_sensor_locations.csv``. ``interval``: ``'hour'`` (hourly boardings, :func:`simulate_counts`)
    or ``'day'`` (daily counts per region, one row a day, :func:`simulate_daily_counts`).
    Returns ``{'data', 'graph', 'locations'}`` -> path."""
    simulate = {"hour": simulate_counts, "day": simulate_daily_counts}.get(interval)
    if simulate is None:
        raise SeriesError(f"interval is {interval!r}; expected 'hour' or 'day'")
    out = Path(out_dir)
    paths = {"data": out / "counts.csv", "graph": out / "graph.json", "locations": out / "graph_sensor_locations.csv"}
    with owned_outputs(paths.values(), force=force):
        out.mkdir(parents=True, exist_ok=True)
        _write_counts(paths, simulate, num_sensors, days, seed, start)
    return paths


def _write_counts(paths: dict[str, Path], simulate, num_sensors: int, days: int, seed: int, start) -> None:
    road = make_road_network(num_sensors, seed)
    series = simulate(road, start=start, days=days, seed=seed)
    stamps = np.datetime_as_string(series.timestamps, unit="s")
    values = series.values[:, :, 0].astype(np.int64)
    with atomic_open(paths["data"], "w", newline="") as fh:
        fh.write("timestamp," + ",".join(series.sensor_ids) + "\n")
        np.savetxt(fh, np.column_stack([stamps, values.astype(str)]), fmt="%s", delimiter=",")
    g = nx.DiGraph(weight_meaning="distance")
    for v in node_order(road):
        a = road.nodes[v]
        g.add_node(str(a["sensor_id"]), lat=float(a["lat"]), lon=float(a["lon"]))
    for u, v, a in road.edges(data=True):
        g.add_edge(str(road.nodes[u]["sensor_id"]), str(road.nodes[v]["sensor_id"]), weight=float(a["distance"]))
    write_graph(g, paths["graph"])
    write_locations(g, paths["locations"], index=False)
