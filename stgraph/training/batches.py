"""Batch sources: where the :class:`~stgraph.training.trainer.Trainer` takes its training batches from
(``Trainer(..., batches=...)``).

A batch source has two methods:

* ``count(batch_size) -> int``: the batches of one epoch;
* ``epoch(batch_size, *, generator, start=0, shard=None, workers=0)``: an iterable of
  :class:`~stgraph.data.dataset.Batch` (``x [B, T_in, N, C_in]``, ``y [B, T_out, N, C_out]``, ``starts [B]``,
  covariates) for one epoch, shuffled by ``generator``, from batch ``start`` on (a resumed epoch), this
  process's part ``shard=(rank, world)`` of every global batch, gathered by ``workers`` processes.

:class:`TrainingWindows` (the default) is the data's own shuffled training split; an online update replays
old windows beside the new ones (:class:`stgraph.online.replay.ReplayBatches`).
"""
from __future__ import annotations


class TrainingWindows:
    """The shuffled training windows of a :class:`~stgraph.data.ForecastData` (whole batches only)."""

    def __init__(self, data) -> None:
        self.data = data

    def count(self, batch_size: int) -> int:
        return len(self.data.loader("train", batch_size, shuffle=True, drop_last=True))

    def epoch(self, batch_size: int, *, generator, start: int = 0, shard=None, workers: int = 0):
        return self.data.loader("train", batch_size, shuffle=True, drop_last=True, generator=generator,
                                start=start, shard=shard, workers=workers)


__all__ = ["TrainingWindows"]
