"""Memory-efficient multi-head attention restricted to a graph's in-edges.

For every target node ``i``, slice ``s`` and head ``h``:

.. math::
    o_{ish} = \\sum_{e = (j \\to i)} \\mathrm{softmax}_e\\big(\\tau \\langle q_{ish}, k_{jsh}\\rangle
              + b_{eh}\\big)\\, v_{jsh}

The edges are grouped by target (CSR: ``rowptr``, and the sources of the edges
sorted by target) and walked in chunks whose working set fits a memory budget,
FlashAttention-style: the forward keeps a running maximum, running sum and
running output per target (an online softmax, exact), and saves only ``q``,
``k``, ``v``, the output and the per-target log-sum-exp for backward; the
backward recomputes each chunk's logits and gradients. No tensor of size
``E * S * D`` is alive at any time: the largest temporaries are
``chunk_edges * S * D``.

This module holds the kernel only (no parameters): see
:class:`stgraph.nn.GraphAttention` for the layer that uses it.
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

import torch

from ..runtime import eager_when_compiled

#: Default working-set budget of one chunk (bytes). 16 MiB keeps a chunk's
#: gathered rows in a CPU's last-level cache and was fastest on the 2-core
#: development machine (``benchmarks/bench_attention.py --chunk-sweep``).
DEFAULT_CHUNK_BYTES = 16 << 20

# Rows of ``S * H * d`` numbers per edge alive at once inside a chunk: forward
# gathers q, k, v and one product; backward gathers q, k, v, dout plus one product.
_ROWS_FORWARD = 4
_ROWS_BACKWARD = 5


class CSR(NamedTuple):
    """In-edges grouped by target.

    Attributes:
        rowptr: ``[N + 1]`` long; the in-edges of target ``i`` are positions
            ``rowptr[i]:rowptr[i+1]`` of ``src`` / ``dst``.
        src: ``[E]`` long, sources sorted by target.
        dst: ``[E]`` long, targets, non-decreasing.
        dst_host: the same targets as a Python list on the host (chunk planning
            never reads the device).
        num_nodes: ``N``.
    """

    rowptr: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    dst_host: List[int]
    num_nodes: int


def build_csr(edge_index: torch.Tensor, num_nodes: int) -> Tuple[CSR, torch.Tensor]:
    """Group edges by target.

    Args:
        edge_index: ``[2, E]`` long, source -> target.
        num_nodes: ``N``.

    Returns:
        ``(csr, perm)``: :class:`CSR` and ``perm`` ``[E]`` such that edge ``p``
        of the CSR is edge ``perm[p]`` of ``edge_index`` (stable: edges of one
        target keep their input order).
    """
    dst = edge_index[1]
    perm = torch.sort(dst, stable=True).indices
    dst_sorted = dst[perm]
    counts = torch.bincount(dst_sorted, minlength=num_nodes)
    rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=dst.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    csr = CSR(rowptr, edge_index[0][perm].contiguous(), dst_sorted.contiguous(),
              dst_sorted.tolist(), num_nodes)
    return csr, perm


def plan_chunks(dst_host: List[int], row_bytes: int, rows_per_edge: int,
                chunk_bytes: int) -> List[Tuple[int, int, int, int, bool]]:
    """Cut the edge list into chunks of at most ``chunk_bytes`` working set.

    Args:
        dst_host: targets of the CSR edges (non-decreasing).
        row_bytes: bytes of one edge's row (``S * H * d * itemsize``).
        rows_per_edge: rows alive per edge inside a chunk.
        chunk_bytes: the budget.

    Returns:
        ``[(e0, e1, t0, t1, continues)]``: edges ``e0:e1`` whose targets lie in
        ``t0..t1``; ``continues`` says target ``t0`` already had edges in the
        previous chunk (only the first target of a chunk can).
    """
    E = len(dst_host)
    step = max(1, chunk_bytes // max(1, row_bytes * rows_per_edge))
    plan = []
    for e0 in range(0, E, step):
        e1 = min(E, e0 + step)
        t0, t1 = dst_host[e0], dst_host[e1 - 1]
        plan.append((e0, e1, t0, t1, e0 > 0 and dst_host[e0 - 1] == t0))
    return plan


def _logits(q, k, bias, src, dst):
    """Edge logits ``[Ec, S, H]`` (q already scaled) and the gathered q, k rows."""
    qe = q.index_select(0, dst)
    ke = k.index_select(0, src)
    logits = torch.mul(qe, ke).sum(-1)
    logits += bias[:, None, :]
    return logits, qe, ke


def _forward(q, k, v, bias, csr: CSR, plan):
    """Online-softmax forward. ``q`` (pre-scaled), ``k``, ``v`` ``[N, S, H, d]``,
    ``bias`` ``[E, H]`` in CSR order -> ``out [N, S, H, d]``, ``lse [N, S, H]``."""
    N, S, H, d = q.shape
    out = q.new_zeros(N, S, H, d)
    m = q.new_full((N, S, H), float("-inf"))
    l = q.new_zeros(N, S, H)
    for e0, e1, t0, t1, cont in plan:
        src, ldst = csr.src[e0:e1], csr.dst[e0:e1] - t0
        logits, qe, ke = _logits(q, k, bias[e0:e1], src, csr.dst[e0:e1])
        del qe, ke
        nl = t1 - t0 + 1
        lm = logits.new_full((nl, S, H), float("-inf")).scatter_reduce_(
            0, ldst.view(-1, 1, 1).expand_as(logits), logits, "amax")
        if cont:  # target t0 continues from the previous chunk: rescale what it has
            mn = torch.maximum(m[t0], lm[0])
            r = torch.exp(m[t0] - mn)
            out[t0] *= r[..., None]
            l[t0] *= r
            lm[0] = mn
        p = torch.exp(logits.sub_(lm.index_select(0, ldst)))
        l[t0:t1 + 1].index_add_(0, ldst, p)
        ve = v.index_select(0, src)
        out[t0:t1 + 1].index_add_(0, ldst, ve.mul_(p[..., None]))
        m[t0:t1 + 1] = lm
    empty = l == 0  # targets without any in-edge: output 0, lse -inf
    out /= l.masked_fill(empty, 1.0)[..., None]
    lse = m + torch.log(l)
    return out, lse


def _backward(dout, q, k, v, bias, out, lse, csr: CSR, plan, need_bias_grad: bool):
    """Recompute each chunk's probabilities and return ``dq`` (w.r.t. the scaled
    q), ``dk``, ``dv`` ``[N, S, H, d]`` and ``dbias`` ``[E, H]``."""
    delta = torch.mul(dout, out).sum(-1)  # [N, S, H]
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dbias = bias.new_empty(bias.shape) if need_bias_grad else None
    for e0, e1, t0, t1, _ in plan:
        src, dst = csr.src[e0:e1], csr.dst[e0:e1]
        ldst = dst - t0
        logits, qe, ke = _logits(q, k, bias[e0:e1], src, dst)
        p = torch.exp(logits.sub_(lse.index_select(0, dst)))  # [Ec, S, H]
        doe = dout.index_select(0, dst)
        ve = v.index_select(0, src)
        ds = torch.mul(doe, ve).sum(-1)
        del ve
        ds.sub_(delta.index_select(0, dst)).mul_(p)  # dlogits [Ec, S, H]
        dv.index_add_(0, src, doe.mul_(p[..., None]))
        del doe, p
        if dbias is not None:
            dbias[e0:e1] = ds.sum(1)
        dsx = ds[..., None]
        dq[t0:t1 + 1].index_add_(0, ldst, ke.mul_(dsx))
        dk.index_add_(0, src, qe.mul_(dsx))
    return dq, dk, dv, dbias


class _EdgeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, csr, scale, chunk_bytes):
        N, S, H, d = q.shape
        qs = q * scale
        row = S * H * d * q.element_size()
        out, lse = _forward(qs, k, v, bias, csr,
                            plan_chunks(csr.dst_host, row, _ROWS_FORWARD, chunk_bytes))
        ctx.save_for_backward(qs, k, v, bias, out, lse)
        ctx.csr, ctx.scale, ctx.chunk_bytes = csr, scale, chunk_bytes
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        qs, k, v, bias, out, lse = ctx.saved_tensors
        N, S, H, d = qs.shape
        plan = plan_chunks(ctx.csr.dst_host, S * H * d * qs.element_size(), _ROWS_BACKWARD,
                           ctx.chunk_bytes)
        dq, dk, dv, dbias = _backward(dout.contiguous(), qs, k, v, bias, out, lse, ctx.csr, plan,
                                      ctx.needs_input_grad[3])
        dq.mul_(ctx.scale)
        return dq, dk, dv, dbias, None, None, None


@eager_when_compiled  # a Python loop over chunks: run eagerly inside a compiled model
def edge_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, csr: CSR,
                   scale: Optional[float] = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                   return_lse: bool = False):
    r"""Exact attention of every target over its in-edges, in bounded memory.

    Args:
        q: ``[N, S, H, d]`` queries of the targets (``S`` independent slices,
            e.g. ``B * T``).
        k: ``[N, S, H, d]`` keys of the sources.
        v: ``[N, S, H, d]`` values of the sources.
        bias: ``[E, H]`` additive logit bias per edge and head, in CSR order.
        csr: the graph from :func:`build_csr`.
        scale: logit scale ``tau`` (default ``1 / sqrt(d)``).
        chunk_bytes: working-set budget of one chunk of edges.
        return_lse: also return the log-sum-exp ``[N, S, H]``.

    Returns:
        ``[N, S, H, d]`` (targets without in-edges get 0); with
        ``return_lse`` also ``[N, S, H]`` (``-inf`` for those targets).
        Differentiable w.r.t. ``q``, ``k``, ``v`` and ``bias``. Low-precision
        inputs are computed in float32 and cast back.
    """
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must all be [N, S, H, d]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.size(0) != csr.num_nodes:
        raise ValueError(f"q has {q.size(0)} nodes but the graph has {csr.num_nodes}")
    if bias.shape != (csr.src.numel(), q.size(2)):
        raise ValueError(f"bias must be [E, H] = [{csr.src.numel()}, {q.size(2)}], "
                         f"got {tuple(bias.shape)}")
    dtype = q.dtype
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    out, lse = _EdgeAttention.apply(q.to(work).contiguous(), k.to(work).contiguous(),
                                    v.to(work).contiguous(), bias.to(work).contiguous(), csr, scale,
                                    int(chunk_bytes))
    out = out.to(dtype)
    return (out, lse) if return_lse else out


@torch.no_grad()
def edge_attention_weights(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor, csr: CSR,
                           lse: torch.Tensor, scale: Optional[float] = None,
                           reduce: str = "mean", chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> torch.Tensor:
    """Attention weights of every edge, chunk by chunk, from the saved log-sum-exp.

    Args:
        q, k: ``[N, S, H, d]``; ``bias``: ``[E, H]`` (CSR order); ``csr``: graph.
        lse: ``[N, S, H]`` from :func:`edge_attention` with ``return_lse=True``.
        reduce: ``'mean'`` over slices -> ``[E, H]``, or ``'none'`` -> ``[E, S, H]``.

    Returns:
        weights in CSR order; each target's in-edges sum to 1 per slice and head.
    """
    N, S, H, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    qs = q.to(work) * scale
    k, bias, lse = k.to(work), bias.to(work), lse.to(work)
    shape = (csr.src.numel(), H) if reduce == "mean" else (csr.src.numel(), S, H)
    alpha = qs.new_empty(shape)
    for e0, e1, *_ in plan_chunks(csr.dst_host, S * H * d * 4, 3, chunk_bytes):
        dst = csr.dst[e0:e1]
        logits, _, _ = _logits(qs, k, bias[e0:e1], csr.src[e0:e1], dst)
        p = torch.exp(logits.sub_(lse.index_select(0, dst)))
        alpha[e0:e1] = p.mean(1) if reduce == "mean" else p
    return alpha
