"""Where a probabilistic head's scale starts: per sensor and horizon step, from the data.

A Normal head's scale is ``softplus(raw) + min_scale`` in z-score units, and its output layer starts at
zero, so before training the scale is 1 z-unit (the target's global standard deviation) for every sensor
and step; only the output layer's weights can make it depend on either. On a short series (61 daily
counts: a few optimiser steps) those weights hardly move and the band stays one number for every region
and horizon (issue 25: ``std`` 17.83-17.87 everywhere). :class:`ScalePrior` (stgt's ``scale_prior=True``)
multiplies the head's scale by a fixed per-step, per-sensor factor fitted in closed form on the training
windows: the root mean square error of last value at step ``h`` for sensor ``n`` (z units), so the band
starts as wide as persistence's errors at that sensor and horizon, and the head learns a correction
around it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..metrics import valid_mask
from .registry import ClosedForm, ClosedFormData

#: smallest factor (z units): a sensor constant over the training rows still gets a band
MIN_FACTOR = 1e-2


class ScalePrior(ClosedForm, nn.Module):
    """A fixed factor ``[T_out, N, C_out]`` (buffer ``factor``, 1 until :meth:`fit_closed_form`).

    Args:
        num_nodes, out_channels, horizon: sizes.
        target_channels: positions of the ``C_out`` targets among the inputs' channels.

    Shapes:
        - input: ``scale`` ``[B, T_out, N, C_out]``
        - output: ``scale * factor``, the same shape
    """

    def __init__(self, num_nodes: int, out_channels: int, horizon: int, target_channels: Sequence[int]):
        super().__init__()
        self.register_buffer("factor", torch.ones(horizon, num_nodes, out_channels))
        self.register_buffer("target_index", torch.tensor(list(target_channels)), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A mixture run from before mixtures had the prior saved no ``factor``: it loads as 1, which is what
        that run computed (its offsets and scales unscaled)."""
        state_dict.setdefault(prefix + "factor", torch.ones_like(self.factor))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, scale: torch.Tensor) -> torch.Tensor:
        return scale * self.factor.to(scale.dtype)

    @torch.no_grad()
    def fit_closed_form(self, fit: ClosedFormData, batch_size: int = 256) -> None:
        """``factor[h, n, c]`` = RMS over the training windows of ``z(y[t + h]) - z(last)`` (valid targets
        only), at least :data:`MIN_FACTOR`; 1 where a sensor has no valid target at that step."""
        dev = self.factor.device
        mean, std = (torch.tensor(v, dtype=torch.float64, device=dev) for v in (fit.target_mean, fit.target_std))
        sq = torch.zeros(self.factor.shape, dtype=torch.float64, device=dev)
        count = torch.zeros_like(sq)
        for b in fit.batches("train", batch_size):
            b = b.to(dev)
            last = b.x[:, -1:, :, :].index_select(-1, self.target_index).double()  # [B, 1, N, C]
            y = b.y.double()
            m = valid_mask(y, fit.null_value)
            err = torch.where(m, (y - mean) / std - last, torch.zeros_like(y))
            sq += (err * err).sum(0)
            count += m.double().sum(0)
        rms = torch.sqrt(sq / count.clamp(min=1)).clamp(min=MIN_FACTOR)
        self.factor.copy_(torch.where(count > 0, rms, torch.ones_like(rms)).float())
