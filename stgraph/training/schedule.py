"""The learning-rate schedules: one cosine for the trainer's epochs, a CPU budget and the federation's rounds.

* :func:`cosine_factor` ``(t)``: ``COSINE_FLOOR + (1 - COSINE_FLOOR) * (1 + cos(pi * t)) / 2`` at the fraction
  ``t`` of the span (clipped to [0, 1]): 1 at the start, ``COSINE_FLOOR`` (0.02) at the end. The trainer's span
  is the epochs after warm-up or the CPU budget; the federation's (:func:`stgraph.federated.config.round_lr_factor`)
  the rounds, ``t = (round - 1) / rounds``.
* :func:`lr_factor`: the trainer's factor on ``train.lr`` at an epoch (warm-up, then cosine, multistep or none).
"""
from __future__ import annotations

import math

#: the cosine schedule's last learning-rate factor (of ``train.lr``)
COSINE_FLOOR = 0.02


def cosine_factor(t: float) -> float:
    """The cosine schedule's learning-rate factor at the fraction ``t`` of its span (clipped to [0, 1]):
    1 at the start, ``COSINE_FLOOR`` at the end; the span is the epochs after warm-up, the budget or the rounds."""
    t = min(1.0, max(0.0, t))
    return COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


def lr_factor(cfg, epoch: int, budget_done: float | None = None) -> float:
    """The factor on ``cfg.lr`` at ``epoch`` (0-based) of a :class:`~stgraph.config.TrainConfig`.

    Warm-up epochs rise linearly, ``(epoch + 1) / (warmup_epochs + 1)``; then ``cosine`` anneals over the
    epochs after warm-up by :func:`cosine_factor`, or, with ``budget_done`` (the fraction of a CPU budget used,
    where the budget ends before the last epoch), over whichever end is nearer; ``multistep`` multiplies by
    ``gamma`` at each of ``milestones``; ``none`` stays 1."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.scheduler == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        done = (epoch - cfg.warmup_epochs) / span
        if budget_done is not None:  # the nearer end governs: the budget or the last epoch
            done = max(done, budget_done)
        return cosine_factor(done)
    if cfg.scheduler == "multistep":
        return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    return 1.0


def snapshots_stand_for_budgets(cfg) -> bool:
    """Whether the snapshots of a run with a budget (``best@<m>m.pt``) equal runs with the smaller budgets
    ``m``: its schedule does not follow the budget (``multistep`` or ``none``; either ``budget_stop``).
    ``cfg``: a :class:`~stgraph.config.TrainConfig`."""
    return cfg.scheduler != "cosine"


__all__ = ["COSINE_FLOOR", "cosine_factor", "lr_factor", "snapshots_stand_for_budgets"]
