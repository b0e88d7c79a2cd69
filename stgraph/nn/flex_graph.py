"""Graph attention on PyTorch's FlexAttention: a block-sparse mask built once per graph.

FlexAttention (``torch.nn.attention.flex_attention``) runs attention with a
user ``score_mod`` (here: the learned edge bias) and ``mask_mod`` (here: "is
there an edge ``kv -> q``") through fused Triton kernels on CUDA, forward and
backward, and skips every ``BLOCK x BLOCK`` tile of the score matrix that the
``BlockMask`` marks empty. A road graph is sparse but its sensor numbering is
arbitrary, so the sensors are first renumbered by reverse Cuthill-McKee
(networkx), which gathers the edges near the diagonal: few tiles are then
non-empty, and the edge weights fit in a band ``[N, 2 * bandwidth + 1]``
instead of an ``[N, N]`` matrix. Outputs are put back in the input order.

Nothing here is ``N x N``: the band, the tile lists and the permutation grow
with ``N * bandwidth`` and ``E``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import torch

try:  # torch >= 2.5
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
    HAVE_FLEX = True
except ImportError:  # pragma: no cover - older torch
    BlockMask, flex_attention, HAVE_FLEX = None, None, False

#: Tile size of the block mask (FlexAttention's default on CUDA).
BLOCK = 128


@functools.cache
def _compiled_flex():
    """FlexAttention compiled into fused Triton kernels, once per process."""
    return torch.compile(flex_attention, dynamic=False)


def _flex(device_type: str):
    """FlexAttention as it should run on ``device_type``: compiled into fused Triton kernels on
    CUDA (uncompiled it is a reference implementation that builds every score), eager elsewhere."""
    return _compiled_flex() if device_type == "cuda" else flex_attention


class FlexGraph(NamedTuple):
    """A graph prepared for FlexAttention.

    Attributes:
        order: ``[N]`` long, ``order[p]`` is the input node placed at position ``p``.
        rank: ``[N]`` long, the inverse: position of input node ``i``.
        band_weight: ``[N, 2 * bw + 1]`` edge weight of ``kv -> q`` at
            ``[q, kv - q + bw]`` (positions in the new order).
        band_edge: ``[N, 2 * bw + 1]`` bool, whether that edge exists.
        bandwidth: ``bw``.
        block_mask: the ``BlockMask`` (None until built for a device).
        num_nodes: ``N``.
    """

    order: torch.Tensor
    rank: torch.Tensor
    band_weight: torch.Tensor
    band_edge: torch.Tensor
    bandwidth: int
    block_mask: Optional[object]
    num_nodes: int


def locality_order(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Reverse Cuthill-McKee order of the (undirected) graph.

    Args:
        edge_index: ``[2, E]``; ``num_nodes``: ``N``.

    Returns:
        ``order`` ``[N]`` long: ``order[p]`` is the node placed at position ``p``.
    """
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(num_nodes))
    g.add_edges_from(edge_index.t().tolist())
    return torch.tensor(list(nx.utils.reverse_cuthill_mckee_ordering(g)), dtype=torch.long)


def prepare_flex(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int,
                 reorder: bool = True) -> FlexGraph:
    """Renumber, band and tile a graph for :func:`flex_graph_attention`.

    Args:
        edge_index: ``[2, E]`` long (source -> target), self loops included,
            no duplicate edges.
        edge_weight: ``[E]``.
        num_nodes: ``N``.
        reorder: renumber by reverse Cuthill-McKee (else keep the input order).

    Returns:
        :class:`FlexGraph` on ``edge_index``'s device.
    """
    device = edge_index.device
    N = num_nodes
    order = (locality_order(edge_index.cpu(), N) if reorder
             else torch.arange(N)).to(device)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(N, device=device)
    src, dst = rank[edge_index[0]], rank[edge_index[1]]
    off = src - dst
    bw = int(off.abs().max()) if off.numel() else 0
    band_weight = torch.zeros(N, 2 * bw + 1, device=device, dtype=edge_weight.dtype)
    band_edge = torch.zeros(N, 2 * bw + 1, device=device, dtype=torch.bool)
    band_weight[dst, off + bw] = edge_weight
    band_edge[dst, off + bw] = True
    block_mask = _block_mask(src, dst, N, band_edge, bw) if HAVE_FLEX else None
    return FlexGraph(order, rank, band_weight, band_edge, bw, block_mask, N)


def _band_lookup(band: torch.Tensor, bw: int, q_idx, kv_idx):
    off = kv_idx - q_idx + bw
    inside = (off >= 0) & (off <= 2 * bw)
    return band[q_idx, off.clamp(0, 2 * bw)], inside


def _block_mask(src: torch.Tensor, dst: torch.Tensor, N: int, band_edge: torch.Tensor, bw: int):
    """``BlockMask`` whose non-empty tiles are those holding an edge (built from
    the edge list: O(E), never the ``N x N`` grid)."""
    nb = (N + BLOCK - 1) // BLOCK
    tiles = torch.unique(dst // BLOCK * nb + src // BLOCK)
    qb, kb = tiles // nb, tiles % nb
    counts = torch.bincount(qb, minlength=nb).to(torch.int32)
    # [q_blocks, kv_blocks]: each row lists its non-empty kv tiles first (BlockMask's layout; it
    # inverts this table for the backward, so the last dimension must cover every kv block)
    indices = torch.zeros(nb, nb, dtype=torch.int32, device=src.device)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(tiles.numel(), device=src.device) - start[qb].long()
    indices[qb, slot] = kb.to(torch.int32)

    def mask_mod(b, h, q_idx, kv_idx):
        edge, inside = _band_lookup(band_edge, bw, q_idx, kv_idx)
        return edge & inside

    return BlockMask.from_kv_blocks(counts[None, None], indices[None, None], BLOCK_SIZE=BLOCK,
                                    mask_mod=mask_mod, seq_lengths=(N, N))


def flex_graph_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fg: FlexGraph,
                         edge_scale: torch.Tensor, loop_bias: torch.Tensor) -> torch.Tensor:
    r"""Graph attention with bias ``edge_scale[h] * w_{ji} + loop_bias[h] * [i = j]``.

    Args:
        q, k, v: ``[S, H, N, d]`` in the INPUT node order.
        fg: from :func:`prepare_flex`.
        edge_scale, loop_bias: ``[H]``.

    Returns:
        ``[S, H, N, d]`` in the input node order.
    """
    if not HAVE_FLEX:
        raise RuntimeError("FlexAttention needs torch >= 2.5 (torch.nn.attention.flex_attention)")
    order, bw = fg.order, fg.bandwidth
    q, k, v = (t.index_select(2, order) for t in (q, k, v))
    band_weight = fg.band_weight.to(q.dtype)

    def score_mod(score, b, h, q_idx, kv_idx):
        w, inside = _band_lookup(band_weight, bw, q_idx, kv_idx)
        loop = (q_idx == kv_idx).to(score.dtype)
        return score + edge_scale[h] * torch.where(inside, w, 0.0) + loop_bias[h] * loop

    out = _flex(q.device.type)(q, k, v, score_mod=score_mod, block_mask=fg.block_mask)
    return out.index_select(2, fg.rank)
