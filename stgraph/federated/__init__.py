"""Federated training across road agencies, on Flower (``flwr``).

Each client holds one agency's sensors (a subgraph of the road network) and its
own series; only weights travel. The server runs Flower's FedAvg (or FedProx),
weighted by the clients' training windows; sensor-tied tensors (e.g. stgt's
sensor embeddings) stay on their client.

* :mod:`~stgraph.federated.partition`: ``by-region``, ``metis``, ``random``, partition files;
* :mod:`~stgraph.federated.client`: client folders and the Flower ``NumPyClient``;
* :mod:`~stgraph.federated.server`: strategies with per-round logs, optional Flower DP, gRPC server;
* :mod:`~stgraph.federated.simulate`: one-machine simulation (Flower's ``run_simulation``) and
  the export of the global run.

Flower is an optional dependency: ``pip install 'stgraph[federated]'``.
"""
from .config import FederatedConfig, load_federated, save_federated
from .partition import METHODS, cut_edges, partition_sensors, read_partition, write_partition

__all__ = ["FederatedConfig", "METHODS", "cut_edges", "load_federated", "partition_sensors", "read_partition",
           "save_federated", "write_partition"]
