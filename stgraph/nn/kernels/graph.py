"""The graph as the attention backends read it: self-looped, grouped by target, cached per graph.

:func:`with_self_loops` turns an ``edge_index`` / ``edge_weight`` pair into a :class:`LoopedGraph` (one self
loop per node, duplicates merged, the edges also grouped by target for the ``'sparse'`` kernel).
:class:`AttentionGraph` is the cache :class:`stgraph.nn.GraphAttention` keeps of the last graph it saw: the
looped graph plus the pieces only some backends need (the dense ``N x N`` matrices of ``'dense'``, the
block mask of ``'flex'``), built by the layer before it calls the backend; the backends only read it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from ..edge_attention import CSR, build_csr
from ..flex_graph import FlexGraph, prepare_flex
from .dense import DenseGraph, dense_graph


class LoopedGraph(NamedTuple):
    """A graph with exactly one self loop per node, as the attention uses it.

    Attributes:
        edge_index: ``[2, E']`` (source, target); the input's non-loop edges in
            input order, then the ``N`` self loops ``0..N-1``. (If the input had
            duplicate edges, they are merged, their weights averaged, and the
            non-loop edges come sorted by target.)
        edge_weight: ``[E']``; self loops get ``self_loop_weight``.
        is_loop: ``[E']`` float, 1.0 on self loops, 0.0 elsewhere.
        num_nodes: ``N``.
        csr: the same edges grouped by target (:class:`~stgraph.nn.edge_attention.CSR`).
        perm: ``[E']``, CSR edge ``p`` is edge ``perm[p]`` of ``edge_index``.
    """

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    is_loop: torch.Tensor
    num_nodes: int
    csr: CSR
    perm: torch.Tensor


def with_self_loops(edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor], num_nodes: int,
                    self_loop_weight: float = 1.0) -> LoopedGraph:
    """Drop existing self loops, merge duplicate edges, append one loop per node.

    Unlike ``torch_geometric.utils.add_self_loops`` (which this calls), the
    input's own self loops and duplicates are removed first, so every node has
    exactly one loop and every pair at most one edge.

    Args:
        edge_index: ``[2, E]`` long, source -> target.
        edge_weight: ``[E]`` float or None (all ones).
        num_nodes: ``N``.
        self_loop_weight: weight given to every self loop.

    Returns:
        :class:`LoopedGraph` with ``E' = E_nonloop + N`` edges.

    Raises:
        ValueError: ``edge_index`` not ``[2, E]``, ``edge_weight`` not ``[E]``, or node ids outside ``[0, N)``.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    if edge_weight.shape != (edge_index.size(1),):
        raise ValueError(f"edge_weight must be [E]=[{edge_index.size(1)}], "
                         f"got {tuple(edge_weight.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")
    from torch_geometric.utils import add_self_loops as pyg_add_self_loops  # here: importing PyG costs ~2 s
    from torch_geometric.utils import coalesce, remove_self_loops

    ei, ew = remove_self_loops(edge_index, edge_weight)
    key = ei[1] * num_nodes + ei[0]
    if torch.unique(key).numel() < key.numel():  # duplicates: merge (mean weight), sorted by target
        ei, ew = coalesce(ei, ew, num_nodes, reduce="mean", sort_by_row=False)
    ei, ew = pyg_add_self_loops(ei, ew, fill_value=float(self_loop_weight), num_nodes=num_nodes)
    is_loop = torch.zeros(ei.size(1), device=ei.device)
    is_loop[-num_nodes:] = 1.0
    csr, perm = build_csr(ei, num_nodes)
    return LoopedGraph(ei, ew, is_loop, num_nodes, csr, perm)


def _version(t: Optional[torch.Tensor]):
    """``t``'s in-place version counter; ``None`` for no tensor, ``-1`` for an inference tensor (made under
    ``torch.inference_mode``, e.g. a per-window graph built while forecasting), which has none."""
    return None if t is None else (-1 if t.is_inference() else t._version)


def _versions(edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor]) -> tuple:
    return _version(edge_index), _version(edge_weight)


@dataclass
class AttentionGraph:
    """One graph prepared for the attention backends (not module state: never saved).

    Attributes:
        looped: the self-looped graph every backend reads.
        edge_index, edge_weight, versions, num_nodes: what it was built from: the input tensors themselves
            (kept referenced, so identity plus their in-place version counters identify the graph safely)
            and ``N``.
        dense: the ``'dense'`` backend's matrices (:class:`~stgraph.nn.kernels.dense.DenseGraph`), once
            :meth:`for_dense` built them.
        flex: the ``'flex'`` backend's block-sparse layout (:class:`~stgraph.nn.flex_graph.FlexGraph`), once
            :meth:`for_flex` built it, on the device of its last use.
    """

    looped: LoopedGraph
    edge_index: torch.Tensor
    edge_weight: Optional[torch.Tensor]
    versions: tuple
    num_nodes: int
    dense: Optional[DenseGraph] = None
    flex: Optional[FlexGraph] = None

    @classmethod
    def build(cls, edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor], num_nodes: int,
              self_loop_weight: float = 1.0) -> "AttentionGraph":
        """The looped graph of ``edge_index`` ``[2, E]`` / ``edge_weight`` ``[E]`` on ``num_nodes`` nodes."""
        versions = _versions(edge_index, edge_weight)
        looped = with_self_loops(edge_index, edge_weight, num_nodes, self_loop_weight)
        return cls(looped, edge_index, edge_weight, versions, num_nodes)

    def matches(self, edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor], num_nodes: int) -> bool:
        """Whether this is the graph of these very tensors, unchanged in place, on ``num_nodes`` nodes."""
        return (self.edge_index is edge_index and self.edge_weight is edge_weight
                and self.versions == _versions(edge_index, edge_weight) and self.num_nodes == num_nodes)

    @property
    def cacheable(self) -> bool:
        """A weight that requires grad (a learned adjacency) is never cached, nor a graph of inference tensors
        (no version counter tells an in-place change)."""
        if -1 in self.versions:
            return False
        return self.edge_weight is None or not self.edge_weight.requires_grad

    def for_dense(self) -> DenseGraph:
        """The ``'dense'`` backend's matrices, built on first use."""
        if self.dense is None:
            self.dense = dense_graph(self.looped)
        return self.dense

    def for_flex(self, device: torch.device, reorder: bool) -> FlexGraph:
        """The ``'flex'`` backend's layout on ``device``, built on first use there."""
        if self.flex is None or self.flex.order.device != device:
            lg = self.looped
            self.flex = prepare_flex(lg.edge_index.to(device), lg.edge_weight.to(device), lg.num_nodes, reorder)
        return self.flex
