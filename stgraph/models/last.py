"""Last observed value (persistence): every future step repeats the last input step.

The simplest baseline of the traffic-forecasting literature ("copy last
frame"); DCRNN (Li et al., ICLR 2018) and later papers report it as a floor.
No parameters, nothing to train.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .registry import register


@register("last")
class LastValue(nn.Module):
    r"""Persistence forecast.

    Args:
        horizon: forecast steps ``T_out``.
        target_channels: index in ``x``'s channels of each of the ``C_out`` targets.

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]`` (z-scored, as the trainer gives it)
        - output: ``[B, T_out, N, C_out]`` in the same z-score units.

    Note: a reading missing at the last step was set to 0 (the training mean)
    by the data layer, so the forecast there is the mean.
    """

    def __init__(self, horizon: int, target_channels: Optional[Sequence[int]] = (0,)):
        super().__init__()
        if target_channels is None:
            raise ValueError("last value needs the targets among the input channels; "
                             "add the target channel to data's input channels")
        self.horizon = int(horizon)
        self.register_buffer("channels", torch.tensor(list(target_channels), dtype=torch.long), persistent=False)

    def reset_parameters(self) -> None:
        pass

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        last = x[:, -1:].index_select(-1, self.channels)  # [B, 1, N, C_out]
        return last.expand(-1, self.horizon, -1, -1)
