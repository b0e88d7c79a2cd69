"""Graph WaveNet: dilated causal convolutions and diffusion graph convolutions.

Wu, Pan, Long, Jiang, Zhang, "Graph WaveNet for Deep Spatial-Temporal Graph
Modeling", IJCAI 2019. The defaults are the paper's and those of the authors'
code (github.com/nnzhengzhao/Graph-WaveNet, ``train.py`` with
``--gcn_bool --addaptadj --randomadj --adjtype doubletransition``): speed plus
time of day as the 2 input features; 4 blocks of 2 layers (8 layers, kernel 2,
dilations 1, 2, 1, 2, ...); residual and dilation channels 32, skip channels
256, end channels 512; dropout 0.3 after each graph convolution.

Each layer: gated TCN ``tanh(conv_f(x)) * sigmoid(conv_g(x))`` (a dilated
causal convolution of kernel 2 along time), a skip projection of its output,
then a graph convolution with diffusion order 2 on three supports, the
residual, and batch normalisation. Supports: the forward and backward
transition matrices of the weighted adjacency (the same operators as DCRNN's,
see :func:`stgraph.nn.graph_ops.random_walk_operators`: ``x <- P^T x``, as the
authors' ``nconv`` computes ``einsum('ncvl,vw->ncwl', x, A)``), and the
adaptive adjacency ``A = softmax(relu(E1 E2^T))`` (softmax over each row) of
two learned 10-dimensional node embeddings. The graph convolution
concatenates ``x``, ``A x`` and ``A^2 x`` for each support (7 blocks of
channels) and mixes them with a 1x1 convolution. The transition matrices are
sparse and cached per graph; the adaptive one is dense by definition.

The input window is left-padded with zeros to the receptive field (13 steps
for the defaults), so the last layer leaves one time step, which the output
head (``relu -> 1x1 conv 256->512 -> relu -> 1x1 conv 512->T_out*C_out``)
maps to all horizon steps at once. Since only that last step reaches the
head, the skip projections are applied to each layer's last step only
(identical output, 8 fewer large products). With a longer input the head
reads the last step as well.

Layout: the model runs node-major (``[N, B, T, C]``), so that every graph
product is one matrix product on a ``[N, B*T*C]`` view; the 1x1 and
dilated convolutions are ``nn.Linear`` maps of the channels (a kernel-2
convolution is a linear map of the concatenation of ``x[t - d]`` and ``x[t]``).

Parameters at METR-LA size (``N = 207``, speed + time of day in, 12 -> 12
steps): 293,688 here; the paper's code has 309,400. The difference, 15,712,
is parameters that the code creates but never uses, left out here: eight
``residual_convs`` (32 -> 32, 8,448; only used without graph convolution) and
the last layer's graph convolution and batch norm (7,264), whose output no
path reads (the head sees the skip sum only).
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.calendar import append_time_of_day
from ..nn.graph_ops import GraphCache, diffuse, random_walk_operators
from ..nn.window_graphs import per_window, window_operators
from .registry import check_input, register


class GatedTCN(nn.Module):
    r"""Dilated causal convolution of kernel 2 with a tanh-sigmoid gate.

    ``y[t] = tanh(W_f [x[t-d], x[t]] + b_f) * sigmoid(W_g [x[t-d], x[t]] + b_g)``
    for ``t = d .. T-1``.

    Args:
        in_channels, out_channels: ``C``, ``C'``.
        dilation: ``d``.

    Shapes:
        - input: ``[N, B, T, C]``
        - output: ``[N, B, T - d, C']``
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.lin = nn.Linear(2 * in_channels, 2 * out_channels)  # filter | gate

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation
        pair = torch.cat([x[:, :, :-d], x[:, :, d:]], dim=-1)
        f, g = self.lin(pair).chunk(2, dim=-1)
        return torch.tanh(f) * torch.sigmoid(g)


class DiffusionGraphConv(nn.Module):
    r"""Graph WaveNet's ``gcn``: ``x``, ``A x`` and ``A^2 x`` for each support,
    concatenated and mixed by a linear map, then dropout.

    Args:
        in_channels, out_channels: ``C``, ``C'``.
        num_supports: ``S`` (sparse ones plus the adaptive one).
        order: diffusion order (2).
        dropout: applied to the output.

    Shapes:
        - input: ``x`` ``[N, *, C]``; ``supports``: callables ``[N, *] -> [N, *]``
        - output: ``[N, *, C']``
    """

    def __init__(self, in_channels: int, out_channels: int, num_supports: int, order: int = 2,
                 dropout: float = 0.3):
        super().__init__()
        self.order = order
        self.mlp = nn.Linear((order * num_supports + 1) * in_channels, out_channels)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, x: torch.Tensor, supports) -> torch.Tensor:
        return self.dropout(self.mlp(diffuse(x, supports, self.order)))


class _Dense:
    """A dense ``[N, N]`` matrix ``A`` applied as ``y[w] = sum_v A[v, w] x[v]`` (``A^T x``)."""

    def __init__(self, adj: torch.Tensor):
        self.adj_t = adj.t()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (self.adj_t @ x.reshape(x.size(0), -1)).view(x.shape)


@register("gwnet")
class GraphWaveNet(nn.Module):
    r"""Graph WaveNet.

    Args:
        num_nodes: sensors ``N``.
        in_channels: input channels ``C_in`` of ``x``.
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in``.
        horizon: forecast steps ``T_out``.
        residual_channels, dilation_channels, skip_channels, end_channels: 32, 32, 256, 512.
        blocks, layers: 4 blocks of 2 layers; layer ``i`` of a block has dilation ``2^i``.
        kernel_size: must be 2 (the paper's and the code's).
        dropout: after each graph convolution (0.3).
        embed_dim: size of the node embeddings of the adaptive adjacency (10).
        adaptive: use the adaptive adjacency (True).
        graph_supports: use the forward/backward transition matrices (True).
        time_of_day: append ``covariates['tod_in']`` to the input (True).
        self_loops: weight-1 self loops before normalising, as in the METR-LA
            adjacency of the DCRNN release that the paper uses (True).

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``graph`` with ``edge_index``
          ``[2, E]`` and optionally ``edge_weight`` ``[E]``; ``covariates`` with
          ``tod_in`` ``[B, T_in]``
        - output: ``[B, T_out, N, C_out]`` (z-score units)
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, residual_channels: int = 32, dilation_channels: int = 32,
                 skip_channels: int = 256, end_channels: int = 512, blocks: int = 4, layers: int = 2,
                 kernel_size: int = 2, dropout: float = 0.3, embed_dim: int = 10,
                 adaptive: bool = True, graph_supports: bool = True, time_of_day: bool = True,
                 self_loops: bool = True):
        super().__init__()
        if kernel_size != 2:
            raise ValueError(f"kernel_size = {kernel_size}: only 2 (the paper's) is implemented; set "
                             f"model.params.kernel_size=2 (or leave it out)")
        if not (adaptive or graph_supports):
            raise ValueError("need the adaptive adjacency, the graph supports, or both: set model.params.adaptive=true "
                             "or model.params.graph_supports=true")
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon = input_len, horizon
        self.time_of_day, self.adaptive, self.graph_supports = time_of_day, adaptive, graph_supports
        self.dilations = [2 ** i for _ in range(blocks) for i in range(layers)]
        self.receptive_field = 1 + sum(self.dilations)
        num_supports = 2 * graph_supports + adaptive

        self.start = nn.Linear(in_channels + (1 if time_of_day else 0), residual_channels)
        if adaptive:
            self.node_emb1 = nn.Parameter(torch.empty(num_nodes, embed_dim))
            self.node_emb2 = nn.Parameter(torch.empty(num_nodes, embed_dim))
        self.tcn = nn.ModuleList([GatedTCN(residual_channels, dilation_channels, d) for d in self.dilations])
        self.skip = nn.ModuleList([nn.Linear(dilation_channels, skip_channels) for _ in self.dilations])
        # the last layer's graph conv, residual and norm would feed nothing: left out
        self.gconv = nn.ModuleList([DiffusionGraphConv(dilation_channels, residual_channels, num_supports,
                                                       2, dropout) for _ in self.dilations[:-1]])
        self.norm = nn.ModuleList([nn.BatchNorm1d(residual_channels) for _ in self.dilations[:-1]])
        self.end1 = nn.Linear(skip_channels, end_channels)
        self.end2 = nn.Linear(end_channels, horizon * out_channels)
        self._supports = GraphCache(functools.partial(random_walk_operators, self_loops=self_loops))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default (Kaiming-uniform) layers as in the authors' code,
        standard-normal node embeddings."""
        self.start.reset_parameters()
        if self.adaptive:
            nn.init.normal_(self.node_emb1)
            nn.init.normal_(self.node_emb2)
        for mods in (self.tcn, self.skip, self.gconv, self.norm):
            for m in mods:
                m.reset_parameters()
        self.end1.reset_parameters()
        self.end2.reset_parameters()

    def adaptive_adjacency(self) -> torch.Tensor:
        """``softmax(relu(E1 E2^T))`` ``[N, N]``, rows sum to 1."""
        return F.softmax(F.relu(self.node_emb1 @ self.node_emb2.t()), dim=1)

    def forward(self, x: torch.Tensor, graph, covariates: dict) -> torch.Tensor:
        r"""Forecast all ``T_out`` steps at once.

        Args:
            x: ``[B, T_in, N, C_in]`` z-scored inputs.
            graph: ``edge_index`` ``[2, E]`` (source -> target), ``edge_weight`` ``[E]`` or absent; or one
                graph per window (:mod:`stgraph.nn.window_graphs`): per-window fixed supports, the adaptive
                adjacency unchanged.
            covariates: ``tod_in`` ``[B, T_in]`` in ``[0, 1)`` (others unused).

        Returns:
            ``[B, T_out, N, C_out]``.
        """
        B, T, N, C = check_input(self, x)
        supports = [] if not self.graph_supports else (  # per-window graphs: block-diagonal sparse supports
            window_operators(graph, self._supports.build) if per_window(graph) else list(self._supports(graph, N)))
        if self.adaptive:
            supports.append(_Dense(self.adaptive_adjacency()))
        if self.time_of_day:
            x = append_time_of_day(x, covariates["tod_in"])
        x = x.permute(2, 0, 1, 3)  # [N, B, T, C]
        if T < self.receptive_field:  # zeros before the window, as in the authors' code
            x = F.pad(x, (0, 0, self.receptive_field - T, 0))
        h = self.start(x)  # [N, B, T', C_res]

        skip = 0
        for i, (tcn, skip_lin) in enumerate(zip(self.tcn, self.skip)):
            residual = h
            h = tcn(h)  # [N, B, T', C_dil]
            skip = skip + skip_lin(h[:, :, -1])  # only the last step reaches the head
            if i == len(self.gconv):
                break  # the last layer only feeds the skip path
            h = self.gconv[i](h, supports) + residual[:, :, -h.size(2):]
            h = self.norm[i](h.reshape(-1, h.size(-1))).view(h.shape)

        out = self.end2(F.relu(self.end1(F.relu(skip))))  # [N, B, T_out * C_out]
        return out.view(N, B, self.horizon, self.out_channels).permute(1, 2, 0, 3)
