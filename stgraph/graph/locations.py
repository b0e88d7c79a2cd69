"""Sensor locations: DCRNN's ``graph_sensor_locations.csv`` (``index,sensor_id,latitude,longitude``).

:func:`read_locations` reads such a table, :func:`attach_locations` puts its coordinates on a graph's
nodes, :func:`write_locations` writes them back. Coordinates are degrees, projected metres or an
``EPSG:<code>`` converted to degrees (:mod:`.coords`), checked the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np

from ..cells import safe_cell
from ..errors import DataFormatError, GraphError, where
from ..files import atomic_write
from .coords import check_coordinates, parse_crs
from .formats import node_order
from .nodes import table_ids
from .table import float_column, read_table

__all__ = ["read_locations", "write_locations", "attach_locations"]


def read_locations(path: str | Path, crs: str = "degrees") -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read sensor positions, e.g. DCRNN's ``graph_sensor_locations.csv``.

    Columns ``sensor_id`` (or ``id``), ``latitude`` (or ``lat``, ``y``, ``northing``) and
    ``longitude`` (or ``lon``/``lng``, ``x``, ``easting``); an ``index`` column is allowed.
    Without a header, columns are ``index,sensor_id,latitude,longitude`` (4)
    or ``sensor_id,latitude,longitude`` (3).

    Args:
        crs: ``"degrees"``, ``"projected"`` (metres) or ``"EPSG:<code>"`` (converted to degrees), see
            :mod:`stgraph.graph.coords`; checked as everywhere else.

    Returns:
        ``(ids, a, b)``: ``N`` ids (str) in file order and ``[N]`` float64 latitude / longitude
        degrees (or northing / easting metres with ``crs="projected"``).

    Raises:
        MissingFileError: no such file.
        DataFormatError: missing columns, non-numeric or out-of-range
            coordinates, repeated ids.
    """
    path = Path(path)
    header, cells = read_table(path)
    ncol = cells.shape[1]

    def col(names: Sequence[str], default: int | None) -> int | None:
        if header is None:
            return default
        return next((header.index(n) for n in names if n in header), None)

    off = 1 if ncol >= 4 else 0
    ic = col(("sensor_id", "id", "sensor"), off)
    la = col(("latitude", "lat", "y", "northing"), off + 1)
    lo = col(("longitude", "lon", "lng", "long", "x", "easting"), off + 2)
    if ic is None or la is None or lo is None or ncol < 3:
        raise DataFormatError(
            f"{where(path)}: location table has columns {header or f'({ncol} unnamed)'}; "
            "expected sensor_id,latitude,longitude (optionally after index)"
        )
    ids = table_ids(cells[:, ic])
    lat = float_column(cells[:, la], "latitude", path)
    lon = float_column(cells[:, lo], "longitude", path)
    lat, lon, _ = check_coordinates(ids, lat, lon, crs, path)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataFormatError(
            f"{where(path)}: sensor ids repeat: {uniq[counts > 1][:20].tolist()}; expected one "
            "row per sensor"
        )
    return ids.tolist(), lat, lon


def write_locations(graph: nx.DiGraph, path: str | Path, *, index: bool = True) -> Path:
    """Write the nodes' ``lat``/``lon`` as DCRNN's ``graph_sensor_locations.csv``.

    Columns ``index,sensor_id,latitude,longitude`` (``sensor_id,latitude,longitude`` with
    ``index=False``), one row per node in the graph's node order (by ``index`` when it numbers the
    nodes ``0..N-1``, else insertion order), degrees to 6 decimals. :func:`read_locations` reads it back.

    Returns:
        the path written.

    Raises:
        GraphError: a node has no ``lat``/``lon``.
    """
    path = Path(path)
    nodes = node_order(graph)
    missing = [str(u) for u in nodes if graph.nodes[u].get("lat") is None or graph.nodes[u].get("lon") is None]
    if missing:
        raise GraphError(f"{where(path)}: not written: nodes {missing[:10]} have no lat/lon; expected every node "
                         f"to carry coordinates (attach_locations adds them)")
    rows = ["index,sensor_id,latitude,longitude" if index else "sensor_id,latitude,longitude"]
    for i, u in enumerate(nodes):
        a = graph.nodes[u]
        row = f"{safe_cell(str(a.get('sensor_id', u)))},{float(a['lat']):.6f},{float(a['lon']):.6f}"
        rows.append(f"{i},{row}" if index else row)
    atomic_write(path, "\n".join(rows) + "\n")
    return path


def attach_locations(
    graph: nx.DiGraph,
    locations: str | Path | tuple[Sequence[Any], Any, Any],
    *,
    strict: bool = True,
    crs: str = "degrees",
) -> nx.DiGraph:
    """Set ``lat`` / ``lon`` on the graph's nodes (in place).

    Args:
        graph: the road graph.
        locations: a location CSV (see :func:`read_locations`) or
            ``(ids, lat, lon)``.
        strict: raise when a graph sensor has no location; else leave it
            without coordinates. Locations of sensors not in the graph are
            ignored.
        crs: the locations' coordinate system (:mod:`stgraph.graph.coords`); ``projected``
            is recorded as ``graph.graph["crs"]``.

    Returns:
        ``graph``.

    Raises:
        GraphError: with ``strict``, graph sensors missing from the locations
            (listed).
    """
    if isinstance(locations, (str, Path)):
        ids, lat, lon = read_locations(locations, crs)
        source = locations
    else:
        ids, lat, lon = locations
        ids = [str(s) for s in ids]
        source = None
        lat, lon, _ = check_coordinates(ids, lat, lon, crs, source)
    pos = {s: i for i, s in enumerate(ids)}
    missing = [u for u in graph.nodes if str(u) not in pos]
    if missing and strict:
        head = ", ".join(repr(str(m)) for m in missing[:20])
        raise GraphError(
            f"{where(source)}: no location for {len(missing)} graph sensors: [{head}"
            f"{', ...' if len(missing) > 20 else ''}]; expected a row per sensor. Use the "
            "location file of this dataset or pass strict=False"
        )
    for u in graph.nodes:
        i = pos.get(str(u))
        if i is not None:
            graph.nodes[u]["lat"] = float(lat[i])
            graph.nodes[u]["lon"] = float(lon[i])
    if parse_crs(crs) == "projected":
        graph.graph["crs"] = "projected"
    return graph
