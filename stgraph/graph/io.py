"""Read and write road graphs in any supported file.

* :func:`read_graph` -- any supported file, detected by suffix, else content:
  ``.pkl`` (DCRNN ``adj_mx.pkl``), ``.json`` (node-link), ``.graphml``,
  ``.csv``/``.txt`` tables (a ``from,to,cost`` distance table, a dense
  ``[N, N]`` matrix such as T-GCN's ``los_adj.csv``, or an edge list);
* :func:`write_graph` -- ``.json``, ``.graphml``, ``.csv`` edge list or a
  DCRNN-style ``.pkl``, chosen by suffix;
* :func:`adj_mx` -- DCRNN's ``[ids, id_to_index, W]`` of a graph.

The two lossless formats are in :mod:`.formats` (node-link JSON, GraphML), sensor locations in
:mod:`.locations`.
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np

from ..cells import safe_cell
from ..errors import DataFormatError, GraphError, where
from ..files import atomic_open, atomic_write
from .build import from_adj_pickle, from_adjacency, from_edge_list
from .convert import to_adjacency
from .distances import from_distances
from .formats import node_order, read_graphml, read_node_link, require_file, write_graphml, write_node_link
from .table import DIST_NAMES, WEIGHT_NAMES, float_column, read_table

__all__ = ["read_graph", "write_graph", "adj_mx", "GRAPH_SUFFIXES"]

#: Suffix -> format understood by :func:`read_graph` / :func:`write_graph`.
GRAPH_SUFFIXES = {
    ".pkl": "pickle", ".pickle": "pickle",
    ".json": "json",
    ".graphml": "graphml", ".xml": "graphml",
    ".csv": "table", ".tsv": "table", ".txt": "table", ".edges": "table", ".edgelist": "table",
}


# ------------------------------------------------------------------- dispatch
def _sniff(path: Path) -> str:
    """Format of a file from its first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    text = head.lstrip()
    if head[:1] == b"\x80" or head[:2] in (b"(l", b"(d", b"(t", b"]q", b"}q"):
        return "pickle"
    if text[:1] in (b"{", b"["):
        return "json"
    if text[:1] == b"<":
        return "graphml"
    return "table"


def _refuse_series_file(path: Path) -> None:
    """An HDF5 / numpy file given as the graph is almost always the series: say so."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    kind = ("an HDF5 file" if head.startswith(b"\x89HDF") else
            "a zip/.npz archive" if head.startswith(b"PK\x03\x04") else
            "a .npy array" if head.startswith(b"\x93NUMPY") else None)
    if kind is not None:
        raise DataFormatError(
            f"{where(path)}: is {kind} (a sensor series?), not a road graph; expected DCRNN's "
            "adj_mx.pkl, a distance CSV (from,to,cost), an edge list CSV, node-link JSON or "
            "GraphML. Did you swap the series (--data) and the graph (--graph)?"
        )


def _read_table_graph(path: Path, sensor_ids: Sequence[Any] | None, **kwargs: Any) -> nx.DiGraph:
    header, cells = read_table(path)
    declared = {k: kwargs.pop(k, None) for k in ("weight_column", "weights", "aggregate")}
    declared = {k: v for k, v in declared.items() if v is not None}
    if set(declared) - {"weights"}:  # a declared edge table (stgraph.graph.edges), whatever its columns are called
        return from_edge_list(path, sensor_ids=sensor_ids, **declared, **kwargs)
    if header is not None and any(n in header for n in DIST_NAMES) and \
            not any(n in header for n in WEIGHT_NAMES):
        if sensor_ids is None:
            raise GraphError(
                f"{where(path)}: is a distance table (columns {header}); pass sensor_ids= "
                "(e.g. the series' sensor ids; on the command line --sensors SERIES_FILE) to choose "
                "the nodes and their order"
            )
        if declared.get("weights", "distance") != "distance":
            raise GraphError(f"{where(path)}: is a distance table (columns {header}); weights={declared['weights']!r} "
                             f"(--weights) does not fit it. Drop it, or name the weight column (--weight-column)")
        return from_distances(path, sensor_ids, **kwargs)
    rows, cols = cells.shape
    if header is None and cols >= 4 and rows == cols:
        if sensor_ids is None:
            raise GraphError(
                f"{where(path)}: is a dense {rows} x {cols} matrix; pass sensor_ids= (the "
                "ids of its rows, e.g. the series' sensor ids; on the command line --sensors SERIES_FILE)"
            )
        g = from_adjacency(float_column(cells, "matrix", path), sensor_ids, source=path)
        if "weights" in declared:
            g.graph["weight_meaning"] = declared["weights"]
        return g
    return from_edge_list(path, sensor_ids=sensor_ids, **declared, **kwargs)


def read_graph(
    path: str | Path,
    *,
    sensor_ids: Sequence[Any] | None = None,
    format: str | None = None,
    crs: str | None = None,
    weight_column: str | None = None,
    weights: str | None = None,
    aggregate: str | None = None,
    **kwargs: Any,
) -> nx.DiGraph:
    """Read a road graph, choosing the reader by suffix, else by content.

    Args:
        path: the file.
        sensor_ids: node order; required for distance tables and dense
            matrices, optional for edge lists, ignored otherwise.
        format: force ``'pickle'``, ``'json'``, ``'graphml'`` or ``'table'``.
        crs: coordinate system of node ``lat``/``lon`` in JSON / GraphML (default: the graph's own
            ``crs`` attribute, else degrees); see :mod:`stgraph.graph.coords`.
        weight_column, weights, aggregate: how an edge table is read (:func:`~stgraph.graph.edges.read_edge_table`:
            which column is the weight, what it means, how repeated pairs combine); ``weights`` also declares
            the weights of a JSON / GraphML / pickle graph (its ``weight_meaning``). Data config fields
            ``data.graph_weight_column`` / ``graph_weights`` / ``graph_aggregate``.
        **kwargs: passed to :func:`~stgraph.graph.distances.from_distances`
            (``sigma``, ``threshold``, ``kernel``, ``ignore_unknown``) or
            :func:`~stgraph.graph.build.from_edge_list`.

    A ``.csv`` is a distance table when its header names ``cost``/``distance``
    (and no ``weight``), a dense matrix when it has no header and ``N >= 4``
    rows of ``N`` values, else an edge list.

    Raises:
        MissingFileError, DataFormatError, GraphError, UnsafePickleError.
    """
    path = Path(path)
    require_file(path, "graph file")
    _refuse_series_file(path)
    fmt = format or GRAPH_SUFFIXES.get(path.suffix.lower()) or _sniff(path)
    if fmt == "table":
        return _read_table_graph(path, sensor_ids, weight_column=weight_column, weights=weights,
                                 aggregate=aggregate, **kwargs)
    if weight_column is not None or aggregate is not None:
        raise GraphError(f"{where(path)}: is a {fmt} graph, not an edge table; weight column "
                         f"({weight_column}) and aggregate ({aggregate}) apply to edge tables (CSV) only. Drop them "
                         f"(--weight-column / --aggregate, data.graph_weight_column / data.graph_aggregate)")
    if fmt in ("pickle", "json", "graphml"):
        g = {"pickle": from_adj_pickle, "json": lambda p: read_node_link(p, crs),
             "graphml": lambda p: read_graphml(p, crs)}[fmt](path)
        if weights is not None:
            g.graph["weight_meaning"] = weights
        return g
    raise DataFormatError(
        f"{where(path)}: format {fmt!r} is unknown; expected one of 'pickle', 'json', "
        "'graphml', 'table'"
    )


def adj_mx(graph: nx.DiGraph) -> tuple[list[str], dict[str, int], np.ndarray]:
    """``(sensor_ids, {id: index}, W)`` as in DCRNN's ``adj_mx.pkl``, without its diagonal of ones.

    Nodes are ordered by their ``index`` (when it numbers them ``0..N-1``, else insertion order);
    ``W`` is ``[N, N]`` float32 with ``W[i, j]`` the weight of edge ``i -> j`` (see
    :func:`~stgraph.graph.convert.to_adjacency`), 0 on the diagonal. :func:`write_graph` pickles it
    for a ``.pkl`` path; :func:`~stgraph.graph.build.from_adj_pickle` reads it back.
    """
    ids = [str(u) for u in node_order(graph)]
    return ids, {s: i for i, s in enumerate(ids)}, to_adjacency(nx.relabel_nodes(graph, str), ids)


def _check_weights_writable(graph: nx.DiGraph, path: Path) -> None:
    """JSON and GraphML cannot hold inf/NaN; dropping such a weight would read back as 1.0."""
    bad = []
    for u, v, w in graph.edges(data="weight", default=1.0):
        try:
            ok = math.isfinite(float(w))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            bad.append((str(u), str(v), w))
    if bad:
        raise GraphError(
            f"{where(path)}: not written: {len(bad)} edges have a weight that is not a finite number, "
            f"e.g. {bad[:5]} (source, target, weight); expected finite weights. Fix or drop those edges first"
        )


def write_graph(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write ``graph`` in the format named by the suffix of ``path``.

    ``.json`` node-link, ``.graphml``, ``.csv`` edge list
    (``source,target,weight[,distance]``) or ``.pkl`` DCRNN-style
    ``[ids, id_to_index, float32 [N, N] matrix]`` (nodes ordered by their
    ``index``; no diagonal added).

    Returns:
        the path written.

    Raises:
        DataFormatError: unknown suffix.
    """
    path = Path(path)
    fmt = GRAPH_SUFFIXES.get(path.suffix.lower())
    _check_weights_writable(graph, path)
    if fmt == "json":
        return write_node_link(graph, path)
    if fmt == "graphml":
        return write_graphml(graph, path)
    if fmt == "pickle":
        with atomic_open(path, "wb") as fh:
            pickle.dump(list(adj_mx(graph)), fh, protocol=2)
        return path
    if fmt == "table" and path.suffix.lower() == ".csv":
        with_d = graph.number_of_edges() > 0 and all(
            a.get("distance") is not None for _, _, a in graph.edges(data=True))
        lines = ["source,target,weight" + (",distance" if with_d else "")]
        for u, v, a in graph.edges(data=True):
            row = f"{safe_cell(str(u))},{safe_cell(str(v))},{float(a.get('weight', 1.0))!r}"
            lines.append(row + (f",{float(a['distance'])!r}" if with_d else ""))
        atomic_write(path, "\n".join(lines) + "\n")
        return path
    raise DataFormatError(
        f"{where(path)}: cannot write suffix {path.suffix!r}; expected .json, .graphml, "
        ".csv or .pkl"
    )
