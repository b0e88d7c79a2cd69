"""Attention along the time axis, run for every (batch, sensor) pair at once.

Tensors follow the stgraph convention ``[B, T, N, D]`` (batch, time steps,
sensors, features). Each sensor's series is an independent sequence here: the
``B * N`` sequences are folded into the batch dimension of
:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA), which picks a
FlashAttention / memory-efficient kernel on CUDA and a fused kernel on CPU.

When the attention weights are asked for, they are computed explicitly as
``softmax(Q K^T / sqrt(d))`` in a separate, slower path; the outputs of both
paths agree.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .init import xavier_linear
from .lean import Dropout, mlp


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, T, N, H*d]`` -> ``[B*N, H, T, d]``."""
    B, T, N, D = x.shape
    d = D // heads
    return x.view(B, T, N, heads, d).permute(0, 2, 3, 1, 4).reshape(B * N, heads, T, d)


def _merge_heads(x: torch.Tensor, B: int, N: int) -> torch.Tensor:
    """``[B*N, H, T, d]`` -> ``[B, T, N, H*d]``."""
    _, H, T, d = x.shape
    return x.view(B, N, H, T, d).permute(0, 3, 1, 2, 4).reshape(B, T, N, H * d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0,
              causal: bool = False, return_weights: bool = False):
    """Scaled dot-product attention over the second-to-last dimension.

    Args:
        q: ``[..., H, T_q, d]`` queries.
        k: ``[..., H, T_k, d]`` keys.
        v: ``[..., H, T_k, d]`` values.
        dropout_p: dropout on the attention weights (pass 0.0 in eval).
        causal: mask key positions after the query position (``T_q == T_k``).
        return_weights: also return the weights ``[..., H, T_q, T_k]``
            (computed explicitly; the fast path calls SDPA instead).

    Returns:
        ``[..., H, T_q, d]``, and the weights (before dropout) when asked.
    """
    if not return_weights:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    if causal:
        Tq, Tk = logits.shape[-2:]
        future = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(1)
        logits = logits.masked_fill(future, float("-inf"))
    weights = logits.softmax(dim=-1)
    out = F.dropout(weights, p=dropout_p, training=dropout_p > 0) @ v
    return out, weights


class FeedForward(nn.Module):
    r"""Pre-norm position-wise feed-forward sublayer with residual:
    :math:`x + \mathrm{Drop}(W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(x)))`.

    Args:
        dim: feature size ``D``.
        ff_mult: hidden size is ``ff_mult * D``.
        dropout: dropout on the output (not on the 4x wider hidden activation,
            whose random mask would cost more than the layer on CPU).

    In training the hidden activation is recomputed in backward
    (:func:`stgraph.nn.lean.mlp`) rather than stored.

    Shapes:
        - input: ``[..., D]``
        - output: ``[..., D]``
    """

    def __init__(self, dim: int, ff_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ff_mult * dim)
        self.fc2 = nn.Linear(ff_mult * dim, dim)
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        xavier_linear(self.fc1, self.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(mlp(self.norm(x), self.fc1, self.fc2))


class TemporalTransformerBlock(nn.Module):
    r"""Pre-norm transformer block whose self-attention runs along TIME,
    independently for every sensor of every sample:

    .. math::
        x &\leftarrow x + \mathrm{Drop}(\mathrm{MHA}_t(\mathrm{LN}(x))) \\
        x &\leftarrow x + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}(x)))

    ``[B, T, N, D]`` is reshaped to ``[B*N, heads, T, D/heads]`` and passed to
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        dim: feature size ``D`` (divisible by ``heads``).
        heads: number of attention heads ``H``.
        ff_mult: feed-forward hidden size is ``ff_mult * D``.
        dropout: dropout on the attention and feed-forward outputs.
        causal: if True, step ``t`` attends only to steps ``<= t``.
        attn_dropout: dropout on the attention weights. Default 0: any value
            > 0 makes SDPA leave its fused kernels on CPU.

    Shapes:
        - input: ``x`` ``[B, T, N, D]``
        - output: ``[B, T, N, D]``; with ``return_attention=True`` also the
          weights ``[B, N, H, T, T]`` (rows: query step, columns: key step).
    """

    def __init__(self, dim: int, heads: int = 4, ff_mult: int = 4, dropout: float = 0.0,
                 causal: bool = False, attn_dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.dim, self.heads, self.causal, self.attn_dropout = dim, heads, causal, attn_dropout
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        self.ffn = FeedForward(dim, ff_mult, dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        xavier_linear(self.qkv, self.proj)
        self.ffn.reset_parameters()

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        B, T, N, D = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (_split_heads(t, self.heads) for t in (q, k, v))
        p = self.attn_dropout if self.training else 0.0
        res = attention(q, k, v, p, self.causal, return_attention)
        out, w = res if return_attention else (res, None)
        x = x + self.dropout(self.proj(_merge_heads(out, B, N)))
        x = self.ffn(x)
        if return_attention:
            return x, w.view(B, N, self.heads, T, T)
        return x


class CrossAttention(nn.Module):
    r"""Pre-norm cross-attention along TIME, per sensor, with residual:
    :math:`x_q + \mathrm{Drop}(\mathrm{MHA}_t(\mathrm{LN}(x_q), \mathrm{LN}(x_{kv})))`.

    Every future step of a sensor attends over all encoded past steps of the
    same sensor (the decoder's "transform attention", as in GMAN). The query
    and memory sequences may have different lengths; there is no mask.

    Args:
        dim: feature size ``D`` (divisible by ``heads``).
        heads: number of attention heads ``H``.
        dropout: dropout on the output.
        attn_dropout: dropout on the attention weights (default 0).

    Shapes:
        - input: ``query`` ``[B, T_q, N, D]``, ``memory`` ``[B, T_k, N, D]``
        - output: ``[B, T_q, N, D]``; with ``return_attention=True`` also the
          weights ``[B, N, H, T_q, T_k]``.
    """

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.dim, self.heads, self.attn_dropout = dim, heads, attn_dropout
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm_q.reset_parameters()
        self.norm_kv.reset_parameters()
        xavier_linear(self.q, self.kv, self.proj)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, return_attention: bool = False):
        B, Tq, N, D = query.shape
        Tk = memory.size(1)
        q = _split_heads(self.q(self.norm_q(query)), self.heads)
        k, v = self.kv(self.norm_kv(memory)).chunk(2, dim=-1)
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)
        p = self.attn_dropout if self.training else 0.0
        res = attention(q, k, v, p, False, return_attention)
        out, w = res if return_attention else (res, None)
        x = query + self.dropout(self.proj(_merge_heads(out, B, N)))
        if return_attention:
            return x, w.view(B, N, self.heads, Tq, Tk)
        return x
