"""STAEformer: a vanilla transformer with a spatio-temporal adaptive embedding.

Liu, Dong, Jiang, Deng, Deng, Chen, Song: "Spatio-Temporal Adaptive Embedding
Makes Vanilla Transformer SOTA for Traffic Forecasting", CIKM 2023. Defaults
follow the paper and the official code (github.com/XDZhelheim/STAEformer,
``model/STAEformer.py`` with the METR-LA entry of ``model/STAEformer.yaml``).

Input embedding: every (step, sensor) gets the concatenation of a linear
projection of its readings (24), a time-of-day embedding (24), a day-of-week
embedding (24) and the adaptive embedding ``E_a [T_in, N, 80]``, a free
parameter per (input step, sensor) -- model width 152. Then 3 post-norm
transformer layers attend along time (per sensor), then 3 along the sensors
(per step, all ``N x N`` pairs: the paper's spatial layer has no graph), each
``x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))`` with 4 heads, ReLU
feed-forward of width 256 and dropout 0.1. The output projection mixes time and
features: per sensor, ``[T_in * 152] -> [T_out * C_out]`` in one linear layer.
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`.

Calendar covariates come from ``covariates`` (``tod_in``/``dow_in`` of every
input step, as the official code reads them from input channels 1 and 2); the
future calendar is not read. ``in_channels`` counts data channels only.

Parameters at METR-LA size (N=207, T_in=T_out=12, C_in=C_out=1, 288 slots):
1,258,932 here. From the official code: 1,258,932 with ``input_dim=1`` (the
code's default) and 1,258,980 with the METR-LA yaml's ``input_dim: 3`` (48
more weights in the input projection), counted from ``model/STAEformer.py``.
The "about 1.22M" quoted for STAEformer on METR-LA (1,222,120) is 3% below;
we could not trace that figure to the paper or the code.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.calendar import tod_slot
from ..nn.temporal import attention
from .registry import check_input, register


class AxisSelfAttentionLayer(nn.Module):
    r"""Post-norm transformer layer whose self-attention runs along one axis of
    ``[B, T, N, D]``: ``'time'`` (each sensor's ``T`` steps) or ``'node'``
    (each step's ``N`` sensors, all pairs).

    .. math::
        x &\leftarrow \mathrm{LN}(x + \mathrm{Drop}(\mathrm{MHA}(x))) \\
        x &\leftarrow \mathrm{LN}(x + \mathrm{Drop}(W_2\,\mathrm{ReLU}(W_1 x)))

    Args:
        dim: feature size ``D`` (divisible by ``heads``).
        heads: attention heads ``H``.
        ff_dim: feed-forward hidden size.
        dropout: dropout on the attention and feed-forward outputs.
        axis: ``'time'`` or ``'node'``.

    Shapes:
        - input: ``[B, T, N, D]``
        - output: ``[B, T, N, D]``
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, axis: str):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if axis not in ("time", "node"):
            raise ValueError(f"axis must be 'time' or 'node', got {axis!r}")
        self.heads, self.axis = heads, axis
        self.qkv = nn.Linear(dim, 3 * dim)  # the official FC_Q, FC_K, FC_V side by side
        self.proj = nn.Linear(dim, dim)
        self.ff1 = nn.Linear(dim, ff_dim)
        self.ff2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for m in (self.qkv, self.proj, self.ff1, self.ff2, self.norm1, self.norm2):
            m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, N, D = x.shape
        H = self.heads
        d = D // H
        qkv = self.qkv(x).view(B, T, N, 3, H, d)
        # SDPA takes its fused CPU kernel only for 4-D inputs: fold the batch dims.
        if self.axis == "time":  # q, k, v [B*N, H, T, d]
            q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).reshape(3, B * N, H, T, d)
            out = attention(q, k, v).view(B, N, H, T, d).permute(0, 3, 1, 2, 4)  # [B, T, N, H, d]
        else:  # q, k, v [B*T, H, N, d] (strided views, no copy)
            q, k, v = (qkv[:, :, :, i].reshape(B * T, N, H, d).transpose(1, 2) for i in range(3))
            out = attention(q, k, v).transpose(1, 2)  # [B*T, N, H, d]
        x = self.norm1(x + self.drop(self.proj(out.reshape(B, T, N, D))))
        return self.norm2(x + self.drop(self.ff2(F.relu(self.ff1(x)))))


@register("staeformer")
class STAEformer(nn.Module):
    r"""Spatio-temporal adaptive embedding transformer (STAEformer).

    Args:
        num_nodes: sensors ``N``.
        in_channels: input channels ``C_in`` of ``x``.
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in``.
        horizon: forecast steps ``T_out``.
        steps_per_day: time-of-day slots (288 for 5-minute data).
        input_embedding_dim: size of the projected readings (24).
        tod_embedding_dim: time-of-day embedding size (24; 0 leaves it out).
        dow_embedding_dim: day-of-week embedding size (24; 0 leaves it out).
        spatial_embedding_dim: a plain per-sensor embedding (0, as the paper's
            final model; kept for the paper's ablation).
        adaptive_embedding_dim: size of the adaptive embedding
            ``[T_in, N, .]`` (80; 0 leaves it out).
        feed_forward_dim: feed-forward hidden size (256).
        heads: attention heads (4).
        num_layers: transformer layers along time, and again along sensors (3).
        dropout: dropout on sublayer outputs (0.1).

    The model width is the sum of the embedding sizes (152).

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``covariates['tod_in']``
          ``[B, T_in]`` float in ``[0, 1)``, ``covariates['dow_in']``
          ``[B, T_in]`` int64; ``graph`` unused
        - output: ``[B, T_out, N, C_out]`` in z-score units.
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, steps_per_day: int = 288, input_embedding_dim: int = 24,
                 tod_embedding_dim: int = 24, dow_embedding_dim: int = 24,
                 spatial_embedding_dim: int = 0, adaptive_embedding_dim: int = 80,
                 feed_forward_dim: int = 256, heads: int = 4, num_layers: int = 3,
                 dropout: float = 0.1):
        super().__init__()
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon, self.steps_per_day = input_len, horizon, steps_per_day
        self.model_dim = (input_embedding_dim + max(tod_embedding_dim, 0) + max(dow_embedding_dim, 0)
                          + max(spatial_embedding_dim, 0) + max(adaptive_embedding_dim, 0))
        self.input_proj = nn.Linear(in_channels, input_embedding_dim)
        self.tod_emb = nn.Embedding(steps_per_day, tod_embedding_dim) if tod_embedding_dim > 0 else None
        self.dow_emb = nn.Embedding(7, dow_embedding_dim) if dow_embedding_dim > 0 else None
        self.node_emb = (nn.Parameter(torch.empty(num_nodes, spatial_embedding_dim))
                         if spatial_embedding_dim > 0 else None)
        self.adaptive_emb = (nn.Parameter(torch.empty(input_len, num_nodes, adaptive_embedding_dim))
                             if adaptive_embedding_dim > 0 else None)
        if self.model_dim % heads:
            raise ValueError(f"the model width {self.model_dim} (the sum of the embedding dims) is not divisible by "
                             f"heads={heads}: set model.params.heads to a divisor of it, or change "
                             f"model.params.input_embedding_dim / tod_ / dow_ / spatial_ / adaptive_embedding_dim")
        layer = lambda axis: AxisSelfAttentionLayer(self.model_dim, heads, feed_forward_dim, dropout, axis)
        self.temporal_layers = nn.ModuleList([layer("time") for _ in range(num_layers)])
        self.spatial_layers = nn.ModuleList([layer("node") for _ in range(num_layers)])
        self.output_proj = nn.Linear(input_len * self.model_dim, horizon * out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As the official code: PyTorch's defaults for linear, embedding and
        norm layers, Xavier-uniform for the sensor and adaptive embeddings."""
        self.input_proj.reset_parameters()
        for emb in (self.tod_emb, self.dow_emb):
            if emb is not None:
                emb.reset_parameters()
        for p in (self.node_emb, self.adaptive_emb):
            if p is not None:
                nn.init.xavier_uniform_(p)
        for layer in (*self.temporal_layers, *self.spatial_layers):
            layer.reset_parameters()
        self.output_proj.reset_parameters()

    def embed(self, x: torch.Tensor, covariates: dict) -> torch.Tensor:
        """Input embedding ``[B, T_in, N, model_dim]`` of ``x`` ``[B, T_in, N, C_in]``."""
        B, T, N, _ = x.shape
        feats = [self.input_proj(x)]
        if self.tod_emb is not None:
            slot = tod_slot(covariates["tod_in"], self.steps_per_day)  # [B, T]
            feats.append(self.tod_emb(slot)[:, :, None, :].expand(-1, -1, N, -1))
        if self.dow_emb is not None:
            dow = covariates["dow_in"].long().clamp(0, 6)
            feats.append(self.dow_emb(dow)[:, :, None, :].expand(-1, -1, N, -1))
        if self.node_emb is not None:
            feats.append(self.node_emb.expand(B, T, -1, -1))
        if self.adaptive_emb is not None:
            feats.append(self.adaptive_emb.expand(B, -1, -1, -1))
        return torch.cat(feats, dim=-1)

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        B, T, N, C = check_input(self, x)
        h = self.embed(x, covariates)
        for layer in self.temporal_layers:
            h = layer(h)
        for layer in self.spatial_layers:
            h = layer(h)
        out = self.output_proj(h.transpose(1, 2).reshape(B, N, T * self.model_dim))
        return out.view(B, N, self.horizon, self.out_channels).transpose(1, 2)
