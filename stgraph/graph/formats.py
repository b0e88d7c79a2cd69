"""The two lossless graph files, node-link JSON and GraphML, read into the package's graph model.

:func:`read_node_link` / :func:`write_node_link`, :func:`read_graphml` / :func:`write_graphml`: ids
stay ``str`` and ``lat``/``lon``/``weight``/``distance`` survive a round trip. A graph read from a
file is normalised (:func:`normalise`): both-way edges for an undirected graph, ``str`` node keys,
``int`` ``index``, float coordinates (checked as every location is, :mod:`.coords`) and weights.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from ..errors import DataFormatError, MissingFileError, where
from ..files import atomic_path, atomic_write
from .coords import check_coordinates, parse_crs
from .info import validate_graph

__all__ = ["read_node_link", "write_node_link", "read_graphml", "write_graphml", "normalise", "node_order",
           "plain_attrs", "require_file"]


def require_file(path: Path, what: str) -> None:
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


def plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        v = _plain(value)
        if v is not None:
            out[str(key)] = v
    return out


def node_order(graph: nx.DiGraph) -> list[Any]:
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


def normalise(graph: nx.Graph, source: Path, crs: str | None = None) -> nx.DiGraph:
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
    plain.graph.update(plain_attrs(graph.graph))
    plain.add_nodes_from((str(u), plain_attrs(graph.nodes[u])) for u in node_order(graph))
    plain.add_edges_from((str(u), str(v), plain_attrs(a)) for u, v, a in graph.edges(data=True))
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
    require_file(path, "node-link JSON graph")
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
    return normalise(g, path, crs)


# ------------------------------------------------------------------- GraphML
def write_graphml(graph: nx.DiGraph, path: str | Path) -> Path:
    """Write ``graph`` as GraphML (attributes restricted to str/int/float/bool).

    Returns:
        the path written.
    """
    path = Path(path)
    g = nx.DiGraph(**plain_attrs(graph.graph))
    for u in node_order(graph):
        g.add_node(str(u), **plain_attrs(graph.nodes[u]))
    g.add_edges_from((str(u), str(v), plain_attrs(a)) for u, v, a in graph.edges(data=True))
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
    require_file(path, "GraphML graph")
    try:
        g = nx.read_graphml(path, node_type=str)
    except Exception as exc:  # ElementTree.ParseError, NetworkXError, KeyError ...
        raise DataFormatError(
            f"{where(path)}: not readable GraphML ({type(exc).__name__}: {exc}); expected a "
            "GraphML document such as write_graphml produces"
        ) from exc
    return normalise(g, path, crs)
