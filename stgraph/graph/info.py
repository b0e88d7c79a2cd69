"""Summarise and validate road graphs.

* :func:`graph_info` -- counts and degree statistics for logs and reports;
* :func:`validate_graph` -- reject graphs no model can use (empty, only self
  loops, negative or non-finite weights, non-string ids).
"""
from __future__ import annotations

import math

#: largest finite float32: a larger weight becomes inf in a model
FLOAT32_MAX = 3.4028234663852886e38
from pathlib import Path
from typing import Any

import networkx as nx

from ..errors import GraphError, where

__all__ = ["graph_info", "validate_graph", "has_coordinates", "dynamic_graph_info"]


def _is_coord(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def has_coordinates(graph: nx.DiGraph) -> bool:
    """True when every node has finite ``lat`` and ``lon`` (False for an empty graph)."""
    return graph.number_of_nodes() > 0 and all(
        _is_coord(a.get("lat")) and _is_coord(a.get("lon")) for _, a in graph.nodes(data=True)
    )


def graph_info(graph: nx.DiGraph) -> dict[str, Any]:
    """Counts and degree statistics of a graph.

    Degrees are *total* degrees, in-degree plus out-degree (a self loop
    counts twice, as in networkx).

    Args:
        graph: the road graph.

    Returns:
        dict with ``nodes`` (int), ``edges`` (int), ``components`` (number of
        weakly connected components; 0 for an empty graph), ``min_degree``,
        ``max_degree`` (int), ``mean_degree`` (float; ``2 * edges / nodes``),
        ``self_loops`` (int) and ``has_coordinates`` (bool: every node has
        finite ``lat``/``lon``), ``weights`` (``"min .. max"`` of the edge weights as stored),
        ``weight_meaning`` (what they are and what the models will use, see
        :func:`~stgraph.graph.convert.edge_similarity`) and ``coordinates`` (degrees or projected
        metres, when known). Degree statistics are 0 for an empty graph.
    """
    from .convert import edge_similarity

    weights = [float(w) for _, _, w in graph.edges(data="weight", default=1.0)]
    n = graph.number_of_nodes()
    degrees = [d for _, d in graph.degree()]
    if graph.is_directed():
        components = nx.number_weakly_connected_components(graph) if n else 0
    else:
        components = nx.number_connected_components(graph) if n else 0
    return {
        "nodes": n,
        "edges": graph.number_of_edges(),
        "components": components,
        "min_degree": min(degrees) if degrees else 0,
        "max_degree": max(degrees) if degrees else 0,
        "mean_degree": float(sum(degrees) / n) if n else 0.0,
        "self_loops": nx.number_of_selfloops(graph),
        "has_coordinates": has_coordinates(graph),
        "weights": f"{min(weights):g} .. {max(weights):g}" if weights else "none",
        "weight_meaning": edge_similarity(weights, graph.graph.get("weight_meaning"), graph.graph.get("source"),
                                          warn=False)[1],
        "coordinates": graph.graph.get("crs", "degrees") if has_coordinates(graph) else "none",
    }


def validate_graph(graph: Any, source: str | Path | None = None) -> Any:
    """Check that ``graph`` is a usable road graph; return it unchanged.

    Args:
        graph: the graph to check.
        source: file it came from, named in error messages.

    Returns:
        ``graph``, so calls can be chained.

    Raises:
        GraphError: not a networkx graph; no nodes; no edges; only self
            loops; node ids that are not ``str``; an edge weight that is not a
            finite number >= 0 (the offending edges are listed).
    """
    src = where(source)
    if not isinstance(graph, nx.Graph):
        raise GraphError(f"{src}: expected a networkx.DiGraph, got {type(graph).__name__}")
    n, m = graph.number_of_nodes(), graph.number_of_edges()
    if n == 0:
        raise GraphError(f"{src}: the graph is empty (0 nodes); expected at least one sensor")
    if m == 0:
        raise GraphError(
            f"{src}: the graph has {n} nodes but no edges; expected at least one edge. "
            "Check the threshold/radius used to build it"
        )
    loops = nx.number_of_selfloops(graph)
    if loops == m:
        raise GraphError(
            f"{src}: all {m} edges are self loops; expected edges between distinct sensors. "
            "Check the table is not just the matrix diagonal"
        )
    bad_ids = [u for u in graph.nodes if not isinstance(u, str)]
    if bad_ids:
        raise GraphError(
            f"{src}: {len(bad_ids)} node ids are not strings, e.g. {bad_ids[:5]!r}; "
            "expected sensor ids as str. Convert them with nx.relabel_nodes(g, str)"
        )
    bad = []
    for u, v, w in graph.edges(data="weight", default=1.0):
        try:
            ok = math.isfinite(float(w)) and 0 <= float(w) <= FLOAT32_MAX
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            bad.append((u, v, w))
    if bad:
        raise GraphError(
            f"{src}: {len(bad)} edges have a weight that is negative or not finite (or beyond the float32 "
            f"range, 3.4e38, models compute in), e.g. {bad[:5]} (source, target, weight); expected finite weights >= 0. "
            "Fix the weights or drop those edges"
        )
    return graph


def dynamic_graph_info(path, sensor_ids=None, **table) -> dict[str, Any]:
    """:meth:`stgraph.graph.dynamic.DynamicGraph.info` of a graph that changes over time (a table with a time
    column): periods, their range, edges per period, churn, weights. ``table``: ``weights``, ``weight_column``,
    ``aggregate`` as in :func:`~stgraph.graph.dynamic.read_dynamic_graph`."""
    from .dynamic import read_dynamic_graph

    return read_dynamic_graph(path, sensor_ids, **table).info()
