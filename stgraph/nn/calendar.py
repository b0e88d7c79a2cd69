"""Calendar covariates as model inputs: the time-of-day slot and the time of day as a feature.

The trainer passes ``tod`` (time of day, a fraction in ``[0, 1)``) ``[B, T]``; see
:mod:`stgraph.data.calendar` for how it is computed from timestamps.
"""
from __future__ import annotations

import torch


def tod_slot(tod: torch.Tensor, steps_per_day: int) -> torch.Tensor:
    """Time-of-day fraction -> slot index ``floor(tod * S)`` clamped to ``[0, S - 1]``.

    A tolerance of 1e-3 of a slot absorbs float error in ``k / S`` (so ``k / S`` lands in
    slot ``k``).

    Args:
        tod: ``[*]`` float in ``[0, 1)``.
        steps_per_day: ``S``, the number of slots (288 for 5-minute data).

    Returns:
        ``[*]`` long in ``[0, S - 1]``.
    """
    idx = torch.floor(tod.float() * steps_per_day + 1e-3).long()
    return idx.clamp_(0, steps_per_day - 1)


def append_time_of_day(x: torch.Tensor, tod: torch.Tensor) -> torch.Tensor:
    """Append the time of day as one more input feature of every sensor.

    Args:
        x: ``[B, T, N, C]``.
        tod: ``[B, T]`` time of day in ``[0, 1)``.

    Returns:
        ``[B, T, N, C + 1]``, the last feature ``tod`` (cast to ``x``'s dtype).
    """
    B, T, N, _ = x.shape
    return torch.cat([x, tod.to(x.dtype)[:, :, None, None].expand(B, T, N, 1)], dim=-1)
