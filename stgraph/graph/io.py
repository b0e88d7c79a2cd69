"""Read and write road graphs and sensor locations.

* :func:`read_graph` -- any supported file, detected by suffix, else content:
  ``.pkl`` (DCRNN ``adj_mx.pkl``), ``.json`` (node-link), ``.graphml``,
  ``.csv``/``.txt`` tables (a ``from,to,cost`` distance table, a dense
  ``[N, N]`` matrix such as T-GCN's ``los_adj.csv``, or an edge list);
* :func:`write_graph` -- ``.json``, ``.graphml``, ``.csv`` edge list or a
  DCRNN-style ``.pkl``, chosen by suffix;
* :func:`read_node_link` / :func:`write_node_link`, :func:`read_graphml` /
  :func:`write_graphml` -- the two lossless formats; ids stay ``str`` and
  ``lat``/``lon``/``weight``/``distance`` survive a round trip;
* :func:`read_locations` / :func:`attach_locations` / :func:`write_locations` -- DCRNN's
  ``graph_sensor_locations.csv`` (``index,sensor_id,latitude,longitude``).
"""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any, Sequence

import networkx as nx
import numpy as np

from ..errors import DataFormatError, GraphError, MissingFileError, where
from ..files import atomic_open, atomic_path, atomic_write
from .build import (
    _id_strings,
    from_adj_pickle,
    from_adjacency,
    from_distances,
    from_edge_list,
)
from .convert import to_adjacency
from .coords import check_coordinates, parse_crs
from .info import validate_graph
from .table import DIST_NAMES, WEIGHT_NAMES, float_column, read_table

__all__ = [
    "read_graph",
    "write_graph",
    "read_node_link",
    "write_node_link",
    "read_graphml",
    "write_graphml",
    "read_locations",
    "attach_locations",
    "write_locations",
    "adj_mx",
    "GRAPH_SUFFIXES",
]

#: Suffix -> format understood by :func:`read_graph` / :func:`write_graph`.
GRAPH_SUFFIXES = {
    ".pkl": "pickle", ".pickle": "pickle",
    ".json": "json",
    ".graphml": "graphml", ".xml": "graphml",
    ".csv": "table", ".tsv": "table", ".txt": "table", ".edges": "table", ".edgelist": "table",
}


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise MissingFileError(
            f"{where(path)}: {what} not found; put the file at this path or pass the right one"
        )


# ------------------------------------------------------------------ attributes
def _plain(value: Any) -> Any:
    """A JSON/GraphML-safe builtin for ``value``; ``None`` to drop it."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def _plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        v = _plain(value)
        if v is not None:
            out[str(key)] = v
    return out


def _node_order(graph: nx.DiGraph) -> list[Any]:
    """Nodes by their ``index`` attribute when it numbers them 0..N-1, else insertion order."""
    nodes = list(graph.nodes)
    idx = [graph.nodes[u].get("index") for u in nodes]
    if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in idx) and \
            sorted(int(i) for i in idx) == list(range(len(nodes))):
        return [u for _, u in sorted(zip((int(i) for i in idx), nodes), key=lambda t: t[0])]
    return nodes


def _graph_attrs(attrs, source, what: str) -> dict:
    """Graph-level attributes as a ``{str: value}`` dict; anything else (a list, a non-text key,
    networkx's constructor keywords ``incoming_graph_data`` / ``attr``) is an error naming the file."""
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise DataFormatError(f"{where(source)}: {what} is a {type(attrs).__name__}; expected an object of "
                              f"graph attributes (name -> text or number), e.g. {{\"name\": \"metr-la\"}}")
    out = {}
    for k, v in attrs.items():
        if k in ("incoming_graph_data", "attr") or not isinstance(k, str):
            raise DataFormatError(f"{where(source)}: {what} holds the key {str(k)!r}, which is not a graph attribute "
                                  f"stgraph accepts (it would be passed to networkx's graph constructor); remove it")
        out[k] = v
    return out


def _check_node_coordinates(graph: nx.DiGraph, source, crs: str | None = None) -> None:
    """Node ``lat`` / ``lon`` are checked like a location file's: degrees unless ``crs`` (or the graph's
    own attribute ``crs``) says ``projected`` (an ``EPSG:<code>`` is converted to degrees)."""
    nodes = [(u, a) for u, a in graph.nodes(data=True) if a.get("lat") is not None and a.get("lon") is not None]
    if not nodes:
        return
    crs = parse_crs(crs or graph.graph.get("crs"))
    ids = [u for u, _ in nodes]
    lat, lon, crs = check_coordinates(ids, [a["lat"] for _, a in nodes], [a["lon"] for _, a in nodes], crs, source)
    for (u, _), y, x in zip(nodes, lat, lon):
        graph.nodes[u]["lat"], graph.nodes[u]["lon"] = float(y), float(x)
    if crs == "projected":
        graph.graph["crs"] = "projected"
    else:
        graph.graph.pop("crs", None)


def _normalise(graph: nx.Graph, source: Path, crs: str | None = None) -> nx.DiGraph:
    """Make a freshly read graph follow the package's model.

    Undirected graphs become both-way DiGraphs, multigraphs collapse, node
    keys and ``sensor_id`` become ``str``, ``index`` becomes ``int`` (file
    order where absent), ``lat``/``lon``/``weight``/``distance`` become floats.
    """
    if graph.is_multigraph():
        graph = nx.DiGraph(graph) if graph.is_directed() else nx.Graph(graph)
    if not graph.is_directed():
        graph = graph.to_directed()
    out = nx.DiGraph()
    out.graph.update(_graph_attrs(graph.graph, source, "the graph's attributes"))
    out.graph["source"] = str(source)
    for i, (u, attrs) in enumerate(graph.nodes(data=True)):
        key = str(u)
        a = dict(attrs)
        a["sensor_id"] = key
        try:
            a["index"] = int(a.get("index", i))
            for name in ("lat", "lon"):
                if a.get(name) is not None:
                    a[name] = float(a[name])
        except (TypeError, ValueError) as exc:
            raise DataFormatError(
                f"{where(source)}: node {key!r} has a non-numeric index/lat/lon ({exc}); "
                "expected an int index and float degrees"
            ) from exc
        out.add_node(key, **a)
    _check_node_coordinates(out, source, crs)
    for u, v, attrs in graph.edges(data=True):
        a = dict(attrs)
        try:
            a["weight"] = float(a.get("weight", 1.0))
            if a.get("distance") is not None:
                a["distance"] = float(a["distance"])
        except (TypeError, ValueError) as exc:
            raise DataFormatError(
                f"{where(source)}: edge {str(u)!r} -> {str(v)!r} has a non-numeric weight/"
                f"distance ({exc}); expected floats"
            ) from exc
        out.add_edge(str(u), str(v), **a)
    return validate_graph(out, source)


# ----------------------------------------------------------------- node-link
def write_node_link(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write ``graph`` as node-link JSON.

    Layout: ``{"directed": true, "multigraph": false, "graph": {...},
    "nodes": [{"id": str, ...attrs}], "edges": [{"source": str,
    "target": str, ...attrs}]}``. Attributes that are not str/int/float/bool
    or are non-finite floats are left out.

    Returns:
        the path written.
    """
    path = Path(path)
    plain = nx.DiGraph()
    plain.graph.update(_plain_attrs(graph.graph))
    plain.add_nodes_from((str(u), _plain_attrs(graph.nodes[u])) for u in _node_order(graph))
    plain.add_edges_from((str(u), str(v), _plain_attrs(a)) for u, v, a in graph.edges(data=True))
    doc = nx.node_link_data(plain, edges="edges")
    atomic_write(path, json.dumps(doc, indent=1, allow_nan=False))
    return path


def read_node_link(path: str | Path, crs: str | None = None) -> nx.DiGraph:
    """Read node-link JSON (this package's or networkx's, ``edges`` or ``links``).

    Raises:
        MissingFileError: no such file.
        DataFormatError: not JSON, or not the node-link layout.
        GraphError: the graph fails :func:`~stgraph.graph.info.validate_graph`.
    """
    path = Path(path)
    _require_file(path, "node-link JSON graph")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{where(path)}: not valid JSON ({exc}); expected a node-link graph") from exc
    except RecursionError:
        raise DataFormatError(f"{where(path)}: JSON nested too deeply to read (thousands of levels of "
                              f"arrays/objects); expected a node-link graph") from None
    edges = doc.get("edges", doc.get("links")) if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or not isinstance(edges, list):
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise DataFormatError(
            f"{where(path)}: JSON has {found}; expected an object with 'nodes' and 'edges' "
            "(or 'links') lists as written by write_node_link / networkx.node_link_data"
        )
    attrs = _graph_attrs(doc.get("graph"), path, "the 'graph' entry")
    try:
        nodes = [{**{k: v for k, v in node.items() if k != "id" and v is not None}, "id": str(node["id"])}
                 for node in doc["nodes"]]
        known = {node["id"] for node in nodes}
        links = []
        for e in edges:
            u, v = str(e["source"]), str(e["target"])
            if u not in known or v not in known:
                raise DataFormatError(
                    f"{where(path)}: edge {u!r} -> {v!r} names a node missing from 'nodes'; "
                    "expected every edge endpoint to be listed"
                )
            links.append({**{k: x for k, x in e.items() if k not in ("source", "target") and x is not None},
                          "source": u, "target": v})
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataFormatError(
            f"{where(path)}: a node or edge lacks its 'id' / 'source' / 'target' ({exc!r}); "
            "expected node objects with 'id' and edge objects with 'source' and 'target'"
        ) from exc
    g = nx.node_link_graph({"directed": bool(doc.get("directed", True)), "multigraph": False, "graph": attrs,
                            "nodes": nodes, "edges": links}, edges="edges")
    return _normalise(g, path, crs)


# ------------------------------------------------------------------- GraphML
def write_graphml(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write ``graph`` as GraphML (attributes restricted to str/int/float/bool).

    Returns:
        the path written.
    """
    path = Path(path)
    g = nx.DiGraph(**_plain_attrs(graph.graph))
    for u in _node_order(graph):
        g.add_node(str(u), **_plain_attrs(graph.nodes[u]))
    g.add_edges_from((str(u), str(v), _plain_attrs(a)) for u, v, a in graph.edges(data=True))
    with atomic_path(path) as tmp:
        nx.write_graphml(g, tmp)
    return path


def read_graphml(path: str | Path, crs: str | None = None) -> nx.DiGraph:
    """Read GraphML; node ids are kept as strings.

    Raises:
        MissingFileError: no such file.
        DataFormatError: not parseable GraphML.
        GraphError: the graph fails :func:`~stgraph.graph.info.validate_graph`.
    """
    path = Path(path)
    _require_file(path, "GraphML graph")
    try:
        g = nx.read_graphml(path, node_type=str)
    except Exception as exc:  # ElementTree.ParseError, NetworkXError, KeyError ...
        raise DataFormatError(
            f"{where(path)}: not readable GraphML ({type(exc).__name__}: {exc}); expected a "
            "GraphML document such as write_graphml produces"
        ) from exc
    return _normalise(g, path, crs)


# ----------------------------------------------------------------- locations
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
    ids = _id_strings(cells[:, ic])
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
    nodes = _node_order(graph)
    missing = [str(u) for u in nodes if graph.nodes[u].get("lat") is None or graph.nodes[u].get("lon") is None]
    if missing:
        raise GraphError(f"{where(path)}: not written: nodes {missing[:10]} have no lat/lon; expected every node "
                         f"to carry coordinates (attach_locations adds them)")
    rows = ["index,sensor_id,latitude,longitude" if index else "sensor_id,latitude,longitude"]
    for i, u in enumerate(nodes):
        a = graph.nodes[u]
        row = f"{a.get('sensor_id', u)},{float(a['lat']):.6f},{float(a['lon']):.6f}"
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
    if header is not None and any(n in header for n in DIST_NAMES) and \
            not any(n in header for n in WEIGHT_NAMES):
        if sensor_ids is None:
            raise GraphError(
                f"{where(path)}: is a distance table (columns {header}); pass sensor_ids= "
                "(e.g. the series' sensor ids; on the command line --sensors SERIES_FILE) to choose "
                "the nodes and their order"
            )
        return from_distances(path, sensor_ids, **kwargs)
    rows, cols = cells.shape
    if header is None and cols >= 4 and rows == cols:
        if sensor_ids is None:
            raise GraphError(
                f"{where(path)}: is a dense {rows} x {cols} matrix; pass sensor_ids= (the "
                "ids of its rows, e.g. the series' sensor ids; on the command line --sensors SERIES_FILE)"
            )
        return from_adjacency(float_column(cells, "matrix", path), sensor_ids, source=path)
    return from_edge_list(path, sensor_ids=sensor_ids, **kwargs)


def read_graph(
    path: str | Path,
    *,
    sensor_ids: Sequence[Any] | None = None,
    format: str | None = None,
    crs: str | None = None,
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
        **kwargs: passed to :func:`~stgraph.graph.build.from_distances`
            (``sigma``, ``threshold``, ``kernel``, ``ignore_unknown``) or
            :func:`~stgraph.graph.build.from_edge_list`.

    A ``.csv`` is a distance table when its header names ``cost``/``distance``
    (and no ``weight``), a dense matrix when it has no header and ``N >= 4``
    rows of ``N`` values, else an edge list.

    Raises:
        MissingFileError, DataFormatError, GraphError, UnsafePickleError.
    """
    path = Path(path)
    _require_file(path, "graph file")
    _refuse_series_file(path)
    fmt = format or GRAPH_SUFFIXES.get(path.suffix.lower()) or _sniff(path)
    if fmt == "pickle":
        return from_adj_pickle(path)
    if fmt == "json":
        return read_node_link(path, crs)
    if fmt == "graphml":
        return read_graphml(path, crs)
    if fmt == "table":
        return _read_table_graph(path, sensor_ids, **kwargs)
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
    ids = [str(u) for u in _node_order(graph)]
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
            row = f"{u},{v},{float(a.get('weight', 1.0))!r}"
            lines.append(row + (f",{float(a['distance'])!r}" if with_d else ""))
        atomic_write(path, "\n".join(lines) + "\n")
        return path
    raise DataFormatError(
        f"{where(path)}: cannot write suffix {path.suffix!r}; expected .json, .graphml, "
        ".csv or .pkl"
    )
