"""The ``'dense'`` attention backend: SDPA over all ``N`` sensors with an additive ``[H, N, N]`` mask.

The mask holds the learned edge bias on the graph's edges and ``-inf`` elsewhere, so the softmax of
every target runs over its in-neighbours (and itself) only. Memory ``S * H * N^2`` on CPU training;
:func:`torch.nn.functional.scaled_dot_product_attention`'s fused kernels on CUDA.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DenseGraph:
    """The looped graph as ``[N, N]`` matrices (row = target / query, column = source / key).

    Attributes:
        weight: edge weights, 0 off the edges.
        adj_neg: 0 on the edges, ``-inf`` elsewhere.
        eye: the identity (the self loops).
    """

    weight: torch.Tensor
    adj_neg: torch.Tensor
    eye: torch.Tensor


def dense_graph(graph) -> DenseGraph:
    """The :class:`DenseGraph` of a :class:`~stgraph.nn.kernels.graph.LoopedGraph`."""
    src, dst = graph.edge_index
    N = graph.num_nodes
    w = graph.edge_weight.new_zeros(N, N)
    w[dst, src] = graph.edge_weight  # row = target (query), column = source (key)
    adj_neg = graph.edge_weight.new_full((N, N), float("-inf"))
    adj_neg[dst, src] = 0.0
    return DenseGraph(w, adj_neg, torch.eye(N, device=w.device, dtype=w.dtype))


def dense_mask(dense: DenseGraph, edge_scale: torch.Tensor, loop_bias: torch.Tensor) -> torch.Tensor:
    """Additive float mask ``[H, N, N]``: ``edge_scale[h] * w + loop_bias[h] * I`` on edges, ``-inf`` elsewhere."""
    return (dense.adj_neg + edge_scale[:, None, None] * dense.weight
            + loop_bias[:, None, None] * dense.eye)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, edge_index: torch.Tensor,
           p: float, want_alpha: bool, reduce: str):
    """Masked attention of every sensor over all sensors.

    Args:
        q, k, v: ``[S, H, N, d]`` (slices first).
        mask: ``[H, N, N]`` from :func:`dense_mask`, in ``q``'s dtype.
        edge_index: ``[2, E']`` of the looped graph (to read the weights of its edges out).
        p: attention dropout; want_alpha: also return the weights; reduce: ``'mean'`` or ``'none'``.

    Returns:
        ``(out [S, H, N, d], alpha)``: ``alpha`` ``[E', H]`` (``'mean'`` over slices) or ``[S, E', H]``, in
        ``edge_index`` order, or ``None`` without ``want_alpha``.
    """
    if not (want_alpha or (mask.requires_grad and q.device.type == "cpu")):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p), None
    # Explicit path: asked-for weights, or CPU training, where SDPA's fused kernel
    # cannot give the mask its gradient and its fallback does extra masked-row passes.
    logits = (q * (1.0 / math.sqrt(q.size(-1)))) @ k.transpose(-2, -1)  # [S, H, N, N]
    w = logits.add_(mask).softmax(dim=-1)
    out = F.dropout(w, p=p, training=p > 0) @ v
    alpha = None
    if want_alpha:
        src, dst = edge_index
        alpha = w[:, :, dst, src].transpose(1, 2)  # [S, E', H]
        if reduce == "mean":
            alpha = alpha.mean(0)
    return out, alpha
