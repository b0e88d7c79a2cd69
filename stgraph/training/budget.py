"""A training budget in CPU time (``train.budget_minutes``) and its snapshot marks.

Models are compared at the same compute rather than the same epochs. CPU time is measured with
``time.process_time()`` (this process's CPU time, all its threads; wall time on a shared machine is noisy)
and counts the training steps (batch gathering included) and the validation passes, not the setup,
checkpoint writing or the final test evaluation (DataLoader worker processes, ``train.workers``, are not
counted; under ``torchrun`` the processes' times are summed). The seconds used are kept in the trainer's
state (``cpu_seconds``), so checkpoints hold them and a resumed run continues the count.

``train.budget_stop``: ``'epoch'`` ends the run after the epoch (and its validation) during which the budget
was crossed; ``'step'`` stops at the first step past it, validates what it has (``best.pt`` may still improve;
the cut epoch counts as one), saves and stops. ``train.epochs`` still applies (whichever comes first), and so
does early stopping. With a budget the ``cosine`` schedule anneals over whichever end is nearer
(:func:`stgraph.training.schedule.lr_factor`): where the budget, at the CPU seconds an epoch has cost so far,
ends before the last epoch, its factor is computed before every training step from the larger of the fraction
of the budget used and the fraction of the epochs done; otherwise (and during the first epoch) it is the epoch
cosine, so a small data set that runs out of epochs first is annealed over its epochs and repeatable.

Snapshot marks (minutes) let one run serve several smaller budgets: where a run with that budget would stop
(the end of the first epoch whose cumulative CPU time crosses the mark, or with ``budget_stop`` 'step' the
first step past it, after validating what it has), ``best.pt`` is copied to ``checkpoints/best@<mark>m.pt``
and the mark's CPU seconds and best epoch are recorded (``state['snapshots']``). That equals a run with that
budget only when the schedule does not depend on the budget (``multistep``/``none``), so a budget's cosine
refuses them.
"""
from __future__ import annotations

import math
import time

import torch

from ..errors import ConfigError
from .checkpoint import copy_checkpoint
from .schedule import snapshots_stand_for_budgets


def check_marks(marks, cfg) -> list[float]:
    """The snapshot marks (CPU minutes), sorted and unique; a :class:`ConfigError` for a mark that is not a
    positive number, or for marks under a budget whose schedule follows it. ``cfg``: a TrainConfig."""
    if not marks:
        return []
    out = []
    for m in marks:
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not (math.isfinite(m) and m > 0):
            raise ConfigError(f"snapshot mark {m!r}: expected a positive number of CPU minutes, e.g. [1, 3]")
        out.append(float(m))
    if cfg.budget_minutes and not snapshots_stand_for_budgets(cfg):
        raise ConfigError(f"snapshot marks {out} would not equal runs with those budgets: with a budget, "
                          f"train.scheduler = {cfg.scheduler!r} follows the budget; they need a schedule that "
                          f"does not (multistep or none). Train one run per budget instead")
    return sorted(set(out))


class CpuBudget:
    """Counts a run's CPU seconds into its progress ``state`` and says when its budget and marks are reached.

    Args:
        minutes: the budget (0: none).
        marks: snapshot marks in CPU minutes (:func:`check_marks`).
        dist: the process group (:class:`~stgraph.training.distributed.Dist`); counts are summed over it.
        device: where the summed tensor lives (the training device).
    """

    def __init__(self, minutes: float, marks: list[float], dist, device) -> None:
        self.seconds = 60.0 * float(minutes)
        self.marks = marks
        self.dist, self.device = dist, device
        self._mark = time.process_time()
        self._pending = 0.0  # counted here, not yet added to state['cpu_seconds'] (distributed: not summed)

    def restart(self) -> None:
        """Start counting CPU time from now (what came since the last count is not training)."""
        self._mark = time.process_time()

    def count(self, state: dict, sync: bool = True) -> None:
        """Count the CPU time since the last count; with ``sync`` add it to ``state['cpu_seconds']``
        (distributed: summed over the processes, so that every process stops at the same step)."""
        now = time.process_time()
        self._pending += now - self._mark
        self._mark = now
        if not sync:
            return
        spent = self._pending
        if self.dist.enabled:
            spent = float(self.dist.all_reduce_sum(torch.tensor([spent], dtype=torch.float64, device=self.device)))
        state["cpu_seconds"] = float(state.get("cpu_seconds", 0.0)) + spent
        self._pending = 0.0

    def spent(self, state: dict) -> bool:
        """Whether the run has used its CPU budget (``False`` without one)."""
        return self.seconds > 0 and state.get("cpu_seconds", 0.0) >= self.seconds

    def mark_due(self, state: dict) -> bool:
        """Whether the CPU time has crossed a snapshot mark not taken yet."""
        done = {s["minutes"] for s in state["snapshots"]}
        return any(m not in done and state["cpu_seconds"] >= 60.0 * m for m in self.marks)

    def take_snapshots(self, state: dict, files, final: bool = False) -> None:
        """Copy ``best.pt`` to ``best@<m>m.pt`` (``files``: the run's RunFiles, ``None``: nothing is copied) for
        every mark the CPU time has crossed (``final``: every mark left, when the run ended before them for
        another reason than its budget) and record each in ``state['snapshots']``."""
        done = {s["minutes"] for s in state["snapshots"]}
        for m in self.marks:
            if m in done or (not final and state["cpu_seconds"] < 60.0 * m):
                continue
            if files is not None and self.dist.is_main and files.best.is_file():
                copy_checkpoint(files.best, files.snapshot(m))
            state["snapshots"] = state["snapshots"] + [{
                "minutes": m, "cpu_seconds": round(state["cpu_seconds"], 3), "epoch": state["epoch"],
                "best_epoch": state["best_epoch"], "reached": not final}]


__all__ = ["CpuBudget", "check_marks"]
