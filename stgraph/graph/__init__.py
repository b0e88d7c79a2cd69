"""Road graphs of traffic sensor networks.

A graph is a :class:`networkx.DiGraph` whose node keys are sensor ids
(``str``) with attributes ``sensor_id``, ``index`` and, when known, ``lat`` /
``lon``; edges ``u -> v`` (traffic flows from ``u`` to ``v``) carry
``weight`` and, when known, ``distance``.

Modules: :mod:`~stgraph.graph.safe_pickle` (restricted unpickling),
:mod:`~stgraph.graph.nodes` (sensor ids as nodes), :mod:`~stgraph.graph.table` (small text tables),
:mod:`~stgraph.graph.coords` (coordinates and distances), :mod:`~stgraph.graph.edges` (edge tables
read as declared: weight column, meaning, aggregation), builders in :mod:`~stgraph.graph.build`
(matrices, pickles, edge lists), :mod:`~stgraph.graph.distances` (distance tables) and
:mod:`~stgraph.graph.nearest` (sensor positions), files in :mod:`~stgraph.graph.io` (any format),
:mod:`~stgraph.graph.formats` (node-link, GraphML) and :mod:`~stgraph.graph.locations`,
:mod:`~stgraph.graph.convert` (PyG / dense matrices), :mod:`~stgraph.graph.info` (summary and validation).
"""
from .build import from_adj_pickle, from_adjacency, from_edge_list, for_sensors
from .convert import WEIGHT_MEANINGS, edge_similarity, to_adjacency, to_pyg
from .coords import KERNELS, axis_labels, check_coordinates, distance_kernel, haversine_km, parse_crs
from .distances import from_distances
from .edges import AGGREGATES, EDGE_WEIGHTS, EdgeTable, read_edge_table
from .formats import read_graphml, read_node_link, write_graphml, write_node_link
from .info import graph_info, has_coordinates, validate_graph
from .io import adj_mx, read_graph, write_graph
from .locations import attach_locations, read_locations, write_locations
from .nearest import from_coordinates
from .safe_pickle import SafeUnpickler, safe_load_pickle, safe_loads

__all__ = [
    "AGGREGATES",
    "EDGE_WEIGHTS",
    "EdgeTable",
    "read_edge_table",
    "KERNELS",
    "SafeUnpickler",
    "adj_mx",
    "attach_locations",
    "distance_kernel",
    "from_adj_pickle",
    "from_adjacency",
    "from_coordinates",
    "from_distances",
    "from_edge_list",
    "for_sensors",
    "axis_labels",
    "check_coordinates",
    "parse_crs",
    "graph_info",
    "has_coordinates",
    "haversine_km",
    "read_graph",
    "read_graphml",
    "read_locations",
    "read_node_link",
    "safe_load_pickle",
    "safe_loads",
    "to_adjacency",
    "WEIGHT_MEANINGS",
    "edge_similarity",
    "to_pyg",
    "validate_graph",
    "write_graph",
    "write_graphml",
    "write_locations",
    "write_node_link",
]
