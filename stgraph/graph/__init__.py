"""Road graphs of traffic sensor networks.

A graph is a :class:`networkx.DiGraph` whose node keys are sensor ids
(``str``) with attributes ``sensor_id``, ``index`` and, when known, ``lat`` /
``lon``; edges ``u -> v`` (traffic flows from ``u`` to ``v``) carry
``weight`` and, when known, ``distance``.

Modules: :mod:`~stgraph.graph.safe_pickle` (restricted unpickling),
:mod:`~stgraph.graph.build` (builders), :mod:`~stgraph.graph.io` (files),
:mod:`~stgraph.graph.convert` (PyG / dense matrices),
:mod:`~stgraph.graph.info` (summary and validation).
"""
from .build import (
    KERNELS,
    distance_kernel,
    from_adj_pickle,
    from_adjacency,
    from_coordinates,
    from_distances,
    from_edge_list,
    for_sensors,
    haversine_km,
)
from .coords import axis_labels, check_coordinates, parse_crs
from .convert import WEIGHT_MEANINGS, edge_similarity, to_adjacency, to_pyg
from .info import graph_info, has_coordinates, validate_graph
from .io import (
    adj_mx,
    attach_locations,
    read_graph,
    read_graphml,
    read_locations,
    read_node_link,
    write_graph,
    write_graphml,
    write_locations,
    write_node_link,
)
from .safe_pickle import SafeUnpickler, safe_load_pickle, safe_loads

__all__ = [
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
