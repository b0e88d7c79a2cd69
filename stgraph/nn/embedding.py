"""Input, calendar and sensor embeddings.

Calendar covariates come from the trainer as ``tod`` (time of day, a fraction
in ``[0, 1)``) and ``dow`` (day of week, ``0 = Monday .. 6``), both ``[B, T]``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .calendar import tod_slot


class TimeEmbedding(nn.Module):
    r"""Sum of a time-of-day and a day-of-week embedding.

    The time-of-day slot is ``floor(tod * steps_per_day)`` clamped to
    ``[0, steps_per_day - 1]`` (a tolerance of 1e-3 of a slot absorbs float
    error in ``k / steps_per_day``).

    Args:
        steps_per_day: number of time-of-day slots (288 for 5-minute data).
        dim: embedding size ``D``.

    Shapes:
        - input: ``tod`` ``[B, T]`` float, ``dow`` ``[B, T]`` long
        - output: ``[B, T, 1, D]`` (broadcasts over sensors)
    """

    def __init__(self, steps_per_day: int, dim: int):
        super().__init__()
        self.steps_per_day = steps_per_day
        self.tod = nn.Embedding(steps_per_day, dim)
        self.dow = nn.Embedding(7, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.tod.weight, std=0.02)
        nn.init.normal_(self.dow.weight, std=0.02)

    def slot(self, tod: torch.Tensor) -> torch.Tensor:
        """Time-of-day fraction ``[B, T]`` -> slot index ``[B, T]`` long (:func:`~stgraph.nn.calendar.tod_slot`)."""
        return tod_slot(tod, self.steps_per_day)

    def forward(self, tod: torch.Tensor, dow: torch.Tensor) -> torch.Tensor:
        e = self.tod(self.slot(tod)) + self.dow(dow.long().clamp(0, 6))
        return e.unsqueeze(2)


class NodeEmbedding(nn.Module):
    r"""A learnable vector per sensor, optionally of a smaller size ``emb_dim``
    projected (linearly, no bias) to ``D``.

    Args:
        num_nodes: number of sensors ``N``.
        dim: output size ``D``.
        emb_dim: size of the stored vectors; ``None`` means ``D`` (no projection).

    Shapes:
        - input: none
        - output: ``[N, D]``
    """

    def __init__(self, num_nodes: int, dim: int, emb_dim: Optional[int] = None):
        super().__init__()
        emb_dim = dim if emb_dim is None else emb_dim
        self.weight = nn.Parameter(torch.empty(num_nodes, emb_dim))
        self.proj = nn.Linear(emb_dim, dim, bias=False) if emb_dim != dim else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)
        if self.proj is not None:
            nn.init.xavier_uniform_(self.proj.weight)

    def forward(self) -> torch.Tensor:
        return self.weight if self.proj is None else self.proj(self.weight)


class InputEmbedding(nn.Module):
    r"""Embeds the observed window:
    :math:`e_{b,t,n} = W x_{b,t,n} + b + E_{tod}[t] + E_{dow}[t] + E_{node}[n]`.

    Args:
        in_channels: input channels ``C_in``.
        dim: embedding size ``D``.
        num_nodes: number of sensors ``N``.
        steps_per_day: time-of-day slots.
        node_emb_dim: stored size of the sensor vectors (``None``: ``D``).

    Shapes:
        - input: ``x`` ``[B, T, N, C_in]``, ``tod`` ``[B, T]``, ``dow`` ``[B, T]``
        - output: ``[B, T, N, D]``

    The :attr:`time` and :attr:`node` submodules are reused by the decoder to
    build its queries from the future calendar.
    """

    def __init__(self, in_channels: int, dim: int, num_nodes: int, steps_per_day: int = 288,
                 node_emb_dim: Optional[int] = None):
        super().__init__()
        self.proj = nn.Linear(in_channels, dim)
        self.time = TimeEmbedding(steps_per_day, dim)
        self.node = NodeEmbedding(num_nodes, dim, node_emb_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.time.reset_parameters()
        self.node.reset_parameters()

    def forward(self, x: torch.Tensor, tod: torch.Tensor, dow: torch.Tensor) -> torch.Tensor:
        if x.size(2) != self.node.weight.size(0):
            raise ValueError(f"x has {x.size(2)} sensors, the model was built for "
                             f"{self.node.weight.size(0)}")
        return self.proj(x) + self.time(tod, dow) + self.node()
