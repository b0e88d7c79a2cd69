"""The ``'sparse'`` attention backend: memory-efficient edge-wise attention.

Runs :func:`stgraph.nn.edge_attention.edge_attention`, a custom autograd function that walks the
in-edges (CSR by target) in chunks under a memory budget with an online softmax and recomputes them
in backward. Memory grows with ``N * S * D + E' * H``, never with ``E' * S * D``. Exact; CPU and CUDA.
"""
from __future__ import annotations

import torch

from ..edge_attention import edge_attention, edge_attention_weights


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, graph, chunk_bytes: int,
           want_alpha: bool, reduce: str):
    """Chunked attention of every target over its in-edges.

    Args:
        q, k, v: ``[N, S, H, d]`` (nodes first).
        bias: ``[E', H]`` logit bias per edge and head, in ``graph.edge_index`` order.
        graph: the :class:`~stgraph.nn.kernels.graph.LoopedGraph` (its CSR and ``perm``).
        chunk_bytes: working-set budget of one chunk.
        want_alpha: also return the weights; reduce: ``'mean'`` or ``'none'``.

    Returns:
        ``(out [N, S, H, d], alpha)``: ``alpha`` ``[E', H]`` (``'mean'`` over slices) or ``[S, E', H]``, in
        ``edge_index`` order, or ``None`` without ``want_alpha``.
    """
    bias = bias.index_select(0, graph.perm)  # CSR order
    out, lse = edge_attention(q, k, v, bias, graph.csr, chunk_bytes=chunk_bytes, return_lse=True)
    alpha = None
    if want_alpha:
        a = edge_attention_weights(q.detach(), k.detach(), bias.detach(), graph.csr, lse,
                                   reduce=reduce, chunk_bytes=chunk_bytes)
        alpha = torch.empty_like(a)
        alpha[graph.perm] = a  # back to edge_index order
        if reduce == "none":
            alpha = alpha.transpose(0, 1)  # [S, E', H]
    return out, alpha
