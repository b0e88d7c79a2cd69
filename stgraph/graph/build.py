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
* :func:`from_distances` -- a ``from,to,cost`` road-distance table turned into
  weights by DCRNN's thresholded Gaussian kernel (or ``1/d``, or binary
  connectivity as in STSGCN's PEMS04/08 graphs);
* :func:`from_coordinates` -- k-nearest or radius graphs on sensor positions;
* :func:`from_edge_list` -- ``source,target[,weight]`` rows.

Tables are parsed and mapped to node positions with vectorised numpy; only the
final ``add_edges_from`` walks the edges in Python.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import networkx as nx
import numpy as np

from ..errors import DataFormatError, GraphError, where
from .info import FLOAT32_MAX, validate_graph
from .safe_pickle import safe_load_pickle
from .table import (DIST_NAMES, FROM_NAMES, TO_NAMES, WEIGHT_NAMES, find_column, float_column, read_table,
                    rows_from_object)

__all__ = [
    "from_adjacency",
    "from_adj_pickle",
    "from_distances",
    "from_coordinates",
    "from_edge_list",
    "haversine_km",
    "distance_kernel",
    "KERNELS",
]

#: Weight kernels understood by :func:`from_distances` and :func:`distance_kernel`.
KERNELS = ("gaussian", "inverse", "binary")

#: Mean Earth radius in kilometres (IUGG).
EARTH_RADIUS_KM = 6371.0088



# --------------------------------------------------------------------- helpers
def _preview(items: Iterable[Any], limit: int = 20) -> str:
    """``['a', 'b', ...] (N in all)`` -- the first ``limit`` items and the count."""
    items = list(items)
    head = ", ".join(repr(str(x)) for x in items[:limit])
    more = ", ..." if len(items) > limit else ""
    return f"[{head}{more}] ({len(items)} in all)"


def _id_strings(values: Any) -> np.ndarray:
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


def _as_id_list(sensor_ids: Any, field: str = "sensor_ids", source: Any = None) -> list[str]:
    """Validate a sequence of sensor ids: non-empty, unique; return them as ``str``."""
    if sensor_ids is None or isinstance(sensor_ids, (str, bytes)):
        raise GraphError(
            f"{where(source)}: {field} is {sensor_ids!r}; expected a sequence of sensor ids"
        )
    seq = list(sensor_ids)
    from ..io.series import id_strings
    id_strings(seq, field, source, DataFormatError)  # every id a scalar (no arrays or lists)
    ids = _id_strings(np.asarray(seq, dtype=object).reshape(-1)).tolist() if seq else []
    if not ids:
        raise GraphError(f"{where(source)}: {field} is empty; expected at least one sensor id")
    uniq, counts = np.unique(np.asarray(ids), return_counts=True)
    if (counts > 1).any():
        raise GraphError(
            f"{where(source)}: {field} has duplicate ids {_preview(uniq[counts > 1])}; "
            "expected each sensor once. Remove the repeated ids"
        )
    return ids


def _lookup(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _make_graph(
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
    ids = _as_id_list(sensor_ids, "sensor_ids", source)
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
    g = _make_graph(ids, src, dst, off[src, dst],
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
    ids = _as_id_list(ids_raw, "item 0 (sensor_ids)", path)
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
            f"{_preview(wrong)} and has {len(mapping)} entries for {len(ids)} ids; expected "
            "sensor_id_to_index[sensor_ids[i]] == i. Regenerate the pickle"
        )
    if not isinstance(adj, np.ndarray):
        raise DataFormatError(
            f"{where(path)}: item 2 (adj_mx) is a {type(adj).__name__}; expected an [N, N] numpy array"
        )
    return from_adjacency(adj, ids, source=path)


# ------------------------------------------------------------ distance tables
def distance_kernel(
    distance: Any,
    *,
    kernel: str = "gaussian",
    sigma: float | None = None,
) -> np.ndarray:
    """Weights from distances.

    * ``'gaussian'``: ``exp(-(d / sigma)^2)`` (DCRNN), ``sigma`` defaults to the
      population std of the finite distances given;
    * ``'inverse'``: ``1 / d`` (``d > 0`` required);
    * ``'binary'``: ``1`` for every finite distance.

    Args:
        distance: distances of any shape; ``inf`` means "no road" (weight 0).
        kernel: one of :data:`KERNELS`.
        sigma: Gaussian width, same unit as ``distance``.

    Returns:
        float64 array of the same shape.
    """
    d = np.asarray(distance, dtype=np.float64)
    finite = np.isfinite(d)
    if kernel == "gaussian":
        if sigma is None:
            sigma = float(d[finite].std()) if finite.any() else 0.0
        if not np.isfinite(sigma) or sigma <= 0:
            raise GraphError(
                f"gaussian kernel: sigma is {sigma}; expected a positive number. With "
                "sigma=None it is the std of the distances, which is 0 when they are all "
                "equal -- pass sigma= explicitly"
            )
        return np.where(finite, np.exp(-np.square(np.where(finite, d, 0.0) / sigma)), 0.0)
    if kernel == "inverse":
        if (finite & (d <= 0)).any():
            raise GraphError(
                "inverse kernel: found distances <= 0; expected d > 0 (weight 1/d). Drop "
                "zero-length pairs or use kernel='gaussian'"
            )
        with np.errstate(divide="ignore"):
            return np.where(finite, 1.0 / np.where(finite, d, 1.0), 0.0)
    if kernel == "binary":
        return finite.astype(np.float64)
    raise GraphError(f"kernel is {kernel!r}; expected one of {KERNELS}")


def _distance_rows(table: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """``(from_ids, to_ids, distances, source)`` of a distance table (path or rows)."""
    if isinstance(table, (str, Path)):
        source = Path(table)
        header, cells = read_table(source)
    else:
        source = None
        header, cells = rows_from_object(table, source)
    ncol = cells.shape[1] if cells.ndim == 2 else 0
    fc = find_column(header, FROM_NAMES, 0)
    tc = find_column(header, TO_NAMES, 1)
    dc = find_column(header, DIST_NAMES, 2)
    if fc is None or tc is None or dc is None or ncol < 3:
        raise DataFormatError(
            f"{where(source)}: distance table has columns {header or f'({ncol} unnamed)'}; "
            "expected from,to,cost (or from,to,distance). Rename the header or pass rows "
            "of (from, to, distance)"
        )
    return (_id_strings(cells[:, fc]), _id_strings(cells[:, tc]),
            float_column(cells[:, dc], (header or ["from", "to", "distance"])[dc], source), source)


def from_distances(
    table: str | Path | Any,
    sensor_ids: Sequence[Any],
    *,
    sigma: float | None = None,
    threshold: float | None = None,
    kernel: str = "gaussian",
    ignore_unknown: bool = False,
) -> nx.DiGraph:
    """Graph from a road-distance table, as DCRNN's ``gen_adj_mx.py`` builds it.

    The listed pairs form a directed distance matrix (unlisted pairs are
    ``inf``; rows repeating a pair keep the shorter distance). Weights are
    then ``kernel(d)``; with the Gaussian kernel ``sigma`` defaults to the
    population std of the listed distances among ``sensor_ids`` (self pairs
    included, as in DCRNN) and weights below ``threshold`` become 0. Self
    loops (DCRNN's diagonal of ones) are not kept. Each edge keeps its
    ``distance``; the graph records ``kernel``, ``sigma`` and ``threshold``.

    Args:
        table: path to a CSV with columns ``from,to,cost`` (or ``distance``;
            header optional), a DataFrame, or ``[M, 3]`` rows.
        sensor_ids: the ``N`` sensors, in node order; only these are used.
        sigma: Gaussian width in the table's unit (default: std of distances).
        threshold: weights ``< threshold`` are dropped. ``None`` means 0.1 for
            the Gaussian kernel (DCRNN's ``normalized_k``) and 0 for
            ``'inverse'`` / ``'binary'``, whose weights are not in ``(0, 1]``.
        kernel: ``'gaussian'`` (DCRNN), ``'inverse'`` (``1/d``) or ``'binary'``
            (connectivity, as in STSGCN's PEMS04/08 graphs).
        ignore_unknown: drop rows naming sensors outside ``sensor_ids`` instead
            of raising.

    Returns:
        DiGraph with ``N`` nodes; edge ``u -> v`` for every listed pair whose
        weight survives the threshold.

    Raises:
        GraphError: rows name unknown sensors (listed), no pair survives, or
            sigma is not positive.
        DataFormatError: the table lacks the columns or holds negative /
            non-numeric distances.
    """
    if kernel not in KERNELS:
        raise GraphError(f"kernel is {kernel!r}; expected one of {KERNELS}")
    ids = _as_id_list(sensor_ids)
    ids_arr = np.asarray(ids, dtype=str)
    frm, to, dist, source = _distance_rows(table)
    bad = ~np.isfinite(dist) | (dist < 0)
    if bad.any():
        rows = np.nonzero(bad)[0][:5]
        raise DataFormatError(
            f"{where(source)}: {int(bad.sum())} distances are negative or not finite, e.g. "
            f"{[(str(frm[r]), str(to[r]), float(dist[r])) for r in rows]} (from, to, distance); "
            "expected distances >= 0. Fix or drop those rows"
        )
    fi, fok = _lookup(ids_arr, frm)
    ti, tok = _lookup(ids_arr, to)
    if not (fok & tok).all():
        unknown = np.unique(np.concatenate([frm[~fok], to[~tok]]))
        if not ignore_unknown:
            raise GraphError(
                f"{where(source)}: {int((~(fok & tok)).sum())} rows name sensors not in "
                f"sensor_ids: {_preview(unknown)}; expected only the {len(ids)} given sensors. "
                "Pass the full sensor list or ignore_unknown=True to drop those rows"
            )
        keep = fok & tok
        fi, ti, dist = fi[keep], ti[keep], dist[keep]
    if dist.size == 0:
        raise GraphError(
            f"{where(source)}: no rows connect sensors in sensor_ids; expected pairs among "
            f"{_preview(ids)}"
        )
    # one entry per (from, to): sort by key then distance, keep the first (shortest)
    n = len(ids)
    key = fi.astype(np.int64) * n + ti
    order = np.lexsort((dist, key))
    key, fi, ti, dist = key[order], fi[order], ti[order], dist[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    fi, ti, dist = fi[first], ti[first], dist[first]
    if kernel == "gaussian":
        if sigma is None:
            sigma = float(dist.std())
        if not np.isfinite(sigma) or sigma <= 0:
            raise GraphError(
                f"{where(source)}: gaussian sigma is {sigma}; expected > 0. The default is "
                f"the std of the {dist.size} listed distances, 0 when they are all equal -- "
                "pass sigma= explicitly"
            )
    off = fi != ti
    weight = np.zeros_like(dist)
    weight[off] = distance_kernel(dist[off], kernel=kernel, sigma=sigma)
    thr = (0.1 if kernel == "gaussian" else 0.0) if threshold is None else float(threshold)
    keep = off & (weight >= thr) & (weight > 0)
    if not keep.any():
        raise GraphError(
            f"{where(source)}: no edge survives: {int(off.sum())} listed pairs between "
            f"distinct sensors, all with {kernel} weight < threshold {thr} (sigma={sigma}); "
            "expected at least one. Lower the threshold or raise sigma"
        )
    g = _make_graph(
        ids, fi[keep], ti[keep], weight[keep], dist[keep],
        source=None if source is None else str(source), kernel=kernel,
        sigma=float(sigma) if kernel == "gaussian" else None, threshold=thr,
    )
    validate_graph(g, source)
    return g


# ---------------------------------------------------------------- coordinates
def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (broadcasts).

    Args:
        lat1, lon1: first points, any broadcastable shapes.
        lat2, lon2: second points.

    Returns:
        float64 distances, the broadcast shape; Earth radius 6371.0088 km.
    """
    p1, l1, p2, l2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


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
    ids = _as_id_list(ids, "ids")
    n = len(ids)
    la = np.asarray(lat, dtype=np.float64).reshape(-1)
    lo = np.asarray(lon, dtype=np.float64).reshape(-1)
    if la.size != n or lo.size != n:
        raise GraphError(
            f"from_coordinates: got {n} ids, {la.size} latitudes and {lo.size} longitudes; "
            "expected one latitude and longitude per id"
        )
    from .coords import check_coordinates, pairwise_km

    la, lo, crs = check_coordinates(ids, la, lo, crs, "from_coordinates", GraphError)
    if k is None and radius_km is None:
        raise GraphError("from_coordinates: pass k= (nearest neighbours) or radius_km=; got neither")
    if k is not None and not (1 <= int(k) < n):
        raise GraphError(f"from_coordinates: k is {k}; expected 1 <= k < {n} (the number of sensors)")
    dmat = pairwise_km(la, lo, crs)
    cand = ~np.eye(n, dtype=bool)
    if radius_km is not None:
        cand &= dmat <= float(radius_km)
    if k is not None:
        masked = np.where(cand, dmat, np.inf)
        nearest = np.argsort(masked, axis=1, kind="stable")[:, : int(k)]
        rows = np.repeat(np.arange(n), int(k))
        cols = nearest.reshape(-1)
        ok = np.isfinite(masked[rows, cols])
        adj = np.zeros((n, n), dtype=bool)
        adj[cols[ok], rows[ok]] = True  # neighbour -> sensor
        if symmetric:
            adj |= adj.T
    else:
        adj = cand
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
    g = _make_graph(ids, src, dst, weight, d, kernel="gaussian", sigma=float(sigma),
                    k=None if k is None else int(k),
                    radius_km=None if radius_km is None else float(radius_km))
    for i, sid in enumerate(ids):
        g.nodes[sid]["lat"] = float(la[i])
        g.nodes[sid]["lon"] = float(lo[i])
    if crs == "projected":
        g.graph["crs"] = "projected"
    validate_graph(g, None)
    return g


# ------------------------------------------------------------------ edge lists
def from_edge_list(
    edges: str | Path | Any,
    *,
    sensor_ids: Sequence[Any] | None = None,
    ignore_unknown: bool = False,
    default_weight: float = 1.0,
) -> nx.DiGraph:
    """Graph from ``source,target[,weight]`` rows.

    Files may be comma, tab or whitespace separated, with an optional header
    (``source,target,weight``, ``from,to``, ...; a ``distance``/``cost``
    column is kept as the edge's ``distance``). A pair listed twice keeps its
    last row. Self loops are kept as given.

    Args:
        edges: path to the file, a DataFrame, or rows ``(source, target[, weight])``.
        sensor_ids: node order; default: ids in order of first appearance.
        ignore_unknown: with ``sensor_ids``, drop rows naming other sensors
            instead of raising.
        default_weight: weight of rows without one.

    Returns:
        DiGraph.

    Raises:
        DataFormatError: fewer than 2 columns, or non-numeric weights.
        GraphError: unknown sensors (with ``sensor_ids``), negative or
            non-finite weights, or no edges.
    """
    if isinstance(edges, (str, Path)):
        source: Path | None = Path(edges)
        header, cells = read_table(source)
    else:
        source = None
        header, cells = rows_from_object(edges, source)
    if cells.ndim != 2 or cells.shape[1] < 2:
        raise DataFormatError(
            f"{where(source)}: edge list has {cells.shape[1] if cells.ndim == 2 else 0} "
            "columns; expected source,target[,weight]"
        )
    if cells.shape[0] == 0:
        raise GraphError(f"{where(source)}: edge list has no rows; expected at least one edge")
    sc, tc = find_column(header, FROM_NAMES, 0), find_column(header, TO_NAMES, 1)
    if sc is None or tc is None:
        raise DataFormatError(
            f"{where(source)}: edge list header {header} lacks a source/target column; "
            "expected e.g. 'source,target,weight'"
        )
    wc = find_column(header, WEIGHT_NAMES, 2 if cells.shape[1] > 2 else None)
    dc = find_column(header, DIST_NAMES, None)
    src, dst = _id_strings(cells[:, sc]), _id_strings(cells[:, tc])
    weight = (np.full(src.size, float(default_weight)) if wc is None
              else float_column(cells[:, wc], (header or ["", "", "weight"])[wc], source))
    dist = None if dc is None else float_column(cells[:, dc], header[dc], source)
    if sensor_ids is None:
        both = np.stack([src, dst], axis=1).reshape(-1)
        _, first = np.unique(both, return_index=True)
        ids = both[np.sort(first)].tolist()
    else:
        ids = _as_id_list(sensor_ids)
    ids_arr = np.asarray(ids, dtype=str)
    si, sok = _lookup(ids_arr, src)
    ti, tok = _lookup(ids_arr, dst)
    keep = sok & tok
    if not keep.all():
        if not ignore_unknown:
            raise GraphError(
                f"{where(source)}: {int((~keep).sum())} rows name sensors not in sensor_ids: "
                f"{_preview(np.unique(np.concatenate([src[~sok], dst[~tok]])))}; expected only "
                f"the {len(ids)} given sensors. Pass the full list or ignore_unknown=True"
            )
        si, ti, weight = si[keep], ti[keep], weight[keep]
        dist = None if dist is None else dist[keep]
    g = _make_graph(ids, si, ti, weight, dist, source=None if source is None else str(source))
    validate_graph(g, source)
    return g


# ------------------------------------------------------------------ sensor order
def for_sensors(graph: nx.DiGraph, sensor_ids: Sequence[Any]) -> tuple[nx.DiGraph, list[str]]:
    """``graph`` restricted to ``sensor_ids``, nodes in that order (``index`` = position): what
    ``graph build --sensors`` does with every builder. Returns ``(graph, dropped ids)``.

    Raises:
        GraphError: sensors of ``sensor_ids`` that the graph lacks (listed, with the count).
    """
    from .convert import _positions

    ids = _as_id_list(sensor_ids)
    _positions(graph, ids, drop_extra=True)  # every sensor must be in the graph
    keep = set(ids)
    out = nx.DiGraph(**graph.graph)
    for i, s in enumerate(ids):
        out.add_node(s, **{**graph.nodes[s], "sensor_id": s, "index": i})
    out.add_edges_from((u, v, a) for u, v, a in graph.edges(data=True) if u in keep and v in keep)
    dropped = [str(u) for u in graph.nodes if u not in keep]
    validate_graph(out, graph.graph.get("source"))
    return out, dropped
