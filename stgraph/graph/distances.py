"""Road graphs from road-distance tables, as DCRNN's ``gen_adj_mx.py`` builds them: :func:`from_distances`.

A ``from,to,cost`` table (PEMS04/08's ``distance.csv``, METR-LA's ``distances_la_2012.csv``) gives a
directed distance per listed pair; weights are a kernel of the distance (:func:`~stgraph.graph.coords.distance_kernel`:
DCRNN's thresholded Gaussian, ``1/d``, or binary connectivity as in STSGCN's PEMS04/08 graphs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np

from ..errors import DataFormatError, GraphError, where
from .coords import KERNELS, distance_kernel
from .info import validate_graph
from .nodes import as_id_list, lookup, make_graph, preview, table_ids
from .table import DIST_NAMES, FROM_NAMES, TO_NAMES, find_column, float_column, read_table, rows_from_object

__all__ = ["from_distances"]


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
    extra = [h for k, h in enumerate(header or []) if k not in (fc, tc, dc) and h not in ("index", "", "unnamed: 0")]
    if extra:
        raise DataFormatError(
            f"{where(source)}: distance table has column(s) {extra} besides from, to and {header[dc]}; they would "
            f"be ignored. Expected from,to,cost (DCRNN's layout); for a table with more columns (a date, several "
            f"rows per pair) read it as an edge table: stgraph graph build --edges FILE --weight-column "
            f"{header[dc]} --weights distance --aggregate mean|max|last|sum (see README 'Bringing your own data')")
    return (table_ids(cells[:, fc]), table_ids(cells[:, tc]),
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
    ids = as_id_list(sensor_ids)
    frm, to, dist, source = _distance_rows(table)
    fi, ti, dist = _pairs_among(ids, frm, to, dist, source, ignore_unknown)
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
    g = make_graph(
        ids, fi[keep], ti[keep], weight[keep], dist[keep],
        source=None if source is None else str(source), kernel=kernel,
        sigma=float(sigma) if kernel == "gaussian" else None, threshold=thr,
    )
    validate_graph(g, source)
    return g


def _pairs_among(ids: list[str], frm: np.ndarray, to: np.ndarray, dist: np.ndarray, source: Any,
                 ignore_unknown: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(from positions, to positions, distances)`` of the table's rows between ``ids``, one row per
    ``(from, to)`` pair (the shortest distance listed), sorted by pair.

    Raises:
        DataFormatError: negative or non-finite distances.
        GraphError: rows naming other sensors (unless ``ignore_unknown``), or no row left.
    """
    bad = ~np.isfinite(dist) | (dist < 0)
    if bad.any():
        rows = np.nonzero(bad)[0][:5]
        raise DataFormatError(
            f"{where(source)}: {int(bad.sum())} distances are negative or not finite, e.g. "
            f"{[(str(frm[r]), str(to[r]), float(dist[r])) for r in rows]} (from, to, distance); "
            "expected distances >= 0. Fix or drop those rows"
        )
    ids_arr = np.asarray(ids, dtype=str)
    fi, fok = lookup(ids_arr, frm)
    ti, tok = lookup(ids_arr, to)
    if not (fok & tok).all():
        unknown = np.unique(np.concatenate([frm[~fok], to[~tok]]))
        if not ignore_unknown:
            raise GraphError(
                f"{where(source)}: {int((~(fok & tok)).sum())} rows name sensors not in "
                f"sensor_ids: {preview(unknown)}; expected only the {len(ids)} given sensors. "
                "Pass the full sensor list or ignore_unknown=True to drop those rows"
            )
        keep = fok & tok
        fi, ti, dist = fi[keep], ti[keep], dist[keep]
    if dist.size == 0:
        raise GraphError(
            f"{where(source)}: no rows connect sensors in sensor_ids; expected pairs among "
            f"{preview(ids)}"
        )
    # one entry per (from, to): sort by key then distance, keep the first (shortest)
    n = len(ids)
    key = fi.astype(np.int64) * n + ti
    order = np.lexsort((dist, key))
    key, fi, ti, dist = key[order], fi[order], ti[order], dist[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return fi[first], ti[first], dist[first]
