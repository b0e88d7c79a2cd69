"""GMAN: graph multi-attention network, an encoder-decoder of spatio-temporal attention.

Zheng, Fan, Wang, Qi: "GMAN: A Graph Multi-Attention Network for Traffic
Prediction", AAAI 2020. Defaults follow the paper and the official code
(github.com/zhengchuanpan/GMAN, TensorFlow, ``model.py`` / ``train.py``):

* spatio-temporal embedding (STE): a sensor embedding and the one-hot day of
  week (7) and time of day (``steps_per_day``) of every input and output step,
  each through two FC layers to ``D = K * d``, added. The paper uses fixed
  node2vec vectors (``D`` = 64 dims) of the road graph as sensor embedding;
  here it is a LEARNABLE ``[N, D]`` table (no graph needed; 13,248 more
  trainable weights at N=207 than the official count, which leaves the
  node2vec table out);
* ``num_blocks`` (L) ST-attention blocks in the encoder, and again in the
  decoder: spatial attention over ALL sensors and temporal attention over the
  steps of each sensor, both with queries/keys/values from ``[X, STE]``,
  joined by a gated fusion, plus a residual;
* transform attention between them: each future step (query: its STE)
  attends over the encoded past steps (keys: their STE, values: the encoder
  output) of the same sensor;
* output: two FC layers to ``C_out``.

Every FC layer is a 1x1 convolution in the official code: ``Linear``, and on
layers with a ReLU, batch normalisation (over all batch, step and sensor
positions, eps 1e-3 as TF; PyTorch's momentum 0.1 instead of the official
decay schedule) before the ReLU. Layers without activation have no batch
norm. By default FC pairs use ReLU on both layers except the output pair and
the temporal attention is unmasked (``model.py`` at the repository root);
``METR/model.py``, used for METR-LA, leaves the second ReLU out
(``second_relu=False``), masks the temporal attention causally
(``temporal_mask=True``) and drops 10% before the output layers
(``output_dropout=0.1``). Attention runs through
:func:`torch.nn.functional.scaled_dot_product_attention` (dense ``N x N`` for
the spatial one, which is the paper's definition).

Implementation detail: a linear map of ``[X, STE]`` is computed as
``W_x X + W_s SE + W_s TE`` (``STE = SE + TE`` broadcast), which never
materialises the concatenation and is the same function.

Parameters at METR-LA size (N=207, T_in=T_out=12, C_in=C_out=1, 288 slots,
K=8, d=8):

* L=1 (the default here, as the official generic ``train.py`` and
  ``PeMS/train.py``): 244,097 = 230,849 of the official architecture
  (counted by us from the official ``model.py``; the code logs the figure at
  run time, we found it printed nowhere) + 13,248 for the sensor table;
* L=3 (``num_blocks=3``): 581,249 here (568,001 official + 13,248), within
  1.5% of the "about 573k" quoted for GMAN on METR-LA in benchmark tables,
  which is consistent with L=3 (we could not trace that figure's source);
* the official METR-LA setup (``METR/train.py``: L=5, with ``METR/model.py``;
  see :class:`GMAN`): 914,049 here = 900,801 official + 13,248.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.calendar import tod_slot
from ..nn.temporal import attention
from .registry import check_input, register


class FC(nn.Module):
    r"""One FC (1x1 convolution) layer of GMAN: ``Linear``, then on activated
    layers ``BatchNorm`` over every position and ``ReLU``.

    Args:
        in_dim, out_dim: feature sizes.
        relu: apply batch norm (if ``batch_norm``) and ReLU after the linear map.
        bias: linear bias.
        batch_norm: use batch norm on activated layers (the official code does).
        bn_momentum: PyTorch batch-norm momentum.

    Shapes:
        - input: ``[..., in_dim]``
        - output: ``[..., out_dim]``
    """

    def __init__(self, in_dim: int, out_dim: int, relu: bool = True, bias: bool = True,
                 batch_norm: bool = True, bn_momentum: float = 0.1):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim, bias=bias)
        self.relu = relu
        self.bn = nn.BatchNorm1d(out_dim, eps=1e-3, momentum=bn_momentum) if relu and batch_norm else None

    def reset_parameters(self) -> None:
        """Glorot-uniform weights and zero biases (the TF code's initialisers)."""
        nn.init.xavier_uniform_(self.linear.weight)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)
        if self.bn is not None:
            self.bn.reset_parameters()

    def activate(self, y: torch.Tensor) -> torch.Tensor:
        """Batch norm and ReLU of a linear output ``y`` ``[..., out_dim]``."""
        if self.bn is not None:
            y = self.bn(y.reshape(-1, y.size(-1))).view(y.shape)
        return F.relu(y) if self.relu else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.linear(x))


def _fc2(in_dim: int, dim: int, out_dim: int, last_relu: bool, dropout: float = 0.0,
         **kw) -> nn.Sequential:
    """Two FC layers (the first with ReLU), optionally each after a dropout."""
    layers = [nn.Dropout(dropout), FC(in_dim, dim, True, **kw), nn.Dropout(dropout),
              FC(dim, out_dim, last_relu, **kw)]
    return nn.Sequential(*(m for m in layers if not isinstance(m, nn.Dropout) or dropout > 0))


def _reset(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, FC):
            m.reset_parameters()


def _ste_linear(weight: torch.Tensor, bias: Optional[torch.Tensor], se: torch.Tensor,
                te: torch.Tensor) -> torch.Tensor:
    """``W (SE + TE) + b`` for ``se`` ``[N, D]`` and ``te`` ``[B, T, D]`` -> ``[B, T, N, out]``."""
    return F.linear(se, weight)[None, None] + F.linear(te, weight, bias)[:, :, None]


class GMANAttention(nn.Module):
    r"""GMAN's spatial (``axis='node'``, all sensor pairs of each step) or
    temporal (``axis='time'``, all step pairs of each sensor) attention.
    Queries, keys and values are ReLU-FC maps of ``[X, STE]``; the heads'
    output goes through two FC layers.

    Args:
        dim: ``D = heads * head_dim``.
        heads: attention heads ``K``.
        axis: ``'node'`` or ``'time'``.
        causal: temporal only: step ``t`` attends to steps ``<= t``.
        second_relu: ReLU (and batch norm) on the second output FC layer.
        **kw: batch-norm options of :class:`FC`.

    Shapes:
        - input: ``x`` ``[B, T, N, D]``, ``se`` ``[N, D]``, ``te`` ``[B, T, D]``
        - output: ``[B, T, N, D]``
    """

    def __init__(self, dim: int, heads: int, axis: str, causal: bool = False,
                 second_relu: bool = True, **kw):
        super().__init__()
        if axis not in ("time", "node"):
            raise ValueError(f"axis must be 'time' or 'node', got {axis!r}")
        self.dim, self.heads, self.axis, self.causal = dim, heads, axis, causal and axis == "time"
        self.qkv = FC(2 * dim, 3 * dim, True, **kw)  # the three FC(2D -> D, ReLU) side by side
        self.out = _fc2(dim, dim, dim, second_relu, **kw)

    def reset_parameters(self) -> None:
        _reset(self)

    def forward(self, x: torch.Tensor, se: torch.Tensor, te: torch.Tensor) -> torch.Tensor:
        B, T, N, D = x.shape
        H = self.heads
        w, b = self.qkv.linear.weight, self.qkv.linear.bias
        y = F.linear(x, w[:, :D]) + _ste_linear(w[:, D:], b, se, te)  # = W [X, STE] + b
        qkv = self.qkv.activate(y).view(B, T, N, 3, H, D // H)
        # SDPA takes its fused CPU kernel only for 4-D inputs: fold the batch dims.
        if self.axis == "node":  # q, k, v [B*T, H, N, d] (strided views, no copy)
            q, k, v = (qkv[:, :, :, i].reshape(B * T, N, H, D // H).transpose(1, 2) for i in range(3))
            out = attention(q, k, v).transpose(1, 2)  # [B*T, N, H, d]
        else:  # q, k, v [B*N, H, T, d]
            q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).reshape(3, B * N, H, T, D // H)
            out = attention(q, k, v, causal=self.causal).view(B, N, H, T, D // H).permute(0, 3, 1, 2, 4)
        return self.out(out.reshape(B, T, N, D))


class STAttBlock(nn.Module):
    r"""Spatial and temporal attention joined by gated fusion, plus a residual:
    :math:`z = \sigma(H_S W_s + H_T W_t + b)`,
    :math:`x + \mathrm{FC}_2(z H_S + (1 - z) H_T)`.

    Shapes:
        - input: ``x`` ``[B, T, N, D]``, ``se`` ``[N, D]``, ``te`` ``[B, T, D]``
        - output: ``[B, T, N, D]``
    """

    def __init__(self, dim: int, heads: int, causal: bool = False, second_relu: bool = True, **kw):
        super().__init__()
        self.spatial = GMANAttention(dim, heads, "node", False, second_relu, **kw)
        self.temporal = GMANAttention(dim, heads, "time", causal, second_relu, **kw)
        self.gate_s = FC(dim, dim, relu=False, bias=False, **kw)
        self.gate_t = FC(dim, dim, relu=False, bias=True, **kw)
        self.fuse = _fc2(dim, dim, dim, second_relu, **kw)

    def reset_parameters(self) -> None:
        _reset(self)

    def forward(self, x: torch.Tensor, se: torch.Tensor, te: torch.Tensor) -> torch.Tensor:
        hs = self.spatial(x, se, te)
        ht = self.temporal(x, se, te)
        z = torch.sigmoid(self.gate_s(hs) + self.gate_t(ht))
        return x + self.fuse(ht + z * (hs - ht))


class TransformAttention(nn.Module):
    r"""Each future step of a sensor attends over the encoded past steps of the
    same sensor: query ``FC(STE_out)``, key ``FC(STE_in)``, value ``FC(X)``.

    Shapes:
        - input: ``x`` ``[B, T_in, N, D]``, ``se`` ``[N, D]``,
          ``te_in`` ``[B, T_in, D]``, ``te_out`` ``[B, T_out, D]``
        - output: ``[B, T_out, N, D]``
    """

    def __init__(self, dim: int, heads: int, second_relu: bool = True, **kw):
        super().__init__()
        self.heads = heads
        self.q = FC(dim, dim, True, **kw)
        self.k = FC(dim, dim, True, **kw)
        self.v = FC(dim, dim, True, **kw)
        self.out = _fc2(dim, dim, dim, second_relu, **kw)

    def reset_parameters(self) -> None:
        _reset(self)

    def forward(self, x: torch.Tensor, se: torch.Tensor, te_in: torch.Tensor,
                te_out: torch.Tensor) -> torch.Tensor:
        B, P, N, D = x.shape
        Q, H = te_out.size(1), self.heads
        q = self.q.activate(_ste_linear(self.q.linear.weight, self.q.linear.bias, se, te_out))
        k = self.k.activate(_ste_linear(self.k.linear.weight, self.k.linear.bias, se, te_in))
        v = self.v(x)
        fold = lambda t, L: t.view(B, L, N, H, D // H).permute(0, 2, 3, 1, 4).reshape(B * N, H, L, D // H)
        out = attention(fold(q, Q), fold(k, P), fold(v, P))  # [B*N, H, Q, d]
        out = out.view(B, N, H, Q, D // H).permute(0, 3, 1, 2, 4).reshape(B, Q, N, D)
        return self.out(out)


@register("gman")
class GMAN(nn.Module):
    r"""Graph multi-attention network (GMAN), encoder-decoder.

    Args:
        num_nodes: sensors ``N``.
        in_channels: input channels ``C_in`` of ``x`` (the paper: 1).
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in`` (P).
        horizon: forecast steps ``T_out`` (Q).
        steps_per_day: time-of-day slots ``T`` of the one-hot encoding (288).
        num_blocks: ST-attention blocks ``L`` in the encoder and in the decoder (1).
        heads: attention heads ``K`` (8).
        head_dim: size ``d`` of each head (8); ``D = K * d``.
        node_emb_dim: size of the learnable sensor table (``None``: ``D``, as
            the official node2vec vectors).
        batch_norm: batch norm in the ReLU FC layers (True, as the official code).
        bn_momentum: PyTorch batch-norm momentum.
        temporal_mask: causal temporal attention (False).
        second_relu: ReLU (and batch norm) on the second layer of every FC
            pair but the output one (True, as the root ``model.py``).
        output_dropout: dropout before each of the two output FC layers (0).

    The official METR-LA setup (``METR/train.py`` + ``METR/model.py``) is
    ``num_blocks=5, temporal_mask=True, second_relu=False, output_dropout=0.1``.

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``covariates`` with ``tod_in``/
          ``dow_in`` ``[B, T_in]`` and ``tod_out``/``dow_out`` ``[B, T_out]``
          (tod float in ``[0, 1)``, dow int64 0-6); ``graph`` unused
        - output: ``[B, T_out, N, C_out]`` in z-score units.
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, steps_per_day: int = 288, num_blocks: int = 1, heads: int = 8,
                 head_dim: int = 8, node_emb_dim: Optional[int] = None, batch_norm: bool = True,
                 bn_momentum: float = 0.1, temporal_mask: bool = False, second_relu: bool = True,
                 output_dropout: float = 0.0):
        super().__init__()
        D = heads * head_dim
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon, self.steps_per_day, self.dim = input_len, horizon, steps_per_day, D
        kw = dict(batch_norm=batch_norm, bn_momentum=bn_momentum)
        r2 = second_relu
        self.node_emb = nn.Parameter(torch.empty(num_nodes, node_emb_dim or D))
        self.se_fc = _fc2(node_emb_dim or D, D, D, r2, **kw)
        self.te_fc = _fc2(7 + steps_per_day, D, D, r2, **kw)  # input: one-hot dow ++ one-hot tod
        self.input_fc = _fc2(in_channels, D, D, r2, **kw)
        block = lambda: STAttBlock(D, heads, temporal_mask, r2, **kw)
        self.encoder = nn.ModuleList([block() for _ in range(num_blocks)])
        self.transform = TransformAttention(D, heads, r2, **kw)
        self.decoder = nn.ModuleList([block() for _ in range(num_blocks)])
        self.output_fc = _fc2(D, D, out_channels, False, output_dropout, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform FC weights, zero biases, unit batch-norm scales; the
        sensor table ~ N(0, 1) (it only feeds a batch-normalised FC layer)."""
        nn.init.normal_(self.node_emb)
        _reset(self)

    def spatio_temporal_embedding(self, covariates: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The STE as its two summands: ``se`` ``[N, D]`` and ``te`` ``[B, T_in + T_out, D]``."""
        se = self.se_fc(self.node_emb)
        tod = torch.cat([covariates["tod_in"], covariates["tod_out"]], dim=1)
        dow = torch.cat([covariates["dow_in"], covariates["dow_out"]], dim=1).long().clamp(0, 6)
        first = self.te_fc[0]
        w = first.linear.weight.t()  # [7 + S, D]: FC of a two-hot vector = sum of two rows
        y = w[dow] + w[7 + tod_slot(tod, self.steps_per_day)] + first.linear.bias
        te = self.te_fc[1](first.activate(y))
        return se, te

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        B, T, N, C = check_input(self, x)
        se, te = self.spatio_temporal_embedding(covariates)
        te_in, te_out = te[:, :T], te[:, T:]
        h = self.input_fc(x)
        for blk in self.encoder:
            h = blk(h, se, te_in)
        h = self.transform(h, se, te_in, te_out)
        for blk in self.decoder:
            h = blk(h, se, te_out)
        return self.output_fc(h)  # [B, T_out, N, C_out]
