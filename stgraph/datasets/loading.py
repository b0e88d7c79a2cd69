"""Read a fetched dataset: its series (through :func:`stgraph.io.read_series`) and its road graph
(through :mod:`stgraph.graph`), as its manifest says.

:func:`load` fetches the files it needs (:func:`needed_files`, :func:`~.fetching.fetch`), reads the
series with the manifest's format, null value, channels and time axis (``start``/``interval`` for
files without timestamps, ``calendar: weekdays``), applies ``ids_file`` and ``subset``, builds the
graph by ``graph.method`` and checks that both hold the same sensors.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ..errors import DataFormatError, GraphError
from ..graph import from_adj_pickle, from_adjacency, from_distances
from ..io import Series, parse_interval, read_series
from .fetching import default_root, fetch
from .manifest import get_manifest
from .specs import Manifest

__all__ = ["Dataset", "load", "needed_files"]

_READ_FORMAT = {"pandas-h5": "hdf5", "npz": "npz", "csv": "csv"}


@dataclass
class Dataset:
    """A loaded dataset; unpacks as ``series, graph = load(name)``."""

    name: str
    series: Series
    graph: nx.DiGraph
    manifest: Manifest
    paths: dict[str, Path] = field(default_factory=dict)
    root: Path | None = None

    def __iter__(self):
        yield self.series
        yield self.graph

    def __repr__(self) -> str:
        v = getattr(self.series, "values", None)
        shape = tuple(v.shape) if v is not None else "?"
        return (f"Dataset({self.name!r}, series{shape}, graph: "
                f"{self.graph.number_of_nodes()} nodes / {self.graph.number_of_edges()} edges, "
                f"root={str(self.root)!r})")



def needed_files(m: Manifest) -> set[str]:
    """Files (or archive members) :func:`load` reads: series, graph, ids, metadata."""
    names = {m.data_file, m.graph.file}
    for extra in (m.ids_file, m.graph.ids_file, m.subset.file if m.subset else None):
        if extra:
            names.add(extra)
    return names


def _interval(m: Manifest) -> np.timedelta64:
    """The manifest's sampling interval as ``np.timedelta64[ns]`` (validated when the manifest was read)."""
    return parse_interval(m.interval)


def _read_headerless_csv(m: Manifest, path: Path):
    """A CSV of numbers with no header and no time column (STGCN's ``V_228.csv``)."""
    try:
        values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataFormatError(f"'{path}': expected a header-less CSV of numbers "
                              f"(one row per time step, one column per sensor); {e}") from None
    null = m.null_value
    t0 = np.datetime64(str(m.start).replace(" ", "T"), "ns")
    step = _interval(m)
    stamps = t0 + np.arange(values.shape[0], dtype=np.int64) * step
    ids = [str(i) for i in range(values.shape[1])]
    return Series(values[:, :, None], stamps, ids, list(m.channels), null, str(path))


def _read_ids(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig")
    return [t for t in re.split(r"[\s,]+", text.strip()) if t]


def _with(series, **changes):
    kw = dict(values=series.values, timestamps=series.timestamps, sensor_ids=series.sensor_ids,
              channels=series.channels, null_value=series.null_value, source=series.source,
              null_origin=series.null_origin)
    kw.update(changes)
    return Series(**kw)


def _weekday_stamps(m: Manifest, steps: int, path) -> Any:
    step = _interval(m)
    per_day = int(np.timedelta64(1, "D") // step)
    if per_day < 1:
        raise DataFormatError(f"'{m.path}': field 'interval': found {m.interval!r}; expected at most one day "
                              f"with calendar: weekdays. Fix the manifest")
    if steps % per_day:
        raise DataFormatError(
            f"'{path}': {steps} time steps is not a whole number of days of {per_day} "
            f"{m.interval} steps; expected calendar 'weekdays' data to hold whole days. "
            f"Check the file or set calendar: all in the manifest")
    ndays = steps // per_day
    first = np.datetime64(str(m.start).replace(" ", "T")[:10], "D")
    span = np.arange(first, first + np.timedelta64(ndays * 2 + 14, "D"))
    days = span[np.is_busday(span)][:ndays]
    offsets = np.arange(per_day) * step
    return (days.astype("datetime64[ns]")[:, None] + offsets[None, :]).reshape(-1)


def _read_meta(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise DataFormatError(f"'{path}': metadata table is empty; expected a header and rows")
    return [h.strip() for h in rows[0]], [r for r in rows[1:] if r]


def _subset_rows(m: Manifest, path: Path) -> tuple[list[str], list[int] | None]:
    """Sensor ids (and adjacency indices) of the rows selected by ``m.subset``."""
    s = m.subset
    header, rows = _read_meta(path)
    need = [c for c in (s.column, s.id_column, s.index_column) if c is not None]
    absent = [c for c in need if c not in header]
    if absent:
        raise DataFormatError(f"'{path}': metadata has no column(s) {absent}; found {header}. "
                              f"Fix the manifest's 'subset' or use the published metadata file")
    ci, ii = header.index(s.column), header.index(s.id_column)
    xi = header.index(s.index_column) if s.index_column else None
    wanted = {str(v) for v in s.values}
    ids, index = [], []
    for r in rows:
        cell = r[ci].strip()
        try:
            cell = str(int(float(cell)))
        except ValueError:
            pass
        if cell in wanted:
            ids.append(r[ii].strip())
            if xi is not None:
                index.append(int(float(r[xi])))
    if not ids:
        raise DataFormatError(f"'{path}': no row has {s.column} in {sorted(wanted)}; "
                              f"expected the sensors of {m.name}")
    return ids, (index if xi is not None else None)


def _build_graph(m: Manifest, paths: dict[str, Path], series, subset_index) -> nx.DiGraph:
    spec = m.graph
    path = paths[spec.file]
    ids = list(series.sensor_ids)
    if spec.method == "adj-pickle":
        return from_adj_pickle(path)
    if spec.method == "distances":
        gids = _read_ids(paths[spec.ids_file]) if spec.ids_file else ids
        return from_distances(path, gids, sigma=spec.sigma, threshold=spec.threshold,
                              kernel=spec.kernel or "gaussian")
    if spec.method == "distance-matrix":
        try:
            d = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise DataFormatError(f"'{path}': expected an N x N header-less CSV of distances; "
                                  f"{e}") from None
        if d.shape != (len(ids), len(ids)):
            raise DataFormatError(f"'{path}': distance matrix has shape {d.shape}; expected "
                                  f"({len(ids)}, {len(ids)}) for the {len(ids)} sensors of "
                                  f"{m.name}. Check that the two files belong together")
        i, j = np.nonzero(np.isfinite(d) & ~np.eye(len(ids), dtype=bool))
        rows = np.empty((len(i), 3), dtype=object)
        rows[:, 0] = np.asarray(ids, dtype=object)[i]
        rows[:, 1] = np.asarray(ids, dtype=object)[j]
        rows[:, 2] = d[i, j]
        return from_distances(rows, ids, sigma=spec.sigma, threshold=spec.threshold,
                              kernel=spec.kernel or "gaussian")
    if spec.method == "adj-npy":
        adj = np.load(path, mmap_mode="r", allow_pickle=False)
        if subset_index is not None:
            idx = np.asarray(subset_index, dtype=np.int64)
            if idx.max(initial=-1) >= adj.shape[0]:
                raise DataFormatError(f"'{path}': adjacency has {adj.shape[0]} rows but the "
                                      f"metadata indexes row {int(idx.max())}; the files do not "
                                      f"belong together")
            adj = adj[np.ix_(idx, idx)]
        return from_adjacency(np.asarray(adj), ids, source=path)
    raise GraphError(f"{m.path}: graph.method {spec.method!r} is not supported")  # pragma: no cover


def load(name: str | Manifest, root: str | os.PathLike | None = None, *, download: bool = True,
         progress: bool = True, manifests=None, timeout: float = 60, retries: int = 3
         ) -> Dataset:
    """Fetch (see :func:`fetch`), read and return dataset ``name``.

    Only the files it reads are required (see :func:`needed_files`); e.g. a
    missing sensor-locations file does not stop it.

    The series is read with :func:`stgraph.io.read_series` using the
    manifest's ``format``, ``key``, ``null_value``, ``channels`` and, for files
    without timestamps, ``start`` and ``interval``; sensor ids come from
    ``ids_file`` when given; ``subset`` picks a sub-network's sensors;
    ``calendar: weekdays`` lays the steps on weekdays only (PeMSD7). The graph
    is built by :mod:`stgraph.graph` as ``graph.method`` says.

    Returns:
        :class:`Dataset` (``series, graph = load(...)`` also works).

    Raises:
        ConfigError, MissingFileError, DownloadError: see :func:`fetch`.
        DataFormatError: the files do not match the manifest (sensor count,
            shapes, metadata columns).
        GraphError: the graph's sensors differ from the series' sensors.
    """
    m = get_manifest(name, manifests)
    root_p = Path(root).expanduser() if root is not None else default_root()
    paths = fetch(m, root_p, download=download, progress=progress, timeout=timeout,
                  retries=retries, files=needed_files(m))
    data_path = paths[m.data_file]
    if m.format == "csv" and not m.header:
        series = _read_headerless_csv(m, data_path)
    else:
        timeless = m.format in ("npz", "csv") and m.start is not None
        series = read_series(
            data_path, format=_READ_FORMAT[m.format], null_value=m.null_value,
            start=m.start if timeless else None, freq=m.interval if timeless else None,
            channels=list(m.channels), key=m.key)
    if m.ids_file:
        ids = _read_ids(paths[m.ids_file])
        if len(ids) != len(series.sensor_ids):
            raise DataFormatError(
                f"'{paths[m.ids_file]}': {len(ids)} sensor ids for {len(series.sensor_ids)} "
                f"sensor columns in '{data_path}'; expected one id per column. The files do not "
                f"belong together")
        series = _with(series, sensor_ids=ids)
    subset_index = None
    if m.subset is not None:
        ids, subset_index = _subset_rows(m, paths[m.subset.file])
        pos = {s: i for i, s in enumerate(series.sensor_ids)}
        absent = [s for s in ids if s not in pos]
        if absent:
            raise DataFormatError(
                f"'{data_path}': {len(absent)} sensors of {m.name} listed in "
                f"'{paths[m.subset.file]}' have no column, e.g. {absent[:5]}; expected every "
                f"selected sensor in the series file")
        cols = np.asarray([pos[s] for s in ids], dtype=np.int64)
        series = _with(series, values=series.values[:, cols, :], sensor_ids=ids)
    if m.calendar == "weekdays":
        series = _with(series, timestamps=_weekday_stamps(m, series.values.shape[0], data_path))
    series.null_origin = f"the {m.name} manifest's convention"
    n = len(series.sensor_ids)
    if n != m.sensors:
        raise DataFormatError(
            f"'{data_path}': {n} sensors; the manifest of {m.name} ({m.path}) expects "
            f"{m.sensors}. The file is not the published one, or the manifest's 'sensors' is wrong")
    graph = _build_graph(m, paths, series, subset_index)
    gnodes = {str(v) for v in graph.nodes}
    if gnodes != set(series.sensor_ids):
        extra = sorted(gnodes - set(series.sensor_ids))[:5]
        lack = sorted(set(series.sensor_ids) - gnodes)[:5]
        raise GraphError(
            f"'{paths[m.graph.file]}': graph sensors differ from the series in '{data_path}' "
            f"(only in graph: {extra}, only in series: {lack}); expected the same "
            f"{n} sensors. Check that the graph file belongs to this dataset")
    return Dataset(name=m.name, series=series, graph=graph, manifest=m, paths=paths, root=root_p)
