"""Sensor ids as the nodes of a road graph.

Node keys are sensor ids (``str``): :func:`id_column` turns a column of ids (numbers, bytes, text)
into strings, :func:`as_id_list` checks a list of them (non-empty, unique), :func:`lookup` finds
positions in it with vectorised numpy, :func:`positions` maps a series' sensor order onto a graph's
nodes, :func:`make_graph` builds the package's graph model from node positions and edge arrays, and
:func:`preview` lists ids in messages.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

import networkx as nx
import numpy as np

from ..cells import ESCAPE
from ..errors import DataFormatError, GraphError, where

__all__ = ["preview", "id_column", "as_id_list", "lookup", "make_graph", "positions"]


def preview(items: Iterable[Any], limit: int = 20) -> str:
    """``['a', 'b', ...] (N in all)`` -- the first ``limit`` items and the count."""
    items = list(items)
    head = ", ".join(repr(str(x)) for x in items[:limit])
    more = ", ..." if len(items) > limit else ""
    return f"[{head}{more}] ({len(items)} in all)"


def id_column(values: Any) -> np.ndarray:
    """Turn a column of sensor ids into a ``str`` array.

    Integral numbers become their integer text (``3.0 -> '3'``), text is
    stripped, bytes are decoded; other text such as ``'007'`` is kept as is.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64).astype(str)
    if arr.dtype.kind == "f":
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64).astype(str)
        return arr.astype(str)
    if arr.dtype.kind == "S":
        return np.char.strip(np.char.decode(arr, "utf-8"))
    if arr.dtype.kind == "U":
        return np.char.strip(arr)
    out = []  # object column: Python values given by the caller
    for v in arr.tolist():
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.append(str(v).strip())
    return np.asarray(out, dtype=str)


def table_ids(column: np.ndarray) -> np.ndarray:
    """The sensor ids of a table's column (``[R]`` text cells) as :func:`id_column` gives them, with the
    spreadsheet escape of the tables stgraph writes undone (:func:`stgraph.cells.safe_cell`: one leading
    ``'`` before a cell such as ``=A1``)."""
    ids = id_column(column)
    if ids.dtype.kind == "U" and ids.size:
        escaped = np.char.startswith(ids, ESCAPE)
        if escaped.any():
            ids = ids.astype(object)
            ids[escaped] = [s[1:] for s in ids[escaped]]
            ids = ids.astype(str)
    return ids


def as_id_list(sensor_ids: Any, field: str = "sensor_ids", source: Any = None) -> list[str]:
    """Validate a sequence of sensor ids: non-empty, unique; return them as ``str``."""
    if sensor_ids is None or isinstance(sensor_ids, (str, bytes)):
        raise GraphError(
            f"{where(source)}: {field} is {sensor_ids!r}; expected a sequence of sensor ids"
        )
    seq = list(sensor_ids)
    from ..io.series import id_strings
    id_strings(seq, field, source, DataFormatError)  # every id a scalar (no arrays or lists)
    ids = id_column(np.asarray(seq, dtype=object).reshape(-1)).tolist() if seq else []
    if not ids:
        raise GraphError(f"{where(source)}: {field} is empty; expected at least one sensor id")
    uniq, counts = np.unique(np.asarray(ids), return_counts=True)
    if (counts > 1).any():
        raise GraphError(
            f"{where(source)}: {field} has duplicate ids {preview(uniq[counts > 1])}; "
            "expected each sensor once. Remove the repeated ids"
        )
    return ids


def lookup(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised position of each of ``values`` in ``ids``.

    Returns:
        ``(pos, found)``: ``pos[k]`` is the index of ``values[k]`` in ``ids``
        (meaningless where ``found[k]`` is False).
    """
    sorter = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids, values, sorter=sorter)
    pos = np.clip(pos, 0, len(ids) - 1)
    idx = sorter[pos]
    return idx, ids[idx] == values


def make_graph(
    ids: Sequence[str],
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray,
    distance: np.ndarray | None = None,
    **graph_attrs: Any,
) -> nx.DiGraph:
    """A DiGraph with nodes ``ids`` (in order) and edges ``ids[src] -> ids[dst]``."""
    g = nx.DiGraph(**{k: v for k, v in graph_attrs.items() if v is not None})
    g.add_nodes_from((sid, {"sensor_id": sid, "index": i}) for i, sid in enumerate(ids))
    ids_arr = np.asarray(ids, dtype=object)
    u = ids_arr[np.asarray(src, dtype=np.int64)].tolist()
    v = ids_arr[np.asarray(dst, dtype=np.int64)].tolist()
    w = np.asarray(weight, dtype=np.float64).tolist()
    if distance is None:
        g.add_edges_from((a, b, {"weight": c}) for a, b, c in zip(u, v, w))
    else:
        d = np.asarray(distance, dtype=np.float64).tolist()
        g.add_edges_from((a, b, {"weight": c, "distance": e}) for a, b, c, e in zip(u, v, w, d))
    return g


def positions(graph: nx.DiGraph, sensor_ids: Sequence[Any], drop_extra: bool) -> dict[str, int]:
    """Map each sensor id to its position; GraphError when graph and ids differ."""
    source = where(graph.graph.get("source"))
    ids = [str(s) for s in sensor_ids]
    pos = {s: i for i, s in enumerate(ids)}
    if len(pos) != len(ids):
        dup = sorted(s for s, c in Counter(ids).items() if c > 1)
        raise GraphError(f"sensor_ids repeat {preview(dup)}; expected each sensor once")
    nodes = set(graph.nodes)
    missing = [s for s in ids if s not in nodes]
    extra = [] if drop_extra else sorted(str(u) for u in nodes if u not in pos)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"in the series but not the graph: {preview(missing)}")
        if extra:
            parts.append(f"in the graph but not the series: {preview(extra)}")
        raise GraphError(
            f"graph {source} and sensor_ids disagree -- " + "; ".join(parts) + ". Expected "
            "the same sensors (ids compared as str). Use the graph shipped with this "
            "series, or pass drop_extra=True to ignore graph-only sensors"
        )
    return pos
