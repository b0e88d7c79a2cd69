"""STGCN: spatio-temporal graph convolutional networks.

Yu, Yin, Zhu, "Spatio-Temporal Graph Convolutional Networks: A Deep Learning
Framework for Traffic Forecasting", IJCAI 2018. Authors' code:
github.com/VeritasYin/STGCN_IJCAI-18. Defaults are the paper's (section 4.3):
two ST-Conv blocks whose three layers have 64, 16 and 64 channels, temporal
kernel ``Kt = 3``, Chebyshev order ``Ks = 3``, speed only as input.

ST-Conv block ("sandwich", paper eq. 8)::

    gated temporal conv (C -> 64) -> Chebyshev graph conv (64 -> 16) + ReLU
      -> gated temporal conv (16 -> 64) -> layer norm over (sensors, channels) -> dropout

A gated temporal convolution (paper eq. 7) is a convolution of kernel ``Kt``
along time without padding (``T -> T - Kt + 1``) giving ``[P, Q]`` and returns
``(P + x_res) * sigmoid(Q)``, GLU with the input as residual. As in the
authors' code, the residual ``x_res`` is the input cropped to the last
``T - Kt + 1`` steps and brought to the output width by zero-padding the
channels (widening) or a bias-free 1x1 convolution (narrowing); the graph
convolution has the same kind of residual before its ReLU, and the layer norm
has a scale and shift per (sensor, channel). The output layer is the code's:
a gated temporal convolution over the remaining ``T_in - 8`` steps, layer
norm, a 1x1 convolution with sigmoid, and a linear map to the forecast. The
code predicts one step and rolls forward for longer horizons; here the last
map outputs all ``T_out * C_out`` values at once, as the PyTorch
re-implementations used in benchmarks (e.g. BasicTS) do.

Differences from the authors' code: it trains the paper's model with channels
``[[1, 32, 64], [64, 32, 128]]``, a ReLU (not gated) second temporal
convolution and a graph convolution that keeps its width; the defaults here
follow the paper's text instead. Dropout is 0 (the code trains with
``keep_prob = 1``).

Graph convolution (paper eq. 5): ``sum_k T_k(L~) x Theta_k`` for ``k < Ks``
with the Chebyshev polynomials ``T_0 = I``, ``T_1 = L~``,
``T_k = 2 L~ T_{k-1} - T_{k-2}`` of the scaled Laplacian
``L~ = 2 L / lambda_max - I``, ``L = I - D^-1/2 W D^-1/2``. The spectral
filter needs an undirected graph, so ``W`` is symmetrised
(``W[u, v] = W[v, u] = max`` of the two directions; an undirected graph given
with both directions is unchanged) and self loops are dropped (the code zeroes
the diagonal). ``lambda_max`` is the largest eigenvalue of ``L`` (the code
uses ``scipy.sparse.linalg.eigs``), estimated here by power iteration on the
sparse ``L``, or given. ``L~`` is a sparse CSR matrix built once per graph
and cached (:class:`~stgraph.nn.graph_ops.GraphCache`,
:func:`~stgraph.nn.graph_ops.scaled_laplacian`).

Parameter count: neither the paper nor the authors' code states one. At
METR-LA size (``N = 207``, 1 input channel, 12 -> 12 steps) this model has
163,308 parameters, 79,488 of them in the three per-(sensor, channel) layer
norms. (Counting the layers of the code's own configuration, single-step
output on PeMSD7(M) with ``N = 228``, gives 333,604; most of the difference
is its 128-channel output layer.)
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.graph_ops import GraphCache, SparseOperator, scaled_laplacian
from ..nn.window_graphs import per_window, window_laplacian
from .registry import check_input, register


class Align(nn.Module):
    r"""The residual path of a layer: zero-pad the channels up, or a bias-free
    linear map (1x1 convolution) down, or identity.

    Shapes: ``[*, C]`` -> ``[*, C']``
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.pad = max(0, out_channels - in_channels)
        self.proj = nn.Linear(in_channels, out_channels, bias=False) if in_channels > out_channels else None

    def reset_parameters(self) -> None:
        if self.proj is not None:
            nn.init.xavier_uniform_(self.proj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        return F.pad(x, (0, self.pad)) if self.pad else x


class TemporalConv(nn.Module):
    r"""Convolution of kernel ``Kt`` along time (no padding), then ``'glu'``:
    ``(P + x_res) * sigmoid(Q)``, or ``'sigmoid'``: ``sigmoid(P)``.

    Args:
        in_channels, out_channels: ``C``, ``C'``.
        kernel_size: ``Kt``.
        activation: ``'glu'`` or ``'sigmoid'``.

    Shapes:
        - input: ``[B, T, N, C]``
        - output: ``[B, T - Kt + 1, N, C']``
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, activation: str = "glu"):
        super().__init__()
        if activation not in ("glu", "sigmoid"):
            raise ValueError(f"activation must be 'glu' or 'sigmoid', got {activation!r} (model.params.activation)")
        self.kernel_size, self.activation, self.out_channels = kernel_size, activation, out_channels
        gated = activation == "glu"
        self.conv = nn.Linear(kernel_size * in_channels, (2 if gated else 1) * out_channels)
        self.align = Align(in_channels, out_channels) if gated else None

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        if self.align is not None:
            self.align.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, T = self.kernel_size, x.size(1)
        window = x if k == 1 else torch.cat([x[:, i:T - k + 1 + i] for i in range(k)], dim=-1)
        h = self.conv(window)
        if self.activation == "sigmoid":
            return torch.sigmoid(h)
        p, q = h.split(self.out_channels, dim=-1)
        return (p + self.align(x[:, k - 1:])) * torch.sigmoid(q)


class ChebGraphConv(nn.Module):
    r"""``relu(sum_k T_k(L~) x Theta_k + b + x_res)`` with the residual of :class:`Align`.

    Args:
        in_channels, out_channels: ``C``, ``C'``.
        order: ``Ks`` (number of Chebyshev terms).

    Shapes:
        - input: ``x`` ``[B, T, N, C]``, ``laplacian`` a sparse ``L~`` operator
        - output: ``[B, T, N, C']``
    """

    def __init__(self, in_channels: int, out_channels: int, order: int):
        super().__init__()
        if order < 1:
            raise ValueError(f"Chebyshev order Ks = {order}: set model.params.cheb_order to 1 or more")
        self.order = order
        self.theta = nn.Linear(order * in_channels, out_channels)
        self.align = Align(in_channels, out_channels)

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.theta.weight)
        nn.init.zeros_(self.theta.bias)
        self.align.reset_parameters()

    def forward(self, x: torch.Tensor, laplacian: SparseOperator) -> torch.Tensor:
        t0 = x.permute(2, 0, 1, 3).contiguous()  # [N, B, T, C]: node-major for the sparse products
        terms = [t0]
        if self.order > 1:
            terms.append(laplacian(t0))
        for _ in range(2, self.order):
            terms.append(2 * laplacian(terms[-1]) - terms[-2])
        h = self.theta(torch.cat(terms, dim=-1)).permute(1, 2, 0, 3)  # [B, T, N, C']
        return F.relu(h + self.align(x))


class STConvBlock(nn.Module):
    r"""Temporal gated conv -> graph conv -> temporal gated conv -> layer norm -> dropout.

    Args:
        num_nodes: ``N`` (the layer norm is over sensors and channels).
        in_channels: ``C``.
        channels: ``(C_t1, C_s, C_t2)``, widths of the three layers.
        kernel_size: ``Kt``; cheb_order: ``Ks``; dropout: after the norm.

    Shapes:
        - input: ``[B, T, N, C]``, sparse ``L~``
        - output: ``[B, T - 2(Kt - 1), N, C_t2]``
    """

    def __init__(self, num_nodes: int, in_channels: int, channels: Sequence[int], kernel_size: int,
                 cheb_order: int, dropout: float):
        super().__init__()
        c1, cs, c2 = channels
        self.temporal1 = TemporalConv(in_channels, c1, kernel_size)
        self.graph = ChebGraphConv(c1, cs, cheb_order)
        self.temporal2 = TemporalConv(cs, c2, kernel_size)
        self.norm = nn.LayerNorm([num_nodes, c2], eps=1e-6)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        for m in (self.temporal1, self.graph, self.temporal2, self.norm):
            m.reset_parameters()

    def forward(self, x: torch.Tensor, laplacian: SparseOperator) -> torch.Tensor:
        x = self.temporal2(self.graph(self.temporal1(x), laplacian))
        return self.dropout(self.norm(x))


def short_input(input_len: int, blocks: int, kernel_size: int) -> str:
    """Why ``input_len`` steps are too few for ``blocks`` ST-Conv blocks of temporal kernel ``kernel_size`` (each
    block takes ``2 * (kernel_size - 1)`` steps off) and which ``model.params`` fields make it fit."""
    need = 2 * blocks * (kernel_size - 1)
    fixes = []
    k = next((k for k in range(kernel_size - 1, 1, -1) if 2 * blocks * (k - 1) < input_len), None)
    if k is not None:
        fixes.append(f"model.params.kernel_size={k}")
    b = next((b for b in range(blocks - 1, 0, -1) if 2 * b * (kernel_size - 1) < input_len), None)
    if b is not None:
        fixes.append(f"model.params.blocks={b}")
    if not fixes and input_len > 2:
        fixes.append(f"model.params.kernel_size=2 and model.params.blocks={max(1, (input_len - 1) // 2)}")
    fixes.append(f"data.input_len={need + 1} or more")
    return (f"input_len={input_len} is too short for {blocks} blocks of kernel {kernel_size} (each takes "
            f"{2 * (kernel_size - 1)} steps off: more than {need} needed): set " + " or ".join(fixes))


@register("stgcn")
class STGCN(nn.Module):
    r"""STGCN with Chebyshev graph convolutions.

    Args:
        num_nodes: sensors ``N``.
        in_channels: input channels ``C_in`` of ``x``.
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in`` (more than ``2 * blocks * (Kt - 1)``).
        horizon: forecast steps ``T_out``.
        channels: widths ``(C_t1, C_s, C_t2)`` of each ST-Conv block (paper: 64, 16, 64).
        blocks: number of ST-Conv blocks (2).
        kernel_size: temporal kernel ``Kt`` (3).
        cheb_order: Chebyshev terms ``Ks`` (3).
        dropout: after each block's layer norm (0: the code's ``keep_prob = 1``).
        lambda_max: largest Laplacian eigenvalue; ``None`` estimates it per graph.

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``graph`` with ``edge_index``
          ``[2, E]`` and optionally ``edge_weight`` ``[E]`` (covariates unused)
        - output: ``[B, T_out, N, C_out]`` (z-score units)
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, channels: Sequence[int] = (64, 16, 64), blocks: int = 2,
                 kernel_size: int = 3, cheb_order: int = 3, dropout: float = 0.0,
                 lambda_max: Optional[float] = None):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 3:
            raise ValueError(f"channels must be three widths (temporal, spatial, temporal), got {channels}: set "
                             f"model.params.channels, e.g. [64, 16, 64]")
        self.out_len = input_len - 2 * blocks * (kernel_size - 1)  # steps left for the output layer
        if self.out_len < 1:
            raise ValueError(short_input(input_len, blocks, kernel_size))
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon = input_len, horizon
        c = channels[-1]
        self.blocks = nn.ModuleList([
            STConvBlock(num_nodes, in_channels if i == 0 else c, channels, kernel_size, cheb_order, dropout)
            for i in range(blocks)])
        self.out_temporal = TemporalConv(c, c, self.out_len)
        self.out_norm = nn.LayerNorm([num_nodes, c], eps=1e-6)
        self.out_conv = TemporalConv(c, c, 1, activation="sigmoid")
        self.out_fc = nn.Linear(c, horizon * out_channels)
        self._laplacian = GraphCache(functools.partial(scaled_laplacian, lambda_max=lambda_max))
        self._window_lambdas: dict = {}  # (dynamic graph key, period) -> estimated lambda_max
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights (TensorFlow's default in the authors' code),
        zero biases, unit/zero layer-norm affine."""
        for m in (*self.blocks, self.out_temporal, self.out_norm, self.out_conv):
            m.reset_parameters()
        nn.init.xavier_uniform_(self.out_fc.weight)
        nn.init.zeros_(self.out_fc.bias)

    def forward(self, x: torch.Tensor, graph, covariates: Optional[dict] = None) -> torch.Tensor:
        r"""Forecast all ``T_out`` steps at once.

        Args:
            x: ``[B, T_in, N, C_in]`` z-scored inputs.
            graph: ``edge_index`` ``[2, E]``, ``edge_weight`` ``[E]`` or absent; or one graph per window
                (:mod:`stgraph.nn.window_graphs`: a Laplacian per window, ``lambda_max`` per window).
            covariates: unused (STGCN reads the series only).

        Returns:
            ``[B, T_out, N, C_out]``.
        """
        B, T, N, C = check_input(self, x)
        lap = (window_laplacian(graph, self._laplacian.build.keywords["lambda_max"],
                                cache=self._window_lambdas) if per_window(graph)
               else self._laplacian(graph, N))
        for block in self.blocks:
            x = block(x, lap)
        x = self.out_conv(self.out_norm(self.out_temporal(x)))  # [B, 1, N, C]
        out = self.out_fc(x[:, 0])  # [B, N, T_out * C_out]
        return out.view(B, N, self.horizon, self.out_channels).transpose(1, 2)
