"""The attention backends of :class:`stgraph.nn.GraphAttention`, one kernel module each.

All four compute the same function of the same parameters (``S = B * T`` slices, ``E'`` edges with
the self loops); the layer computes ``q``, ``k``, ``v`` and the edge bias, builds the
:class:`~stgraph.nn.kernels.graph.AttentionGraph` a backend reads, and projects its output:

* ``'sparse'`` (:mod:`.sparse`, over :mod:`stgraph.nn.edge_attention`): chunked edge-wise attention with
  an online softmax, memory ``N * S * D + E' * H``; ``q``, ``k``, ``v`` nodes first ``[N, S, H, d]``.
* ``'gather'`` (:mod:`.gather`): the plain edge-wise formulation, memory ``~ 6 * E' * S * D``; the
  reference and the only one that draws attention dropout; nodes first.
* ``'dense'`` (:mod:`.dense`): SDPA with an additive ``[H, N, N]`` mask; slices first ``[S, H, N, d]``.
* ``'flex'`` (:mod:`stgraph.nn.flex_graph`): FlexAttention with a block mask after a reverse
  Cuthill-McKee renumbering; slices first; on CPU inference only.
"""
from .graph import AttentionGraph, LoopedGraph, with_self_loops

#: the backends whose kernels take ``q``, ``k``, ``v`` nodes first, ``[N, S, H, d]``
NODES_FIRST = ("sparse", "gather")

__all__ = ["AttentionGraph", "LoopedGraph", "NODES_FIRST", "with_self_loops"]
