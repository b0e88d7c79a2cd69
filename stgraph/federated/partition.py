"""Split a sensor network among ``K`` clients (road agencies).

A partition is an ``[N]`` int64 array ``labels`` aligned with the series'
``sensor_ids``: ``labels[i]`` is the client (``0 .. K-1``) that owns sensor
``i``. Every method is reproducible from its ``seed`` and gives every client at
least one sensor.

* ``by-region``: k-means (k-means++ start, seeded) on the sensors' coordinates
  (degrees: longitude scaled by cos(latitude), so distances are isotropic;
  projected metres: as they are, see :mod:`stgraph.graph.coords`), like
  neighbouring authorities each owning a contiguous area;
* ``metis``: balanced parts with few cut edges through ``pymetis`` when it is
  installed, else recursive Kernighan-Lin bisection in networkx (also balanced,
  usually a few more cut edges);
* ``random``: a seeded permutation cut into ``K`` near-equal parts;
* a partition file: CSV ``sensor_id,client`` (one row per sensor), read by
  :func:`read_partition`, written by :func:`write_partition`.

:func:`load_partition` applies a :class:`~stgraph.federated.config.FederatedConfig`'s choice to a series.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import networkx as nx
import numpy as np

from ..cells import read_cell, safe_cell
from ..errors import ConfigError, DataFormatError, GraphError, MissingFileError, where
from ..files import atomic_open, owned_outputs

METHODS = ("by-region", "metis", "random")


def partition_sensors(method: str, sensor_ids: Sequence[str], num_clients: int, *, graph: nx.DiGraph | None = None,
                      coords: np.ndarray | None = None, seed: int = 0, crs: str = "degrees") -> np.ndarray:
    """``[N]`` client of each sensor, by ``method`` (one of :data:`METHODS`).

    Args:
        method: ``'by-region'``, ``'metis'`` or ``'random'``.
        sensor_ids: the ``N`` sensor ids in series order.
        num_clients: ``K`` (``1 <= K <= N``).
        graph: the road graph (needed by ``metis``), nodes keyed by sensor id.
        coords: ``[N, 2]`` latitude, longitude in degrees, or northing, easting in metres with
            ``crs="projected"`` (needed by ``by-region``).
        seed: makes the partition reproducible.
        crs: ``"degrees"`` or ``"projected"`` (:func:`stgraph.graph.parse_crs` spellings).

    Raises:
        ConfigError: unknown method, bad ``K``, or the input a method needs is missing.
    """
    n = len(sensor_ids)
    if not isinstance(num_clients, int) or isinstance(num_clients, bool) or not 1 <= num_clients <= n:
        raise ConfigError(f"clients = {num_clients!r}: expected an integer between 1 and the number of sensors ({n})")
    if method == "by-region":
        if coords is None:
            raise ConfigError("partition 'by-region' needs sensor coordinates: give --locations "
                              "(a CSV sensor_id,latitude,longitude) or a graph whose nodes carry lat/lon")
        return _by_region(np.asarray(coords, dtype=np.float64), num_clients, seed, crs=crs)
    if method == "metis":
        if graph is None:
            raise ConfigError("partition 'metis' needs the road graph: give --graph")
        return _metis(graph, [str(s) for s in sensor_ids], num_clients, seed)
    if method == "random":
        return _random(n, num_clients, seed)
    raise ConfigError(f"partition = {method!r}: expected one of {list(METHODS)} or a partition file (.csv)")


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Number clients by the order their first sensor appears (client 0 owns sensor 0)."""
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty(labels.max() + 1, dtype=np.int64)
    remap[np.unique(labels)[order]] = np.arange(len(order))
    return remap[labels]


def _random(n: int, k: int, seed: int) -> np.ndarray:
    perm = np.random.default_rng(seed).permutation(n)
    labels = np.empty(n, dtype=np.int64)
    for c, part in enumerate(np.array_split(perm, k)):
        labels[part] = c
    return _relabel(labels)


def _by_region(coords: np.ndarray, k: int, seed: int, iters: int = 100, restarts: int = 4,
               crs: str = "degrees") -> np.ndarray:
    from ..graph import parse_crs

    crs = parse_crs(crs)
    if crs not in ("degrees", "projected"):
        raise ConfigError(f"by-region partition: crs {crs!r}; expected 'degrees' or 'projected' (convert EPSG "
                          f"coordinates when reading them, stgraph.graph.read_locations)")
    what = "latitude, longitude in degrees" if crs == "degrees" else "northing, easting in metres"
    if coords.ndim != 2 or coords.shape[1] != 2 or not np.isfinite(coords).all():
        raise ConfigError(f"coords has shape {coords.shape}; expected [N, 2] finite {what}")
    if crs == "degrees":
        lat0 = np.deg2rad(coords[:, 0].mean())
        pts = np.stack([coords[:, 0], coords[:, 1] * np.cos(lat0)], axis=1)
    else:  # planar metres: Euclidean already
        pts = coords.copy()
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centres = [pts[rng.integers(len(pts))]]
        for _ in range(1, k):  # k-means++
            d2 = np.min(((pts[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else None
            centres.append(pts[rng.choice(len(pts), p=p)])
        c = np.array(centres)
        labels = np.zeros(len(pts), dtype=np.int64)
        for _ in range(iters):
            d2 = ((pts[:, None, :] - c[None]) ** 2).sum(-1)
            new = d2.argmin(1)
            for j in range(k):  # an empty cluster takes the point farthest from its centre
                if not (new == j).any():
                    far = d2[np.arange(len(pts)), new].argmax()
                    new[far] = j
            c = np.array([pts[new == j].mean(0) for j in range(k)])
            if (new == labels).all():
                break
            labels = new
        cost = ((pts - c[labels]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = labels.copy(), cost
    return _relabel(best)


def _undirected(graph: nx.DiGraph, ids: list[str]) -> nx.Graph:
    missing = [s for s in ids if s not in graph]
    if missing:
        raise GraphError(f"graph {where(graph.graph.get('source'))} lacks {len(missing)} sensors of the series, "
                         f"e.g. {missing[:10]}; expected the graph of this series")
    g = nx.Graph()
    g.add_nodes_from(ids)
    keep = set(ids)
    g.add_edges_from((u, v) for u, v in graph.edges if u != v and u in keep and v in keep)
    return g


def _metis(graph: nx.DiGraph, ids: list[str], k: int, seed: int) -> np.ndarray:
    g = _undirected(graph, ids)
    if k == 1:
        return np.zeros(len(ids), dtype=np.int64)
    pos = {s: i for i, s in enumerate(ids)}
    try:
        import pymetis
    except ImportError:
        pymetis = None
    if pymetis is not None:
        adjacency = [[pos[v] for v in g.neighbors(s)] for s in ids]
        parts = pymetis.part_graph(k, adjacency=adjacency, options=pymetis.Options(seed=seed))
        labels = np.asarray(parts.vertex_part if hasattr(parts, "vertex_part") else parts[1], dtype=np.int64)
        if len(np.unique(labels)) == k:
            return _relabel(labels)
    labels = np.zeros(len(ids), dtype=np.int64)
    _bisect(g, list(ids), k, 0, labels, pos, seed)
    return _relabel(labels)


def _bisect(g: nx.Graph, nodes: list[str], k: int, first: int, labels: np.ndarray, pos: dict, seed: int) -> None:
    """Recursive Kernighan-Lin bisection into ``k`` parts of sizes proportional to ``ceil(k/2) : floor(k/2)``."""
    if k == 1:
        labels[[pos[s] for s in nodes]] = first
        return
    ka = (k + 1) // 2
    na = round(len(nodes) * ka / k)
    sub = g.subgraph(nodes)
    order = _bfs_order(sub, sorted(nodes, key=pos.get))  # breadth-first halves: a connected start for KL
    start = (set(order[:na]), set(order[na:]))
    a, b = nx.algorithms.community.kernighan_lin_bisection(sub, partition=start, seed=seed)
    if len(a) != na:  # KL swaps pairs, so the sizes hold, but the halves may come back in either order
        a, b = b, a
    _bisect(g, sorted(a, key=pos.get), ka, first, labels, pos, seed)
    _bisect(g, sorted(b, key=pos.get), k - ka, first + ka, labels, pos, seed)


def _bfs_order(g: nx.Graph, nodes: list[str]) -> list[str]:
    """Nodes in breadth-first order, component after component (each from its first node in ``nodes``)."""
    seen: set[str] = set()
    out: list[str] = []
    for root in nodes:
        if root in seen:
            continue
        for u in [root, *(v for _, v in nx.bfs_edges(g, root))]:
            seen.add(u)
            out.append(u)
    return out


def cut_edges(graph: nx.DiGraph, sensor_ids: Sequence[str], labels: np.ndarray) -> int:
    """Number of undirected road links whose two sensors belong to different clients."""
    g = _undirected(graph, [str(s) for s in sensor_ids])
    pos = {str(s): i for i, s in enumerate(sensor_ids)}
    return int(sum(labels[pos[u]] != labels[pos[v]] for u, v in g.edges))


def write_partition(path: str | Path, sensor_ids: Sequence[str], labels: np.ndarray, *, force: bool = False) -> Path:
    """Write CSV ``sensor_id,client`` (one row per sensor, series order); a file already at ``path`` is replaced
    only if stgraph wrote it, or with ``force`` (:func:`stgraph.files.owned_outputs`)."""
    path = Path(path)
    with owned_outputs([path], force=force):
        with atomic_open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sensor_id", "client"])
            w.writerows((safe_cell(str(s)), int(c)) for s, c in zip(sensor_ids, labels))  # stgraph.cells
    return path


def read_partition(path: str | Path, sensor_ids: Sequence[str], num_clients: int | None = None) -> np.ndarray:
    """Read a ``sensor_id,client`` CSV into ``[N]`` labels aligned with ``sensor_ids``.

    Raises:
        MissingFileError: no such file.
        DataFormatError: bad header, non-integer client, a sensor listed twice, sensors of the
            series missing from the file, unknown sensors, or a client id outside ``0 .. K-1``
            / a client without sensors.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"partition file '{path}' not found; expected a CSV sensor_id,client")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["sensor_id", "client"]:
        raise DataFormatError(f"{where(path)}: header is {rows[0] if rows else 'missing'}; expected sensor_id,client")
    pos = {str(s): i for i, s in enumerate(sensor_ids)}
    labels = np.full(len(pos), -1, dtype=np.int64)
    unknown = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise DataFormatError(f"{where(path)}: line {line} has {len(row)} field(s); expected sensor_id,client")
        sid, text = read_cell(row[0].strip()), row[1].strip()
        try:
            client = int(text)
        except ValueError:
            raise DataFormatError(f"{where(path)}: line {line}, column 'client': {text!r} is not an integer "
                                  f"client id") from None
        if sid not in pos:
            unknown.append(sid)
            continue
        if labels[pos[sid]] >= 0:
            raise DataFormatError(f"{where(path)}: line {line}: sensor {sid!r} is listed twice; expected one row "
                                  f"per sensor")
        labels[pos[sid]] = client
    if unknown:
        raise DataFormatError(f"{where(path)}: {len(unknown)} sensor(s) not in the series, e.g. {unknown[:10]}; "
                              f"expected the series' sensor ids")
    missing = [s for s, i in pos.items() if labels[i] < 0]
    if missing:
        raise DataFormatError(f"{where(path)}: {len(missing)} sensor(s) of the series have no client, e.g. "
                              f"{missing[:10]}; expected one row per sensor")
    k = int(labels.max()) + 1 if num_clients is None else num_clients
    present = set(np.unique(labels).tolist())
    if labels.min() < 0 or labels.max() >= k or present != set(range(k)):
        raise DataFormatError(f"{where(path)}: client ids found {sorted(present)}; expected every client "
                              f"0..{k - 1} to own at least one sensor")
    return labels


def load_partition(fed, series, graph: nx.DiGraph | None) -> np.ndarray:
    """``[N]`` client of each sensor of ``series`` as ``fed.partition`` says (``fed``: a
    :class:`~stgraph.federated.config.FederatedConfig`).

    ``by-region`` takes coordinates from ``fed.locations`` or, when unset, from the
    graph's nodes or a ``graph_sensor_locations.csv`` beside ``run.data.graph``.
    """
    ids = series.sensor_ids
    if str(fed.partition).endswith(".csv"):
        return read_partition(fed.partition, ids, fed.clients)
    coords, crs = None, "degrees"
    if fed.partition == "by-region":
        coords, crs = _coordinates(fed, ids, graph)
    return partition_sensors(fed.partition, ids, fed.clients, graph=graph, coords=coords, seed=fed.partition_seed,
                             crs=crs)


def _coordinates(fed, ids, graph) -> tuple[np.ndarray | None, str]:
    """``([N, 2] coordinates or None, crs)``: from ``fed.locations`` read in ``fed.crs``, else from the
    graph's nodes (projected when the graph says so), else from ``graph_sensor_locations.csv`` beside it."""
    from ..graph import parse_crs, read_locations

    path = fed.locations
    if path is None and graph is not None and all("lat" in graph.nodes[s] for s in ids if s in graph):
        crs = "projected" if graph.graph.get("crs") == "projected" else "degrees"
        return np.array([[graph.nodes[s]["lat"], graph.nodes[s]["lon"]] for s in ids]), crs
    if path is None and graph is not None and graph.graph.get("source"):
        cand = Path(str(graph.graph["source"])).with_name("graph_sensor_locations.csv")
        path = str(cand) if cand.is_file() else None
    if path is None:
        return None, "degrees"
    lid, lat, lon = read_locations(path, fed.crs)
    crs = "projected" if parse_crs(fed.crs) == "projected" else "degrees"  # EPSG codes arrive as degrees
    pos = {s: i for i, s in enumerate(lid)}
    missing = [s for s in ids if s not in pos]
    if missing:
        raise ConfigError(f"locations '{path}': no coordinates for {len(missing)} sensor(s) of the series, e.g. "
                          f"{missing[:10]}; expected a row per sensor")
    return np.array([[lat[pos[s]], lon[pos[s]]] for s in ids]), crs
