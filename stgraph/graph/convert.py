"""Convert road graphs to tensors in a series' sensor order.

A model sees sensors as positions ``0..N-1`` in the order of the series'
``sensor_ids``; the graph must cover exactly those sensors. :func:`to_pyg`
gives PyG's ``edge_index`` / ``edge_weight``; :func:`to_adjacency` gives the
dense ``[N, N]`` matrix DCRNN-style models use.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import networkx as nx
import numpy as np
import torch

from ..errors import GraphError, where
from .coords import distance_kernel
from .nodes import positions

if TYPE_CHECKING:  # PyG is imported by to_pyg itself: importing it costs ~2 s that reading data never needs
    from torch_geometric.data import Data

__all__ = ["to_pyg", "to_adjacency", "edge_similarity", "WEIGHT_MEANINGS"]

#: what an edge ``weight`` can mean; declared in ``graph.graph["weight_meaning"]`` (``graph build --weights``)
WEIGHT_MEANINGS = ("similarity", "distance", "flow")


def edge_similarity(w: np.ndarray, meaning: str | None = None, source: Any = None,
                    warn: bool = True) -> tuple[np.ndarray, str]:
    """Edge weights as the similarities in [0, 1] that models use (attention bias, diffusion weights).

    * ``meaning='similarity'``: used as is when every weight is at most 1; larger ones are divided by
      the largest weight (with a warning saying so);
    * ``meaning='flow'`` (trips, counts between two places: more = a stronger link): ``log1p(w) / log1p(max w)``,
      in [0, 1] with the largest flow 1 and order kept (the log tames flows spanning orders of magnitude);
    * ``meaning='distance'``: turned into ``exp(-(d / sigma)^2)``, ``sigma`` the std of the distances
      (their mean when all are equal): the Gaussian kernel of :func:`~stgraph.graph.coords.distance_kernel`
      (DCRNN's), without a threshold so no given edge is dropped;
    * ``None`` (undeclared): weights in [0, 1] are similarities; any weight above 1 cannot be one, so the
      weights are read as distances as above, with a warning that says what was done and how to declare.

    Returns ``(similarities, what was done)``; the text is what ``graph info`` reports.
    """
    w = np.asarray(w, dtype=np.float64)
    if meaning is not None and meaning not in WEIGHT_MEANINGS:
        raise GraphError(f"graph {where(source)}: weight_meaning is {meaning!r}; expected one of "
                         f"{list(WEIGHT_MEANINGS)} (or none, to infer it from the weights)")
    if w.size == 0:
        return w, "no edges"
    lo, hi = float(w.min()), float(w.max())
    span = f"{lo:g} .. {hi:g}"
    declare = ("if larger weights mean a stronger link, declare --weights similarity (or --weights flow for trips "
               "or counts, log1p-scaled); if they are distances, --weights distance (stgraph graph build / train, "
               "or the graph attribute weight_meaning)")
    if meaning == "flow":
        if lo < 0:
            raise GraphError(f"graph {where(source)}: flows {span} include negative values; expected flows >= 0")
        top = float(np.log1p(hi))
        out = np.log1p(w) / top if top > 0 else w
        return out, (f"flows {span} (declared) turned into similarities log1p(flow) / log1p({hi:g}); now "
                     f"{float(out.min()):.3g} .. {float(out.max()):.3g}")
    if meaning == "similarity" or (meaning is None and hi <= 1.0):
        if hi <= 1.0:
            return w, f"similarity ({'declared' if meaning else 'all in [0, 1]'}; {span}), used as is"
        done = f"similarities {span} divided by the largest, {hi:g}, to lie in [0, 1]"
        if warn:
            import warnings
            from ..errors import StgraphWarning
            warnings.warn(f"graph {where(source)}: {done}", StgraphWarning, stacklevel=2)
        return w / hi, done
    sigma = float(w.std()) or float(w.mean()) or 1.0
    out = distance_kernel(w, kernel="gaussian", sigma=sigma)
    done = (f"turned into similarities exp(-(d / sigma)^2), sigma = {sigma:.4g} (their std); similarities "
            f"now {float(out.min()):.3g} .. {float(out.max()):.3g}")
    if meaning == "distance":
        done = f"distances {span} (declared) {done}"
    else:
        done = f"undeclared weights above 1 ({span}) read as distances and {done}"
        if warn:
            import warnings
            from ..errors import StgraphWarning
            warnings.warn(f"graph {where(source)}: {done}; {declare}", StgraphWarning, stacklevel=2)
    return out, done


def _edge_arrays(
    graph: nx.DiGraph, pos: dict[str, int], weight: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[Any, Any]]]:
    """``(src, dst, weight, distance, edges)`` for edges between sensors in ``pos``.

    Missing weights read as 1.0; missing distances as NaN.
    """
    edges = [(u, v, a) for u, v, a in graph.edges(data=True) if u in pos and v in pos]
    src = np.fromiter((pos[u] for u, _, _ in edges), dtype=np.int64, count=len(edges))
    dst = np.fromiter((pos[v] for _, v, _ in edges), dtype=np.int64, count=len(edges))
    try:
        w = np.fromiter((float(a.get(weight, 1.0)) for _, _, a in edges), dtype=np.float64, count=len(edges))
    except (TypeError, ValueError) as exc:
        raise GraphError(f"edge attribute '{weight}' is not numeric ({exc}); expected floats") from exc
    d = np.fromiter(
        (float(a["distance"]) if a.get("distance") is not None else math.nan for _, _, a in edges),
        dtype=np.float64, count=len(edges),
    )
    bad = ~np.isfinite(w)
    if bad.any():
        k = np.nonzero(bad)[0][:5]
        raise GraphError(
            f"{int(bad.sum())} edges have non-finite '{weight}', e.g. "
            f"{[(edges[i][0], edges[i][1], w[i]) for i in k]}; expected finite weights"
        )
    return src, dst, w, d, [(u, v) for u, v, _ in edges]


def to_pyg(
    graph: nx.DiGraph,
    sensor_ids: Sequence[Any],
    *,
    weight: str = "weight",
    distance: bool | None = None,
    drop_extra: bool = False,
) -> Data:
    """PyG ``Data`` for ``graph`` with nodes in exactly the order of ``sensor_ids``.

    Node ``i`` is ``sensor_ids[i]``; an edge ``u -> v`` becomes the column
    ``[i_u, i_v]`` of ``edge_index`` (PyG's source-to-target flow). Edges are
    sorted by target, then source.

    Args:
        graph: the road graph.
        sensor_ids: the ``N`` sensor ids of the series, in its order.
        weight: edge attribute read as the weight (missing -> 1.0).
        distance: add ``edge_distance``; ``None`` adds it when every edge has
            a ``distance``, ``True`` requires it.
        drop_extra: ignore graph sensors absent from ``sensor_ids`` (and their
            edges) instead of raising.

    Returns:
        ``Data`` with ``edge_index`` ``[2, E]`` long, ``edge_weight`` ``[E]``
        float32 similarities in [0, 1] (see :func:`edge_similarity`: distances are turned into
        similarities, undeclared weights above 1 are read as distances), optionally ``edge_distance`` ``[E]`` float32, ``num_nodes = N``
        and ``sensor_ids`` (list of ``N`` str).

    Raises:
        GraphError: ids in the series but not the graph or the reverse (the
            first 20 of each are listed, with counts), repeated ids,
            non-finite weights, or ``distance=True`` with edges lacking it.
    """
    pos = positions(graph, sensor_ids, drop_extra)
    n = len(pos)
    src, dst, w, d, edges = _edge_arrays(graph, pos, weight)
    w, _ = edge_similarity(w, graph.graph.get("weight_meaning"), graph.graph.get("source"))
    missing_d = np.isnan(d)
    if distance and missing_d.any():
        k = np.nonzero(missing_d)[0][:5]
        raise GraphError(
            f"distance=True but {int(missing_d.sum())} edges have no 'distance', e.g. "
            f"{[edges[i] for i in k]}; expected every edge to carry one. Build the graph "
            "from a distance table or pass distance=None"
        )
    with_d = bool(distance) or (distance is None and len(edges) > 0 and not missing_d.any())
    edge_index = torch.from_numpy(np.stack([src, dst])).long()
    attrs = [torch.from_numpy(w).float()] + ([torch.from_numpy(d).float()] if with_d else [])
    from torch_geometric.data import Data
    from torch_geometric.utils import sort_edge_index

    edge_index, attrs = sort_edge_index(edge_index, attrs, num_nodes=n, sort_by_row=False)
    data = Data(edge_index=edge_index, edge_weight=attrs[0], num_nodes=n)
    if with_d:
        data.edge_distance = attrs[1]
    data.sensor_ids = list(pos)
    return data


def to_adjacency(
    graph: nx.DiGraph,
    sensor_ids: Sequence[Any],
    *,
    weight: str = "weight",
    drop_extra: bool = False,
) -> np.ndarray:
    """Dense weight matrix in the order of ``sensor_ids``.

    Args:
        graph: the road graph.
        sensor_ids: the ``N`` sensor ids, in row order.
        weight: edge attribute read as the weight (missing -> 1.0).
        drop_extra: ignore graph sensors absent from ``sensor_ids``.

    Returns:
        ``[N, N]`` float32 array, ``A[i, j]`` = weight of ``sensor_ids[i] ->
        sensor_ids[j]`` (0 where there is no edge). No diagonal is added.

    Raises:
        GraphError: as :func:`to_pyg`.
    """
    pos = positions(graph, sensor_ids, drop_extra)
    src, dst, w, _, _ = _edge_arrays(graph, pos, weight)
    w, _ = edge_similarity(w, graph.graph.get("weight_meaning"), graph.graph.get("source"))
    adj = np.zeros((len(pos), len(pos)), dtype=np.float32)
    adj[src, dst] = w
    return adj
