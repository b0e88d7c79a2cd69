"""Graph attention across sensors, run for every (batch, time step) slice at once.

Each sensor attends over its IN-neighbours in ``edge_index`` (``source ->
target``: messages flow from ``edge_index[0]`` to ``edge_index[1]``) and over
itself (self loops are added). A learned per-head bias from the edge weight is
added to the attention logits, so closer sensors can be favoured before the
content of the series says anything.

:class:`GraphAttention` only attends (like PyG's ``TransformerConv``);
:class:`SpatialGraphAttention` is the block that adds the pre-norm, residual and
feed-forward. Four backends compute the same function (``S = B * T`` slices):

* ``'sparse'``: memory-efficient edge-wise attention
  (:func:`stgraph.nn.edge_attention.edge_attention`): a custom autograd
  function that walks the in-edges (CSR by target) in chunks under a memory
  budget with an online softmax, and recomputes them in backward. Memory grows
  with ``N * S * D + E * H``, never with ``E * S * D``. Exact; CPU and CUDA.
* ``'gather'``: the plain edge-wise formulation (gather ``q``/``k``/``v`` for
  every edge and slice, segment softmax, scatter). Same function, memory
  ``~ 6 * E * S * D``; kept as the reference and for attention dropout.
* ``'dense'``: :func:`torch.nn.functional.scaled_dot_product_attention` over all
  ``N`` sensors with an additive ``[H, N, N]`` mask (bias on edges, ``-inf``
  elsewhere). Memory ``S * H * N^2`` on CPU training; fused kernels on CUDA.
* ``'flex'``: FlexAttention with a ``BlockMask`` built once per graph after a
  reverse Cuthill-McKee renumbering (:mod:`stgraph.nn.flex_graph`); fused
  Triton kernels forward and backward on CUDA. On CPU torch has no backward for
  it, so it serves inference only.

``'auto'`` picks, from the device, whether gradients are needed and the graph,
the rule measured by ``benchmarks/bench_attention.py``
(``benchmarks/results/attention_scaling.md``): see :func:`choose_backend`.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .edge_attention import CSR, DEFAULT_CHUNK_BYTES, build_csr, edge_attention, edge_attention_weights
from .flex_graph import HAVE_FLEX, flex_graph_attention, prepare_flex
from .init import xavier_linear
from .lean import Dropout
from .temporal import FeedForward

BACKENDS = ("auto", "sparse", "gather", "dense", "flex")


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


def choose_backend(num_nodes: int, num_edges: int, heads: int, dim: int, device=None,
                   needs_grad: bool = True, dense_max_nodes: int = 1024) -> str:
    """The backend ``'auto'`` runs, from measurements (``benchmarks/bench_attention.py``).

    * CUDA: ``'dense'`` (SDPA's fused kernels) up to ``dense_max_nodes``
      sensors, ``'flex'`` above (block-sparse fused kernels) when FlexAttention
      is available, else ``'sparse'``.
    * CPU: ``'sparse'`` (memory-efficient edge-wise), unless the dense scores
      of one slice (``H * N^2``) are fewer than the edge rows
      (``E' * D / 4``): then ``'dense'`` (tiny, well-connected graphs). On CPU
      FlexAttention runs only unfused without backward and was slower than
      ``'sparse'`` in inference too, so ``'auto'`` never picks it there.

    Args:
        num_nodes: ``N``; num_edges: ``E'`` (self loops included); heads: ``H``;
        dim: ``D``; device: where the forward runs; needs_grad: training.
    """
    if torch.device(device or "cpu").type == "cuda":
        if num_nodes <= dense_max_nodes:
            return "dense"
        return "flex" if HAVE_FLEX else "sparse"
    if num_nodes <= dense_max_nodes and heads * num_nodes ** 2 * 4 <= num_edges * dim:
        return "dense"
    return "sparse"


_warned_flex_cpu = False


def _warn_flex_cpu() -> None:
    global _warned_flex_cpu
    _warned_flex_cpu = True
    warnings.warn("backend 'flex': torch has no FlexAttention backward on CPU, so training on CPU "
                  "runs the 'sparse' backend (the same function); 'flex' serves CPU inference "
                  "under torch.no_grad()", stacklevel=3)


class GraphAttention(nn.Module):
    r"""Multi-head attention of every sensor over its in-neighbours and itself:

    .. math::
        \alpha^h_{ij} &= \mathrm{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}
            \Big(\frac{\langle q^h_i, k^h_j\rangle}{\sqrt{d}} + a_h w_{ji} + c_h [i=j]\Big) \\
        y_i &= W_o \big\Vert_h \sum_j \alpha^h_{ij} v^h_j

    with :math:`q, k, v` linear projections of :math:`x` and :math:`w_{ji}` the
    weight of edge :math:`j \to i`. A per-head constant on all edges would
    cancel in the softmax, so the second learned term is a self-loop bias
    :math:`c_h`. All ``B * T`` slices are processed in one batched operation.

    Args:
        dim: feature size ``D`` (divisible by ``heads``).
        heads: number of attention heads ``H``.
        backend: one of :data:`BACKENDS` (same function; see the module doc).
        dense_max_nodes: ``'auto'`` never uses dense above this many nodes.
        self_loop_weight: edge weight given to the added self loops.
        attn_dropout: dropout on the attention weights (default 0; in training
            it runs on the ``'gather'`` path, the only one that draws it).
        chunk_bytes: working-set budget of one chunk of the ``'sparse'`` path.
        reorder: renumber sensors by reverse Cuthill-McKee for ``'flex'``.

    Shapes:
        - input: ``x`` ``[B, T, N, D]``, ``edge_index`` ``[2, E]``,
          ``edge_weight`` ``[E]`` (optional, default ones)
        - output: ``[B, T, N, D]``; with ``return_attention_weights=True`` the
          tuple ``(out, (edge_index_looped [2, E'], alpha))`` where ``alpha`` is
          ``[E', H]`` (averaged over the ``B*T`` slices) when
          ``attention_reduce='mean'`` or ``[B, T, E', H]`` when ``'none'``. For
          each target node and head the weights of its in-edges sum to 1.
          ``E' = E + N`` for a graph without self loops or duplicates.
    """

    def __init__(self, dim: int, heads: int = 4, backend: str = "auto", dense_max_nodes: int = 1024,
                 self_loop_weight: float = 1.0, attn_dropout: float = 0.0,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, reorder: bool = True):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.dim, self.heads, self.attn_dropout = dim, heads, attn_dropout
        self.backend, self.dense_max_nodes = backend, dense_max_nodes
        self.self_loop_weight, self.chunk_bytes, self.reorder = self_loop_weight, chunk_bytes, reorder
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.edge_scale = nn.Parameter(torch.empty(heads))  # a_h: bias per unit of edge weight
        self.loop_bias = nn.Parameter(torch.empty(heads))  # c_h: extra bias of the self loop
        self.last_backend: Optional[str] = None  # the backend the last forward used
        self._cache = None  # (edge_index, edge_weight, versions, N) -> prepared graph; not state
        self.reset_parameters()

    def reset_parameters(self) -> None:
        xavier_linear(self.qkv, self.proj)
        nn.init.ones_(self.edge_scale)
        nn.init.zeros_(self.loop_bias)

    def resolve_backend(self, num_nodes: int, num_edges: int, device=None,
                        needs_grad: bool = True) -> str:
        """The backend a forward uses on ``num_nodes`` nodes and ``num_edges``
        edges (self loops counted), on ``device``, with or without gradients."""
        if self.backend != "auto":
            return self.backend
        return choose_backend(num_nodes, num_edges, self.heads, self.dim, device, needs_grad,
                              self.dense_max_nodes)

    # ------------------------------------------------------------ graph prep
    def prepare(self, edge_index, edge_weight, num_nodes) -> dict:
        """The self-looped graph, cached per graph; the dense and flex pieces are
        added by the backends that use them.

        The cache keeps references to the graph tensors, so identity plus the
        tensors' in-place version counters identify the graph safely. A weight
        that requires grad (a learned adjacency) is never cached.
        """
        versions = (edge_index._version, None if edge_weight is None else edge_weight._version)
        c = self._cache
        if (c is not None and c[0] is edge_index and c[1] is edge_weight
                and c[2] == versions and c[3] == num_nodes):
            return c[4]
        g = {"graph": with_self_loops(edge_index, edge_weight, num_nodes, self.self_loop_weight)}
        if edge_weight is None or not edge_weight.requires_grad:
            self._cache = (edge_index, edge_weight, versions, num_nodes, g)
        return g

    def edge_bias(self, graph: LoopedGraph) -> torch.Tensor:
        """Per-edge, per-head logit bias ``[E', H]`` (in ``graph.edge_index`` order)."""
        w, loop = graph.edge_weight[:, None], graph.is_loop[:, None]
        return w * self.edge_scale + loop * self.loop_bias

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: Optional[torch.Tensor] = None, return_attention_weights: bool = False,
                attention_reduce: str = "mean"):
        if attention_reduce not in ("mean", "none"):
            raise ValueError(f"attention_reduce must be 'mean' or 'none', got {attention_reduce!r}")
        B, T, N, D = x.shape
        g = self.prepare(edge_index, edge_weight, N)
        lg = g["graph"]
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.qkv.weight.requires_grad)
        backend = self.resolve_backend(N, lg.edge_index.size(1), x.device, needs_grad)
        p = self.attn_dropout if self.training else 0.0
        if backend == "sparse" and p > 0:
            backend = "gather"  # the only path that draws attention dropout
        if backend == "flex" and return_attention_weights:
            backend = "sparse"  # fused kernels do not expose the weights
        if backend == "flex" and needs_grad and x.device.type != "cuda":
            if not _warned_flex_cpu:
                _warn_flex_cpu()
            backend = "sparse"  # same function; torch has no FlexAttention backward on CPU
        self.last_backend = backend
        run = {"sparse": self._sparse, "gather": self._gather, "dense": self._dense,
               "flex": self._flex}[backend]
        out, alpha = run(x, g, p, return_attention_weights, attention_reduce)
        if not return_attention_weights:
            return out
        if attention_reduce == "none":
            alpha = alpha.view(B, T, *alpha.shape[1:])
        return out, (lg.edge_index, alpha)

    def _qkv_nodes_first(self, x):
        """``x`` ``[B, T, N, D]`` -> q, k, v as contiguous ``[N, S, H, d]``."""
        B, T, N, D = x.shape
        H = self.heads
        xn = x.permute(2, 0, 1, 3).reshape(N, B * T, D)
        w, b = self.qkv.weight, self.qkv.bias
        return tuple(F.linear(xn, w[i * D:(i + 1) * D], b[i * D:(i + 1) * D]).view(N, B * T, H, D // H)
                     for i in range(3))

    def _project_nodes_last(self, out, B, T):
        """Output projection of ``[N, S, H, d]``, then ``-> [B, T, N, D]`` (projecting
        first lets the projection keep the attention output for backward, not a copy)."""
        N = out.size(0)
        return self.proj(out.reshape(N, B * T, -1)).view(N, B, T, -1).permute(1, 2, 0, 3)

    def _sparse(self, x, g, p, want_alpha, reduce):
        B, T, N, D = x.shape
        lg = g["graph"]
        q, k, v = self._qkv_nodes_first(x)
        bias = self.edge_bias(lg).index_select(0, lg.perm)  # CSR order
        out, lse = edge_attention(q, k, v, bias, lg.csr, chunk_bytes=self.chunk_bytes,
                                  return_lse=True)
        alpha = None
        if want_alpha:
            a = edge_attention_weights(q.detach(), k.detach(), bias.detach(), lg.csr, lse,
                                       reduce=reduce, chunk_bytes=self.chunk_bytes)
            alpha = torch.empty_like(a)
            alpha[lg.perm] = a  # back to edge_index order
            if reduce == "none":
                alpha = alpha.transpose(0, 1)  # [S, E', H]
        return self._project_nodes_last(out, B, T), alpha

    def _gather(self, x, g, p, want_alpha, reduce):
        B, T, N, D = x.shape
        lg = g["graph"]
        src, dst = lg.edge_index
        q, k, v = self._qkv_nodes_first(x)
        q_e = q.index_select(0, dst)  # [E', S, H, d]
        k_e = k.index_select(0, src)
        v_e = v.index_select(0, src)
        logits = (q_e * k_e).sum(-1) * (1.0 / math.sqrt(q.size(-1)))  # [E', S, H]
        logits = logits + self.edge_bias(lg).to(logits.dtype)[:, None, :]
        from torch_geometric.utils import softmax as pyg_softmax

        alpha = pyg_softmax(logits, dst, num_nodes=N, dim=0)
        msg = v_e * F.dropout(alpha, p=p, training=p > 0).unsqueeze(-1)
        out = torch.zeros_like(q).index_add_(0, dst, msg)
        if want_alpha:
            alpha = alpha.mean(1) if reduce == "mean" else alpha.transpose(0, 1)
        return self._project_nodes_last(out, B, T), (alpha if want_alpha else None)

    def _dense_pieces(self, g):
        if "adj_neg" not in g:
            lg = g["graph"]
            src, dst = lg.edge_index
            N = lg.num_nodes
            w = lg.edge_weight.new_zeros(N, N)
            w[dst, src] = lg.edge_weight  # row = target (query), column = source (key)
            adj_neg = lg.edge_weight.new_full((N, N), float("-inf"))
            adj_neg[dst, src] = 0.0
            g["weight_dense"], g["adj_neg"] = w, adj_neg
            g["eye"] = torch.eye(N, device=w.device, dtype=w.dtype)
        return g

    def dense_mask(self, g: dict) -> torch.Tensor:
        """Additive float mask ``[H, N, N]``: bias on edges, ``-inf`` elsewhere."""
        g = self._dense_pieces(g)
        return (g["adj_neg"] + self.edge_scale[:, None, None] * g["weight_dense"]
                + self.loop_bias[:, None, None] * g["eye"])

    def _dense(self, x, g, p, want_alpha, reduce):
        B, T, N, D = x.shape
        H, d = self.heads, D // self.heads
        q, k, v = self.qkv(x).view(B * T, N, 3, H, d).permute(2, 0, 3, 1, 4)  # 3 x [S, H, N, d]
        mask = self.dense_mask(g).to(q.dtype)  # [H, N, N]
        if not (want_alpha or (mask.requires_grad and q.device.type == "cpu")):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            return self.proj(out.transpose(1, 2).reshape(B, T, N, D)), None
        # Explicit path: asked-for weights, or CPU training, where SDPA's fused kernel
        # cannot give the mask its gradient and its fallback does extra masked-row passes.
        logits = (q * (1.0 / math.sqrt(d))) @ k.transpose(-2, -1)  # [S, H, N, N]
        w = logits.add_(mask).softmax(dim=-1)
        out = F.dropout(w, p=p, training=p > 0) @ v
        alpha = None
        if want_alpha:
            src, dst = g["graph"].edge_index
            alpha = w[:, :, dst, src].transpose(1, 2)  # [S, E', H]
            if reduce == "mean":
                alpha = alpha.mean(0)
        return self.proj(out.transpose(1, 2).reshape(B, T, N, D)), alpha

    def _flex(self, x, g, p, want_alpha, reduce):
        B, T, N, D = x.shape
        H, d = self.heads, D // self.heads
        if "flex" not in g or g["flex"].order.device != x.device:
            lg = g["graph"]
            g["flex"] = prepare_flex(lg.edge_index.to(x.device), lg.edge_weight.to(x.device), N,
                                     self.reorder)
        q, k, v = self.qkv(x).view(B * T, N, 3, H, d).permute(2, 0, 3, 1, 4)  # 3 x [S, H, N, d]
        out = flex_graph_attention(q, k, v, g["flex"], self.edge_scale.to(q.dtype),
                                   self.loop_bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(B, T, N, D)), None


class SpatialGraphAttention(nn.Module):
    r"""Pre-norm :class:`GraphAttention` block with residual, then a pre-norm
    feed-forward with residual:

    .. math::
        x &\leftarrow x + \mathrm{Drop}(\mathrm{GraphAttention}(\mathrm{LN}(x))) \\
        x &\leftarrow x + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}(x)))

    Args:
        dim: feature size ``D`` (divisible by ``heads``).
        heads: number of attention heads ``H``.
        dropout: dropout on the attention and feed-forward outputs.
        ff_mult: feed-forward hidden size is ``ff_mult * D``; 0: no feed-forward
            (the attention sublayer alone, as in stgt's efficient blocks, whose
            temporal block holds the one feed-forward).
        backend, dense_max_nodes, self_loop_weight, attn_dropout, chunk_bytes:
            as in :class:`GraphAttention`.

    Shapes:
        - input: ``x`` ``[B, T, N, D]``, ``edge_index`` ``[2, E]``,
          ``edge_weight`` ``[E]`` (optional, default ones)
        - output: ``[B, T, N, D]``; with ``return_attention=True`` the tuple
          ``(out, (edge_index_looped [2, E'], alpha))`` as in
          :class:`GraphAttention`.
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0, ff_mult: int = 4,
                 backend: str = "auto", dense_max_nodes: int = 1024, self_loop_weight: float = 1.0,
                 attn_dropout: float = 0.0, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = GraphAttention(dim, heads, backend, dense_max_nodes, self_loop_weight,
                                   attn_dropout, chunk_bytes)
        self.dropout = Dropout(dropout)
        self.ffn = FeedForward(dim, ff_mult, dropout) if ff_mult else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.attn.reset_parameters()
        if self.ffn is not None:
            self.ffn.reset_parameters()

    @property
    def last_backend(self) -> Optional[str]:
        return self.attn.last_backend

    def resolve_backend(self, num_nodes: int, num_edges: int, device=None, needs_grad: bool = True) -> str:
        return self.attn.resolve_backend(num_nodes, num_edges, device, needs_grad)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the attention became its own module
        for name in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias", "edge_scale", "loop_bias"):
            if prefix + name in state_dict:
                state_dict[prefix + "attn." + name] = state_dict.pop(prefix + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor,
                edge_weight: Optional[torch.Tensor] = None, return_attention: bool = False,
                attention_reduce: str = "mean"):
        res = self.attn(self.norm(x), edge_index, edge_weight, return_attention, attention_reduce)
        out, att = res if return_attention else (res, None)
        x = x + self.dropout(out)
        if self.ffn is not None:
            x = self.ffn(x)
        return (x, att) if return_attention else x
