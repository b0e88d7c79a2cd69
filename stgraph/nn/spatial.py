"""Graph attention across sensors, run for every (batch, time step) slice at once.

Each sensor attends over its IN-neighbours in ``edge_index`` (``source ->
target``: messages flow from ``edge_index[0]`` to ``edge_index[1]``) and over
itself (self loops are added). A learned per-head bias from the edge weight is
added to the attention logits, so closer sensors can be favoured before the
content of the series says anything.

:class:`GraphAttention` only attends (like PyG's ``TransformerConv``);
:class:`SpatialGraphAttention` is the block that adds the pre-norm, residual and
feed-forward. Four backends compute the same function (``S = B * T`` slices), each
in its own kernel module (:mod:`stgraph.nn.kernels`):

* ``'sparse'`` (:mod:`stgraph.nn.kernels.sparse`): memory-efficient edge-wise attention
  (:func:`stgraph.nn.edge_attention.edge_attention`): a custom autograd
  function that walks the in-edges (CSR by target) in chunks under a memory
  budget with an online softmax, and recomputes them in backward. Memory grows
  with ``N * S * D + E * H``, never with ``E * S * D``. Exact; CPU and CUDA.
* ``'gather'`` (:mod:`stgraph.nn.kernels.gather`): the plain edge-wise formulation
  (gather ``q``/``k``/``v`` for every edge and slice, segment softmax, scatter).
  Same function, memory ``~ 6 * E * S * D``; kept as the reference and for attention dropout.
* ``'dense'`` (:mod:`stgraph.nn.kernels.dense`):
  :func:`torch.nn.functional.scaled_dot_product_attention` over all
  ``N`` sensors with an additive ``[H, N, N]`` mask (bias on edges, ``-inf``
  elsewhere). Memory ``S * H * N^2`` on CPU training; fused kernels on CUDA.
* ``'flex'`` (:mod:`stgraph.nn.flex_graph`): FlexAttention with a ``BlockMask`` built once per graph
  after a reverse Cuthill-McKee renumbering; fused
  Triton kernels forward and backward on CUDA. On CPU torch has no backward for
  it, so it serves inference only.

The layer keeps the graph it last saw as a typed cache
(:class:`stgraph.nn.kernels.graph.AttentionGraph`): the self-looped graph, plus the
dense matrices or the block mask once a backend needed them; the kernels only read it.

``'auto'`` picks, from the device, whether gradients are needed and the graph,
the rule measured by ``benchmarks/bench_attention.py``
(``benchmarks/results/attention_scaling.md``): see :func:`choose_backend`.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .edge_attention import DEFAULT_CHUNK_BYTES
from .flex_graph import HAVE_FLEX, flex_graph_attention
from .init import xavier_linear
from .kernels import NODES_FIRST, dense, gather, sparse
from .kernels.graph import AttentionGraph, LoopedGraph, with_self_loops
from .lean import Dropout
from .temporal import FeedForward

BACKENDS = ("auto", "sparse", "gather", "dense", "flex")


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
        self.cached_graph: Optional[AttentionGraph] = None  # the last graph, prepared; not state
        self.warned_flex_cpu = False  # the 'flex'-on-CPU-training warning was given
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
    def prepare(self, edge_index, edge_weight, num_nodes) -> AttentionGraph:
        """The self-looped graph (:class:`~stgraph.nn.kernels.graph.AttentionGraph`), cached per graph;
        the dense and flex pieces are added on first use by the backends that need them.

        The cache keeps references to the graph tensors, so identity plus the
        tensors' in-place version counters identify the graph safely. A weight
        that requires grad (a learned adjacency) is never cached.
        """
        c = self.cached_graph
        if c is not None and c.matches(edge_index, edge_weight, num_nodes):
            return c
        graph = AttentionGraph.build(edge_index, edge_weight, num_nodes, self.self_loop_weight)
        if graph.cacheable:
            self.cached_graph = graph
        return graph

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
        graph = self.prepare(edge_index, edge_weight, N)
        p = self.attn_dropout if self.training else 0.0
        backend = self._backend_for(x, graph, p, return_attention_weights)
        self.last_backend = backend
        out, alpha = self._attend(backend, x, graph, p, return_attention_weights, attention_reduce)
        if not return_attention_weights:
            return out
        if attention_reduce == "none":
            alpha = alpha.view(B, T, *alpha.shape[1:])
        return out, (graph.looped.edge_index, alpha)

    def _backend_for(self, x: torch.Tensor, graph: AttentionGraph, p: float, want_alpha: bool) -> str:
        """The backend this forward runs: the resolved one, unless it cannot serve the call (dropout on
        the weights: 'gather'; weights asked of 'flex', or 'flex' training on CPU: 'sparse')."""
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.qkv.weight.requires_grad)
        backend = self.resolve_backend(graph.num_nodes, graph.looped.edge_index.size(1), x.device, needs_grad)
        if backend == "sparse" and p > 0:
            backend = "gather"  # the only path that draws attention dropout
        if backend == "flex" and want_alpha:
            backend = "sparse"  # fused kernels do not expose the weights
        if backend == "flex" and needs_grad and x.device.type != "cuda":
            if not self.warned_flex_cpu:
                self.warned_flex_cpu = True
                warnings.warn("backend 'flex': torch has no FlexAttention backward on CPU, so training on CPU "
                              "runs the 'sparse' backend (the same function); 'flex' serves CPU inference "
                              "under torch.no_grad()", stacklevel=3)
            backend = "sparse"  # same function; torch has no FlexAttention backward on CPU
        return backend

    def _attend(self, backend: str, x: torch.Tensor, graph: AttentionGraph, p: float, want_alpha: bool,
                reduce: str):
        """Projections around the backend's kernel: ``x`` ``[B, T, N, D]`` -> ``([B, T, N, D], alpha)``."""
        B, T, N, D = x.shape
        lg = graph.looped
        if backend in NODES_FIRST:
            q, k, v = self._qkv_nodes_first(x)
            bias = self.edge_bias(lg)
            if backend == "sparse":
                out, alpha = sparse.attend(q, k, v, bias, lg, self.chunk_bytes, want_alpha, reduce)
            else:
                out, alpha = gather.attend(q, k, v, bias, lg, p, want_alpha, reduce)
            return self._project_nodes_last(out, B, T), alpha
        flex = graph.for_flex(x.device, self.reorder) if backend == "flex" else None
        q, k, v = self._qkv_slices_first(x)
        if flex is not None:
            out, alpha = flex_graph_attention(q, k, v, flex, self.edge_scale.to(q.dtype),
                                              self.loop_bias.to(q.dtype)), None
        else:
            mask = dense.dense_mask(graph.for_dense(), self.edge_scale, self.loop_bias).to(q.dtype)  # [H, N, N]
            out, alpha = dense.attend(q, k, v, mask, lg.edge_index, p, want_alpha, reduce)
        return self.proj(out.transpose(1, 2).reshape(B, T, N, D)), alpha

    def _qkv_nodes_first(self, x):
        """``x`` ``[B, T, N, D]`` -> q, k, v as contiguous ``[N, S, H, d]``."""
        B, T, N, D = x.shape
        H = self.heads
        xn = x.permute(2, 0, 1, 3).reshape(N, B * T, D)
        w, b = self.qkv.weight, self.qkv.bias
        return tuple(F.linear(xn, w[i * D:(i + 1) * D], b[i * D:(i + 1) * D]).view(N, B * T, H, D // H)
                     for i in range(3))

    def _qkv_slices_first(self, x):
        """``x`` ``[B, T, N, D]`` -> q, k, v as ``[S, H, N, d]``."""
        B, T, N, D = x.shape
        H = self.heads
        return self.qkv(x).view(B * T, N, 3, H, D // H).permute(2, 0, 3, 1, 4)

    def _project_nodes_last(self, out, B, T):
        """Output projection of ``[N, S, H, d]``, then ``-> [B, T, N, D]`` (projecting
        first lets the projection keep the attention output for backward, not a copy)."""
        N = out.size(0)
        return self.proj(out.reshape(N, B * T, -1)).view(N, B, T, -1).permute(1, 2, 0, 3)


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
