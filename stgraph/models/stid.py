"""STID: spatial-temporal identity, an MLP baseline for traffic forecasting.

Shao, Zhang, Wang, Wei, Xu: "Spatial-Temporal Identity: A Simple yet
Effective Baseline for Multivariate Time Series Forecasting", CIKM 2022.
Defaults follow the paper and the official code (github.com/zezhishao/STID,
also BasicTS ``baselines/STID``, METR-LA config): every sensor's input window
is flattened and embedded by one linear layer (32), and concatenated with
three learned identities: the sensor (32), the time of day (32) and the day of
week (32) of the LAST input step. Three residual MLP layers of width 128
(``Linear -> ReLU -> Dropout(0.15) -> Linear`` plus the input) follow, then a
linear regression layer gives all ``horizon`` steps at once. The official
code writes the linear layers as 1x1 convolutions; they are the same maps.

Calendar covariates come from ``covariates`` here, not as extra input
channels: the official METR-LA config feeds ``[speed, tod, dow]`` (3 channels)
to the series embedding as well, our ``in_channels`` counts data channels
only. Only ``tod_in[:, -1]`` and ``dow_in[:, -1]`` are read (as in the
paper); the future calendar follows from them for contiguous windows.

Parameters at METR-LA size (N=207, T_in=T_out=12, C_in=C_out=1, 288 slots):
117,100 here. Published: 117,868 for the official METR-LA config (input_dim 3,
so its series embedding has 24 * 32 = 768 more weights), counted from the
official architecture (BasicTS ``baselines/STID/arch/stid_arch.py`` with
``baselines/STID/METR-LA.py``); the "about 118k" of benchmark tables.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.calendar import tod_slot
from .registry import check_input, register


class ResidualMLP(nn.Module):
    r"""STID's encoder layer: :math:`x + W_2\,\mathrm{Drop}(\mathrm{ReLU}(W_1 x))`.

    Args:
        dim: feature size (input, hidden and output).
        dropout: dropout on the hidden activation.

    Shapes:
        - input: ``[..., dim]``
        - output: ``[..., dim]``
    """

    def __init__(self, dim: int, dropout: float = 0.15):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.drop(F.relu(self.fc1(x))))


@register("stid")
class STID(nn.Module):
    r"""Spatial-temporal identity MLP (STID).

    Args:
        num_nodes: sensors ``N``.
        in_channels: input channels ``C_in`` of ``x``.
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in``.
        horizon: forecast steps ``T_out``.
        steps_per_day: time-of-day slots (288 for 5-minute data).
        embed_dim: size of the series embedding (paper: 32).
        node_dim: size of the sensor identity (32; 0 leaves it out).
        tod_dim: size of the time-of-day identity (32; 0 leaves it out).
        dow_dim: size of the day-of-week identity (32; 0 leaves it out).
        num_layers: residual MLP layers (3).
        dropout: dropout inside each MLP layer (0.15).

    The hidden width is ``embed_dim + node_dim + tod_dim + dow_dim`` (128).

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``covariates['tod_in']``
          ``[B, T_in]`` float in ``[0, 1)``, ``covariates['dow_in']``
          ``[B, T_in]`` int64 (only the last step is read); ``graph`` unused
        - output: ``[B, T_out, N, C_out]`` in z-score units.
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, steps_per_day: int = 288, embed_dim: int = 32, node_dim: int = 32,
                 tod_dim: int = 32, dow_dim: int = 32, num_layers: int = 3, dropout: float = 0.15):
        super().__init__()
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon, self.steps_per_day = input_len, horizon, steps_per_day
        self.node_emb = nn.Parameter(torch.empty(num_nodes, node_dim)) if node_dim > 0 else None
        self.tod_emb = nn.Parameter(torch.empty(steps_per_day, tod_dim)) if tod_dim > 0 else None
        self.dow_emb = nn.Parameter(torch.empty(7, dow_dim)) if dow_dim > 0 else None
        self.series_emb = nn.Linear(input_len * in_channels, embed_dim)
        self.hidden = embed_dim + max(node_dim, 0) + max(tod_dim, 0) + max(dow_dim, 0)
        self.encoder = nn.ModuleList([ResidualMLP(self.hidden, dropout) for _ in range(num_layers)])
        self.regression = nn.Linear(self.hidden, horizon * out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform identities (as the official code); PyTorch's default
        initialisation for the linear layers (that of the official 1x1 convolutions)."""
        for emb in (self.node_emb, self.tod_emb, self.dow_emb):
            if emb is not None:
                nn.init.xavier_uniform_(emb)
        self.series_emb.reset_parameters()
        for layer in self.encoder:
            layer.reset_parameters()
        self.regression.reset_parameters()

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        B, T, N, C = check_input(self, x)
        parts = [self.series_emb(x.transpose(1, 2).reshape(B, N, T * C))]  # [B, N, E]
        if self.node_emb is not None:
            parts.append(self.node_emb.expand(B, -1, -1))
        if self.tod_emb is not None:
            slot = tod_slot(covariates["tod_in"][:, -1], self.steps_per_day)  # [B]
            parts.append(self.tod_emb[slot][:, None, :].expand(-1, N, -1))
        if self.dow_emb is not None:
            dow = covariates["dow_in"][:, -1].long().clamp(0, 6)
            parts.append(self.dow_emb[dow][:, None, :].expand(-1, N, -1))
        h = torch.cat(parts, dim=-1)  # [B, N, hidden]
        for layer in self.encoder:
            h = layer(h)
        out = self.regression(h).view(B, N, self.horizon, self.out_channels)
        return out.transpose(1, 2)  # [B, T_out, N, C_out]
