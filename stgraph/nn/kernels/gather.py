"""The ``'gather'`` attention backend: the plain edge-wise formulation.

Gather ``q`` / ``k`` / ``v`` for every edge and slice, segment softmax over each target's in-edges
(PyG's ``softmax``), scatter the messages back. The same function as ``'sparse'`` with memory
``~ 6 * E' * S * D``: kept as the reference, and the only backend that draws attention dropout.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, graph, p: float,
           want_alpha: bool, reduce: str):
    """Edge-wise attention of every target over its in-edges.

    Args:
        q, k, v: ``[N, S, H, d]`` (nodes first).
        bias: ``[E', H]`` logit bias per edge and head, in ``graph.edge_index`` order.
        graph: the :class:`~stgraph.nn.kernels.graph.LoopedGraph`.
        p: attention dropout; want_alpha: also return the weights; reduce: ``'mean'`` or ``'none'``.

    Returns:
        ``(out [N, S, H, d], alpha)``: ``alpha`` ``[E', H]`` (``'mean'`` over slices) or ``[S, E', H]``, in
        ``edge_index`` order, or ``None`` without ``want_alpha``.
    """
    src, dst = graph.edge_index
    q_e = q.index_select(0, dst)  # [E', S, H, d]
    k_e = k.index_select(0, src)
    v_e = v.index_select(0, src)
    logits = (q_e * k_e).sum(-1) * (1.0 / math.sqrt(q.size(-1)))  # [E', S, H]
    logits = logits + bias.to(logits.dtype)[:, None, :]
    from torch_geometric.utils import softmax as pyg_softmax  # here: importing PyG costs ~2 s

    alpha = pyg_softmax(logits, dst, num_nodes=q.size(0), dim=0)
    msg = v_e * F.dropout(alpha, p=p, training=p > 0).unsqueeze(-1)
    out = torch.zeros_like(q).index_add_(0, dst, msg)
    if want_alpha:
        alpha = alpha.mean(1) if reduce == "mean" else alpha.transpose(0, 1)
    return out, (alpha if want_alpha else None)
