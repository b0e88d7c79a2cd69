"""Build road graphs from the formats traffic datasets ship.

Every builder returns a :class:`networkx.DiGraph` in the package's graph model:

* node keys are sensor ids (``str``), in the order the sensors were given;
* node attributes ``sensor_id`` (``str``), ``index`` (``int`` position) and,
  when known, ``lat`` / ``lon`` (degrees);
* edge attributes ``weight`` (``float``) and, when known, ``distance``
  (``float``, in the unit of the source table);
* an edge ``u -> v`` means traffic flows from ``u`` to ``v``.

Builders:

* :func:`from_adjacency` -- a dense ``[N, N]`` weight matrix;
* :func:`from_adj_pickle` -- DCRNN's ``adj_mx.pkl``;
* :func:`from_edge_list` -- ``source,target[,weight]`` rows;
* :func:`~stgraph.graph.distances.from_distances` -- a ``from,to,cost`` road-distance table turned
  into weights by DCRNN's thresholded Gaussian kernel (or ``1/d``, or binary connectivity as in
  STSGCN's PEMS04/08 graphs), in :mod:`.distances`;
* :func:`~stgraph.graph.nearest.from_coordinates` -- k-nearest or radius graphs on sensor
  positions, in :mod:`.nearest`.

:func:`for_sensors` restricts any of them to a series' sensors, in its order.

Tables are parsed and mapped to node positions with vectorised numpy; only the
final ``add_edges_from`` walks the edges in Python.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np

from ..errors import DataFormatError, GraphError, where
from .edges import read_edge_table
from .info import FLOAT32_MAX, validate_graph
from .nodes import as_id_list, lookup, make_graph, positions, preview, table_ids
from .safe_pickle import safe_load_pickle

__all__ = ["from_adjacency", "from_adj_pickle", "from_edge_list", "for_sensors"]


# ------------------------------------------------------------- dense matrices
def from_adjacency(
    matrix: Any,
    sensor_ids: Sequence[Any],
    *,
    source: str | Path | None = None,
) -> nx.DiGraph:
    """Graph from a dense weight matrix.

    ``matrix[i, j] != 0`` off the diagonal gives the edge
    ``sensor_ids[i] -> sensor_ids[j]`` with ``weight = matrix[i, j]``; the
    diagonal (DCRNN stores ones there) is dropped.

    Args:
        matrix: ``[N, N]`` finite, non-negative weights.
        sensor_ids: the ``N`` sensor ids, in row order.
        source: file the matrix came from, for error messages.

    Returns:
        DiGraph with ``N`` nodes (isolated sensors included).

    Raises:
        DataFormatError: the matrix is not ``[N, N]`` with ``N = len(sensor_ids)``.
        GraphError: weights are negative or non-finite, ids repeat, or no
            off-diagonal weight is non-zero.
    """
    ids = as_id_list(sensor_ids, "sensor_ids", source)
    try:
        adj = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"{where(source)}: adjacency matrix is not numeric ({exc}); expected an "
            "[N, N] array of weights"
        ) from exc
    n = len(ids)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1] or adj.shape[0] != n:
        raise DataFormatError(
            f"{where(source)}: adjacency matrix has shape {adj.shape}; expected a square "
            f"[{n}, {n}] matrix to match the {n} sensor ids. Check the ids belong to this matrix"
        )
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(adj) | (adj < 0) | (np.abs(adj) > FLOAT32_MAX)
    if bad.any():
        i, j = np.nonzero(bad)
        cells = [(ids[a], ids[b], float(adj[a, b])) for a, b in zip(i[:5].tolist(), j[:5].tolist())]
        raise GraphError(
            f"{where(source)}: adjacency matrix has {int(bad.sum())} negative, non-finite or beyond-float32 "
            f"(> 3.4e38) weights, e.g. {cells} (from, to, weight); expected finite weights >= 0. "
            "Fix the matrix (0 means 'no edge')"
        )
    off = adj.copy()
    np.fill_diagonal(off, 0.0)
    src, dst = np.nonzero(off)
    g = make_graph(ids, src, dst, off[src, dst],
                    source=None if source is None else str(source))
    validate_graph(g, source)
    return g


def from_adj_pickle(path: str | Path) -> nx.DiGraph:
    """Graph from DCRNN's ``adj_mx.pkl``.

    The pickle holds ``[sensor_ids, sensor_id_to_index, adj]``: ``N`` ids, a
    dict mapping each id to its row, and an ``[N, N]`` weight matrix whose
    entry ``adj[i, j] != 0`` is the edge ``i -> j``. It is read with
    :func:`~stgraph.graph.safe_pickle.safe_load_pickle` (numpy arrays and
    builtins only). The diagonal of ones is dropped: METR-LA's pickle has 207
    sensors and 1722 non-zeros, giving 1515 edges.

    Args:
        path: the pickle file.

    Returns:
        DiGraph with one node per sensor, in the pickle's order.

    Raises:
        MissingFileError: the file does not exist.
        UnsafePickleError: the pickle asks for anything beyond numpy arrays.
        DataFormatError: the content is not ``[ids, dict, [N, N] matrix]`` or the
            dict disagrees with the id list.
        GraphError: weights are negative or non-finite.
    """
    path = Path(path)
    obj = safe_load_pickle(path)
    expected = "a list [sensor_ids, sensor_id_to_index, adj_mx] as written by DCRNN's gen_adj_mx.py"
    if not isinstance(obj, (list, tuple)) or len(obj) != 3:
        found = f"{type(obj).__name__} of length {len(obj)}" if isinstance(obj, (list, tuple)) else type(obj).__name__
        raise DataFormatError(f"{where(path)}: pickle holds a {found}; expected {expected}")
    ids_raw, id_to_ind, adj = obj
    if isinstance(ids_raw, np.ndarray):
        ids_raw = ids_raw.tolist()
    if not isinstance(ids_raw, (list, tuple)):
        raise DataFormatError(
            f"{where(path)}: item 0 (sensor_ids) is a {type(ids_raw).__name__}; expected a list of ids"
        )
    ids = as_id_list(ids_raw, "item 0 (sensor_ids)", path)
    if not isinstance(id_to_ind, dict):
        raise DataFormatError(
            f"{where(path)}: item 1 (sensor_id_to_index) is a {type(id_to_ind).__name__}; "
            "expected a dict mapping each sensor id to its row"
        )
    mapping = {str(k.decode() if isinstance(k, bytes) else k).strip(): v for k, v in id_to_ind.items()}
    wrong = [s for i, s in enumerate(ids) if mapping.get(s) != i]
    if wrong or len(mapping) != len(ids):
        raise DataFormatError(
            f"{where(path)}: item 1 (sensor_id_to_index) disagrees with item 0 for ids "
            f"{preview(wrong)} and has {len(mapping)} entries for {len(ids)} ids; expected "
            "sensor_id_to_index[sensor_ids[i]] == i. Regenerate the pickle"
        )
    if not isinstance(adj, np.ndarray):
        raise DataFormatError(
            f"{where(path)}: item 2 (adj_mx) is a {type(adj).__name__}; expected an [N, N] numpy array"
        )
    return from_adjacency(adj, ids, source=path)


# ------------------------------------------------------------------ edge lists
def from_edge_list(
    edges: str | Path | Any,
    *,
    sensor_ids: Sequence[Any] | None = None,
    ignore_unknown: bool = False,
    default_weight: float = 1.0,
    weight_column: str | None = None,
    weights: str | None = None,
    aggregate: str | None = None,
) -> nx.DiGraph:
    """Graph from ``source,target[,weight]`` rows, read by :func:`~stgraph.graph.edges.read_edge_table`.

    Files may be comma, tab or whitespace separated, with an optional header
    (``source,target,weight``, ``from,to``, ...; a ``distance``/``cost``
    column is kept as the edge's ``distance``). Any other column, and a pair listed twice, is an error
    unless ``weight_column`` / ``weights`` / ``aggregate`` say how to read them (see
    :mod:`stgraph.graph.edges`). Self loops are kept as given.

    Args:
        edges: path to the file, a DataFrame, or rows ``(source, target[, weight])``.
        sensor_ids: node order; default: ids in order of first appearance.
        ignore_unknown: with ``sensor_ids``, drop rows naming other sensors
            instead of raising.
        default_weight: weight of rows without one.
        weight_column, weights, aggregate: as :func:`~stgraph.graph.edges.read_edge_table`; ``weights`` is
            recorded as the graph's ``weight_meaning``, what the table did with each column as its ``columns``.

    Returns:
        DiGraph.

    Raises:
        DataFormatError: fewer than 2 columns, undeclared extra columns, or non-numeric weights.
        GraphError: unknown sensors (with ``sensor_ids``), repeated pairs without ``aggregate``, negative or
            non-finite weights, or no edges.
    """
    table = read_edge_table(edges, weight_column=weight_column, weights=weights, aggregate=aggregate)
    source = table.source
    src, dst = table.src, table.dst
    weight = np.full(src.size, float(default_weight)) if table.weight is None else table.weight
    dist = table.distance
    ids = table.ids if sensor_ids is None else as_id_list(sensor_ids)
    ids_arr = np.asarray(ids, dtype=str)
    si, sok = lookup(ids_arr, src)
    ti, tok = lookup(ids_arr, dst)
    keep = sok & tok
    if not keep.all():
        if not ignore_unknown:
            raise GraphError(
                f"{where(source)}: {int((~keep).sum())} rows name sensors not in sensor_ids: "
                f"{preview(np.unique(np.concatenate([src[~sok], dst[~tok]])))}; expected only "
                f"the {len(ids)} given sensors. Pass the full list or ignore_unknown=True"
            )
        si, ti, weight = si[keep], ti[keep], weight[keep]
        dist = None if dist is None else dist[keep]
    g = make_graph(ids, si, ti, weight, dist, source=None if source is None else str(source),
                   weight_meaning=table.meaning, columns="; ".join(table.notes) or None)
    validate_graph(g, source)
    return g


# ------------------------------------------------------------------ sensor order
def for_sensors(graph: nx.DiGraph, sensor_ids: Sequence[Any]) -> tuple[nx.DiGraph, list[str]]:
    """``graph`` restricted to ``sensor_ids``, nodes in that order (``index`` = position): what
    ``graph build --sensors`` does with every builder. Returns ``(graph, dropped ids)``.

    Raises:
        GraphError: sensors of ``sensor_ids`` that the graph lacks (listed, with the count).
    """
    ids = as_id_list(sensor_ids)
    positions(graph, ids, drop_extra=True)  # every sensor must be in the graph
    keep = set(ids)
    out = nx.DiGraph(**graph.graph)
    for i, s in enumerate(ids):
        out.add_node(s, **{**graph.nodes[s], "sensor_id": s, "index": i})
    out.add_edges_from((u, v, a) for u, v, a in graph.edges(data=True) if u in keep and v in keep)
    dropped = [str(u) for u in graph.nodes if u not in keep]
    validate_graph(out, graph.graph.get("source"))
    return out, dropped
