"""Road graphs from sensor positions: :func:`from_coordinates` (k nearest neighbours or a radius).

Distances are great-circle km for degrees, Euclidean for projected metres
(:func:`~stgraph.graph.coords.pairwise_km`); weights are Gaussian in the distance.
"""
from __future__ import annotations

from typing import Any, Sequence

import networkx as nx
import numpy as np

from ..errors import GraphError
from .coords import check_coordinates, pairwise_km
from .info import validate_graph
from .nodes import as_id_list, make_graph

__all__ = ["from_coordinates"]


def from_coordinates(
    ids: Sequence[Any],
    lat: Any,
    lon: Any,
    *,
    k: int | None = None,
    radius_km: float | None = None,
    sigma: float | None = None,
    symmetric: bool = True,
    crs: str = "degrees",
) -> nx.DiGraph:
    """k-nearest-neighbour or radius graph on sensor positions.

    Distances are great-circle km (:func:`haversine_km`, an ``[N, N]`` matrix,
    so keep ``N`` below ~10k). With ``k``, sensor ``i`` is linked to its ``k``
    nearest other sensors (ties broken by position), as edges
    ``neighbour -> i`` (PyG's ``knn_graph`` flow: every node receives from
    exactly ``k``); ``symmetric=True`` adds the reverse of every such edge.
    With ``radius_km`` every pair within the radius is linked both ways; with
    both, the k nearest are taken among those within the radius. Weights are
    ``exp(-(d / sigma)^2)``, ``sigma`` defaulting to the std of the chosen
    edges' distances (their mean when the std is 0). Edges keep ``distance``
    in km; nodes get ``lat`` / ``lon``.

    Args:
        ids: ``N`` sensor ids.
        lat: ``[N]`` latitudes in degrees.
        lon: ``[N]`` longitudes in degrees.
        k: neighbours per sensor, ``1 <= k < N``.
        radius_km: link pairs at most this far apart.
        sigma: Gaussian width in km.
        symmetric: for ``k``, also add each edge's reverse.
        crs: ``"degrees"`` (``lat``/``lon``), ``"projected"`` (``lat``/``lon`` hold northing /
            easting metres: Euclidean distances, ``graph.graph["crs"] = "projected"``) or
            ``"EPSG:<code>"`` (converted to degrees with pyproj); see :mod:`stgraph.graph.coords`.

    Returns:
        DiGraph with ``N`` nodes.

    Raises:
        GraphError: bad coordinates or lengths, neither ``k`` nor ``radius_km``,
            ``k`` out of range, or no pair within ``radius_km``.
    """
    ids = as_id_list(ids, "ids")
    n = len(ids)
    la = np.asarray(lat, dtype=np.float64).reshape(-1)
    lo = np.asarray(lon, dtype=np.float64).reshape(-1)
    if la.size != n or lo.size != n:
        raise GraphError(
            f"from_coordinates: got {n} ids, {la.size} latitudes and {lo.size} longitudes; "
            "expected one latitude and longitude per id"
        )
    la, lo, crs = check_coordinates(ids, la, lo, crs, "from_coordinates", GraphError)
    if k is None and radius_km is None:
        raise GraphError("from_coordinates: pass k= (nearest neighbours) or radius_km=; got neither")
    if k is not None and not (1 <= int(k) < n):
        raise GraphError(f"from_coordinates: k is {k}; expected 1 <= k < {n} (the number of sensors)")
    dmat = pairwise_km(la, lo, crs)
    adj = _neighbours(dmat, k, radius_km, symmetric)
    src, dst = np.nonzero(adj)
    if src.size == 0:
        raise GraphError(
            f"from_coordinates: no two sensors within radius_km={radius_km}; expected at "
            f"least one pair (the closest pair is "
            f"{float(np.where(np.eye(n, dtype=bool), np.inf, dmat).min()):.3f} km apart). Raise radius_km"
        )
    d = dmat[src, dst]
    if sigma is None:
        sigma = float(d.std()) or float(d.mean())
    weight = np.ones_like(d) if sigma <= 0 else np.exp(-np.square(d / float(sigma)))
    g = make_graph(ids, src, dst, weight, d, kernel="gaussian", sigma=float(sigma),
                   k=None if k is None else int(k),
                   radius_km=None if radius_km is None else float(radius_km))
    for i, sid in enumerate(ids):
        g.nodes[sid]["lat"] = float(la[i])
        g.nodes[sid]["lon"] = float(lo[i])
    if crs == "projected":
        g.graph["crs"] = "projected"
    validate_graph(g, None)
    return g


def _neighbours(dmat: np.ndarray, k: int | None, radius_km: float | None, symmetric: bool) -> np.ndarray:
    """``[N, N]`` bool, ``adj[u, v]``: the edge ``u -> v`` of :func:`from_coordinates` for the distances
    ``dmat [N, N]`` (the ``k`` nearest within ``radius_km``, as neighbour -> sensor)."""
    n = dmat.shape[0]
    cand = ~np.eye(n, dtype=bool)
    if radius_km is not None:
        cand &= dmat <= float(radius_km)
    if k is None:
        return cand
    masked = np.where(cand, dmat, np.inf)
    nearest = np.argsort(masked, axis=1, kind="stable")[:, : int(k)]
    rows = np.repeat(np.arange(n), int(k))
    cols = nearest.reshape(-1)
    ok = np.isfinite(masked[rows, cols])
    adj = np.zeros((n, n), dtype=bool)
    adj[cols[ok], rows[ok]] = True  # neighbour -> sensor
    if symmetric:
        adj |= adj.T
    return adj
