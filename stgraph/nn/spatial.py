"""Graph attention across sensors, run for every (batch, time step) slice at once.

Each sensor attends over its IN-neighbours in ``edge_index`` (``source ->
target``: messages flow from ``edge_index[0]`` to ``edge_index[1]``) and over
itself (self loops are added). A learned per-head bias from the edge weight is
added to the attention logits, so closer sensors can be favoured before the
content of the series says anything.

Two backends compute the same function:

* ``'sparse'``: edge-wise. Queries of the targets and keys/values of the
  sources are gathered for every edge, logits ``[E, S, H]`` (``S = B*T``
  slices) go through a segment softmax over each target's in-edges, and the
  weighted messages are summed into the targets with ``index_add_``. Memory
  grows with ``E * S * D``, never with ``N * N``.
* ``'dense'``: :func:`torch.nn.functional.scaled_dot_product_attention` over all
  ``N`` sensors with an additive float mask ``[H, N, N]`` that holds the bias
  on edges and ``-inf`` elsewhere (self loops leave no row fully masked). The
  graph part of the mask is built once per graph and cached. Fastest for
  small ``N``.

``'auto'`` picks sparse when ``N > dense_max_nodes``. Otherwise it picks dense
on CUDA (SDPA's memory-efficient kernel handles the mask and its gradient),
while on CPU it compares the memory traffic of the two: dense touches
``H * N^2`` scores per slice, sparse ``E' * D`` gathered features, and measured
on CPU they break even near ``H * N^2 == E' * D`` (METR-LA: N=207, E'~1720,
D=64, H=4 gives 1.55, so sparse; 100 sensors with 9 in-edges each give 0.7,
so dense).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .init import xavier_linear
from .temporal import FeedForward

BACKENDS = ("auto", "sparse", "dense")


class LoopedGraph(NamedTuple):
    """A graph with exactly one self loop per node, as the attention uses it.

    Attributes:
        edge_index: ``[2, E']`` (source, target); the first edges are the
            input's non-loop edges in input order, the last ``N`` are the
            self loops ``0..N-1``. (If the input had duplicate edges, they are
            merged, their weights averaged, and the order becomes sorted.)
        edge_weight: ``[E']``; self loops get ``self_loop_weight``.
        is_loop: ``[E']`` float, 1.0 on self loops, 0.0 elsewhere.
        num_nodes: ``N``.
    """

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    is_loop: torch.Tensor
    num_nodes: int


def add_self_loops(edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor], num_nodes: int,
                   self_loop_weight: float = 1.0) -> LoopedGraph:
    """Drop existing self loops, merge duplicate edges, append one loop per node.

    Args:
        edge_index: ``[2, E]`` long, source -> target.
        edge_weight: ``[E]`` float or None (all ones).
        num_nodes: ``N``.
        self_loop_weight: weight given to every self loop.

    Returns:
        :class:`LoopedGraph` with ``E' = E_nonloop + N`` edges.
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must be [2, E], got shape {tuple(edge_index.shape)}")
    device = edge_index.device
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=device)
    if edge_weight.shape != (edge_index.size(1),):
        raise ValueError(f"edge_weight must be [E]=[{edge_index.size(1)}], "
                         f"got {tuple(edge_weight.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(f"edge_index holds node ids outside [0, {num_nodes})")
    keep = edge_index[0] != edge_index[1]
    ei, ew = edge_index[:, keep], edge_weight[keep]
    key = ei[1] * num_nodes + ei[0]
    uniq, inverse = torch.unique(key, return_inverse=True)
    if uniq.numel() < key.numel():  # duplicates: merge (mean weight) so both backends agree
        count = torch.zeros(uniq.numel(), device=device).index_add_(0, inverse, torch.ones_like(ew))
        total = torch.zeros(uniq.numel(), device=device, dtype=ew.dtype).index_add_(0, inverse, ew)
        ew = total / count
        ei = torch.stack([uniq % num_nodes, uniq // num_nodes])
    loops = torch.arange(num_nodes, device=device)
    ei = torch.cat([ei, torch.stack([loops, loops])], dim=1)
    ew = torch.cat([ew, torch.full((num_nodes,), self_loop_weight, device=device, dtype=ew.dtype)])
    is_loop = torch.cat([torch.zeros(ei.size(1) - num_nodes, device=device),
                         torch.ones(num_nodes, device=device)])
    return LoopedGraph(ei, ew, is_loop, num_nodes)


def segment_softmax(logits: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax over the entries of dim 0 that share the same ``index``.

    Args:
        logits: ``[E, *]``.
        index: ``[E]`` long in ``[0, num_segments)``; every used segment must
            be non-empty (true for targets when self loops are present).
        num_segments: number of segments (nodes).

    Returns:
        ``[E, *]``; for every segment and trailing position the entries sum to 1.
    """
    rest = logits.shape[1:]
    idx = index.view(-1, *([1] * len(rest))).expand_as(logits)
    m = logits.new_full((num_segments, *rest), float("-inf"))
    m = m.scatter_reduce(0, idx, logits.detach(), reduce="amax", include_self=True)
    e = (logits - m.index_select(0, index)).exp()
    denom = logits.new_zeros((num_segments, *rest)).index_add_(0, index, e)
    return e / denom.index_select(0, index)


class SpatialGraphAttention(nn.Module):
    r"""Pre-norm multi-head graph attention over in-neighbours (plus self), then
    a pre-norm feed-forward, both with residuals:

    .. math::
        \alpha^h_{ij} &= \mathrm{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}
            \Big(\frac{\langle q^h_i, k^h_j\rangle}{\sqrt{d}} + a_h w_{ji} + c_h [i=j]\Big) \\
        x_i &\leftarrow x_i + \mathrm{Drop}\Big(W_o \big\Vert_h \sum_j \alpha^h_{ij} v^h_j\Big) \\
        x &\leftarrow x + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}(x)))

    with :math:`q, k, v` projections of :math:`\mathrm{LN}(x)`, and :math:`w_{ji}`
    the weight of edge :math:`j \to i`. A per-head constant on all edges would
    cancel in the softmax, so the second learned term is a self-loop bias
    :math:`c_h`. All ``B * T`` slices are processed in one batched operation.

    Args:
        dim: feature size ``D`` (divisible by ``heads``).
        heads: number of attention heads ``H``.
        dropout: dropout on the attention and feed-forward outputs.
        ff_mult: feed-forward hidden size is ``ff_mult * D``.
        backend: ``'auto'``, ``'sparse'`` or ``'dense'`` (same function).
        dense_max_nodes: ``'auto'`` never uses dense above this many nodes
            (see the module doc for the rest of the rule).
        self_loop_weight: edge weight given to the added self loops.
        attn_dropout: dropout on the attention weights (default 0; the two
            backends then draw different masks, so only eval outputs match).

    Shapes:
        - input: ``x`` ``[B, T, N, D]``, ``edge_index`` ``[2, E]``,
          ``edge_weight`` ``[E]`` (optional, default ones)
        - output: ``[B, T, N, D]``; with ``return_attention=True`` the tuple
          ``(out, (edge_index_looped [2, E'], alpha))`` where ``alpha`` is
          ``[E', H]`` (averaged over the ``B*T`` slices) when
          ``attention_reduce='mean'`` or ``[B, T, E', H]`` when ``'none'``. For
          each target node and head the weights of its in-edges sum to 1.
          ``E' = E + N`` for a graph without self loops or duplicates.
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0, ff_mult: int = 4,
                 backend: str = "auto", dense_max_nodes: int = 1024, self_loop_weight: float = 1.0,
                 attn_dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.dim, self.heads, self.attn_dropout = dim, heads, attn_dropout
        self.backend = backend
        self.dense_max_nodes = dense_max_nodes
        self.self_loop_weight = self_loop_weight
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.edge_scale = nn.Parameter(torch.empty(heads))  # a_h: bias per unit of edge weight
        self.loop_bias = nn.Parameter(torch.empty(heads))  # c_h: extra bias of the self loop
        self.dropout = nn.Dropout(dropout)
        self.ffn = FeedForward(dim, ff_mult, dropout)
        self.last_backend: Optional[str] = None  # the backend the last forward used
        self._cache = None  # (edge_index, edge_weight, versions, N) -> prepared graph; not state
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        xavier_linear(self.qkv, self.proj)
        nn.init.ones_(self.edge_scale)
        nn.init.zeros_(self.loop_bias)
        self.ffn.reset_parameters()

    def resolve_backend(self, num_nodes: int, num_edges: int, device=None) -> str:
        """The backend a forward will use on a graph of ``num_nodes`` nodes and
        ``num_edges`` edges (counting the self loops), on ``device``."""
        if self.backend != "auto":
            return self.backend
        if num_nodes > self.dense_max_nodes:
            return "sparse"
        if torch.device(device or "cpu").type == "cuda":
            return "dense"
        return "dense" if self.heads * num_nodes ** 2 <= num_edges * self.dim else "sparse"

    # ------------------------------------------------------------ graph prep
    def _prepare(self, edge_index, edge_weight, num_nodes, dense: bool) -> dict:
        """Self-looped graph (and, for dense, its [N, N] pieces), cached per graph.

        The cache keeps references to the graph tensors, so identity plus the
        tensors' in-place version counters identify the graph safely. A weight
        that requires grad (a learned adjacency) is never cached.
        """
        versions = (edge_index._version, None if edge_weight is None else edge_weight._version)
        c = self._cache
        if (c is not None and c[0] is edge_index and c[1] is edge_weight
                and c[2] == versions and c[3] == num_nodes):
            g = c[4]
        else:
            g = {"graph": add_self_loops(edge_index, edge_weight, num_nodes, self.self_loop_weight)}
            if edge_weight is None or not edge_weight.requires_grad:
                self._cache = (edge_index, edge_weight, versions, num_nodes, g)
        if dense and "adj_neg" not in g:
            lg = g["graph"]
            src, dst = lg.edge_index
            N = num_nodes
            w = lg.edge_weight.new_zeros(N, N)
            w[dst, src] = lg.edge_weight  # row = target (query), column = source (key)
            adj_neg = lg.edge_weight.new_full((N, N), float("-inf"))
            adj_neg[dst, src] = 0.0
            eye = torch.eye(N, device=w.device, dtype=w.dtype)
            g["weight_dense"], g["adj_neg"], g["eye"] = w, adj_neg, eye
        return g

    def edge_bias(self, graph: LoopedGraph) -> torch.Tensor:
        """Per-edge, per-head logit bias ``[E', H]``."""
        w, loop = graph.edge_weight[:, None], graph.is_loop[:, None]
        return w * self.edge_scale + loop * self.loop_bias

    def dense_mask(self, g: dict) -> torch.Tensor:
        """Additive float mask ``[H, N, N]``: bias on edges, ``-inf`` elsewhere."""
        return (g["adj_neg"] + self.edge_scale[:, None, None] * g["weight_dense"]
                + self.loop_bias[:, None, None] * g["eye"])

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: Optional[torch.Tensor] = None, return_attention: bool = False,
                attention_reduce: str = "mean"):
        B, T, N, D = x.shape
        g = self._prepare(edge_index, edge_weight, N, dense=False)
        backend = self.resolve_backend(N, g["graph"].edge_index.size(1), x.device)
        self.last_backend = backend
        if backend == "dense":
            g = self._prepare(edge_index, edge_weight, N, dense=True)
        p = self.attn_dropout if self.training else 0.0
        h = self.norm(x)
        if backend == "dense":
            out, alpha = self._dense(h, g, p, return_attention)
        else:
            out, alpha = self._sparse(h, g, p, return_attention)
        x = x + self.dropout(self.proj(out))
        x = self.ffn(x)
        if not return_attention:
            return x
        if attention_reduce == "mean":
            alpha = alpha.mean(dim=0)
        elif attention_reduce == "none":
            alpha = alpha.view(B, T, *alpha.shape[1:])
        else:
            raise ValueError(f"attention_reduce must be 'mean' or 'none', got {attention_reduce!r}")
        return x, (g["graph"].edge_index, alpha)

    def _dense(self, h, g, p, return_attention):
        """``h`` ``[B, T, N, D]`` -> (``[B, T, N, D]``, alpha ``[S, E', H]`` or None)."""
        B, T, N, D = h.shape
        H, d = self.heads, D // self.heads
        q, k, v = self.qkv(h).view(B * T, N, 3, H, d).permute(2, 0, 3, 1, 4)  # 3 x [S, H, N, d]
        mask = self.dense_mask(g).to(q.dtype)  # [H, N, N]
        if not (return_attention or (mask.requires_grad and q.device.type == "cpu")):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            return out.transpose(1, 2).reshape(B, T, N, D), None
        # Explicit path: asked-for weights, or CPU training, where SDPA's fused kernel
        # cannot give the mask its gradient and its fallback does extra masked-row passes.
        logits = (q * (1.0 / math.sqrt(d))) @ k.transpose(-2, -1)  # [S, H, N, N]
        w = logits.add_(mask).softmax(dim=-1)
        out = F.dropout(w, p=p, training=p > 0) @ v
        alpha = None
        if return_attention:
            src, dst = g["graph"].edge_index
            alpha = w[:, :, dst, src].transpose(1, 2)  # [S, E', H]
        return out.transpose(1, 2).reshape(B, T, N, D), alpha

    def _sparse(self, h, g, p, return_attention):
        """``h`` ``[B, T, N, D]`` -> (``[B, T, N, D]``, alpha ``[S, E', H]`` or None).

        Works node-first (``[N, S, ...]``) so gathers and scatters move whole
        contiguous rows of ``S * D`` numbers per edge.
        """
        B, T, N, D = h.shape
        S, H, d = B * T, self.heads, D // self.heads
        lg = g["graph"]
        src, dst = lg.edge_index
        hn = h.permute(2, 0, 1, 3).reshape(N, S, D)
        w, b = self.qkv.weight, self.qkv.bias
        # q, k, v as separate contiguous [N, S, D] tensors: gathers then copy whole rows
        q = F.linear(hn, w[:D], b[:D]) * (1.0 / math.sqrt(d))
        k = F.linear(hn, w[D:2 * D], b[D:2 * D])
        v = F.linear(hn, w[2 * D:], b[2 * D:])
        q_e = q.index_select(0, dst).view(-1, S, H, d)  # [E', S, H, d]
        k_e = k.index_select(0, src).view(-1, S, H, d)
        v_e = v.index_select(0, src).view(-1, S, H, d)
        logits = (q_e * k_e).sum(-1)  # [E', S, H]
        logits = logits + self.edge_bias(lg).to(logits.dtype)[:, None, :]
        alpha = segment_softmax(logits, dst, N)  # [E', S, H]
        msg = v_e * F.dropout(alpha, p=p, training=p > 0).unsqueeze(-1)
        out = torch.zeros(N, S, H, d, dtype=msg.dtype, device=msg.device).index_add_(0, dst, msg)
        out = out.view(N, B, T, D).permute(1, 2, 0, 3)
        return out, (alpha.transpose(0, 1) if return_attention else None)
