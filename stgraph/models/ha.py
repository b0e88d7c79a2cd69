"""Historical average: the mean reading of each sensor at the same time of week in the training part.

A classical baseline of the traffic literature (reported e.g. in DCRNN, Li et
al., ICLR 2018, Table 2 as "HA"). Each future step is forecast by the
training-part average of the same sensor at the same (day of week, time of
day) slot, ignoring nulls; a slot never observed falls back to the same time
of day on any weekday, then to the sensor's overall mean. Fitted in closed
form by :meth:`fit_closed_form`, nothing to train.
"""
from __future__ import annotations

import torch
from torch import nn

from ..metrics import valid_mask
from ..nn.calendar import tod_slot
from .registry import ClosedForm, ClosedFormData, register


@register("ha")
class HistoricalAverage(ClosedForm, nn.Module):
    r"""Time-of-week average per sensor.

    Args:
        num_nodes: sensors ``N``.
        out_channels: forecast channels ``C_out``.
        steps_per_day: time-of-day slots ``S`` (288 at 5 minutes).

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]`` (unused), ``covariates['tod_out']``
          ``[B, T_out]`` in ``[0, 1)``, ``covariates['dow_out']`` ``[B, T_out]``
        - output: ``[B, T_out, N, C_out]`` in the targets' z-score units.
        - buffer ``table``: ``[7 * S, N, C_out]`` the fitted averages (z-scored).
    """

    def __init__(self, num_nodes: int, out_channels: int, steps_per_day: int = 288):
        super().__init__()
        self.steps_per_day = int(steps_per_day)
        self.register_buffer("table", torch.zeros(7 * self.steps_per_day, num_nodes, out_channels))

    def reset_parameters(self) -> None:
        self.table.zero_()

    def slot(self, tod: torch.Tensor, dow: torch.Tensor) -> torch.Tensor:
        """Time-of-week slot ``[...]`` int64 of time of day ``tod`` (``[0, 1)``) and day of week ``dow``."""
        return dow.long() * self.steps_per_day + tod_slot(tod, self.steps_per_day)

    @torch.no_grad()
    def fit_closed_form(self, fit: ClosedFormData) -> None:
        """Average the training rows (``fit.rows [T, N, C]``) per time-of-week slot, ignoring nulls."""
        y = fit.rows.float()  # [T, N, C] raw, a view
        valid = valid_mask(y, fit.null_value)
        y = torch.where(valid, y, torch.zeros_like(y))
        slots = self.slot(fit.tod, fit.dow).to(y.device)
        S, (N, C) = self.table.shape[0], y.shape[1:]
        total = torch.zeros(S, N, C, dtype=torch.float64, device=y.device).index_add_(0, slots, y.double())
        count = torch.zeros(S, N, C, dtype=torch.float64, device=y.device).index_add_(0, slots, valid.double())
        spd = self.steps_per_day
        day_total = total.view(7, spd, N, C).sum(0)
        day_count = count.view(7, spd, N, C).sum(0)
        overall = total.sum(0) / count.sum(0).clamp(min=1)
        by_day = torch.where(day_count > 0, day_total / day_count.clamp(min=1), overall)
        avg = torch.where(count > 0, total / count.clamp(min=1), by_day.repeat(7, 1, 1))
        mean = torch.tensor(fit.target_mean, dtype=torch.float64, device=y.device)
        std = torch.tensor(fit.target_std, dtype=torch.float64, device=y.device)
        self.table.copy_(((avg - mean) / std).float())

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        slots = self.slot(covariates["tod_out"], covariates["dow_out"])  # [B, T_out]
        return self.table[slots]
