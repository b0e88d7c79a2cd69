"""Replay for an online update: batches of the new data's newest training windows mixed with old windows.

:class:`ReplayBatches` is a batch source (:mod:`stgraph.training.batches`) that the
:class:`~stgraph.training.trainer.Trainer` takes as ``batches=``: the forecaster keeps the new
:class:`~stgraph.data.ForecastData` for everything else (validation, closed-form fits, evaluation).
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch


def newest_windows(data, weeks: float) -> torch.Tensor:
    """The starts ``[W]`` of the training windows of ``data`` in its newest ``weeks`` weeks (0: all of them)."""
    starts = data.split_starts("train")
    ts = data.timestamps.astype("datetime64[ns]")
    if weeks and len(starts):
        last = ts[int(starts[-1])]
        first = last - np.timedelta64(int(weeks * 7 * 86400), "s")
        keep = ts[starts.cpu().numpy()] >= first
        starts = starts[torch.from_numpy(keep).to(starts.device)]
    return starts


class ReplayLoader:
    """Batches of the new data's newest training windows mixed with replayed windows of the old data.

    Each batch of ``batch_size`` holds ``batch_size - k`` new windows (in a shuffled pass over
    ``new_starts``) and ``k = round(replay * batch_size)`` old windows drawn at random from
    ``old_starts`` of ``old`` (one gather each, concatenated). Yields :class:`~stgraph.data.dataset.Batch`
    (``x [B, T_in, N, C_in]``, ``y [B, T_out, N, C_out]``, ...).
    """

    def __init__(self, new, new_starts: torch.Tensor, old, old_starts: torch.Tensor | None, batch_size: int,
                 replay: float, generator: torch.Generator | None, drop_last: bool = True):
        self.new, self.old = new, old
        self.new_starts, self.old_starts = new_starts, old_starts
        self.k = 0 if old_starts is None or old_starts.numel() == 0 else int(round(replay * batch_size))
        self.b = max(1, batch_size - self.k)
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = int(self.new_starts.numel())
        return n // self.b if self.drop_last else -(-n // self.b)

    def __iter__(self):
        from ..data.dataset import Batch
        from ..data.reports import join_text

        order = self.new_starts[torch.randperm(self.new_starts.numel(), generator=self.generator)]
        for i in range(len(self)):
            batch = self.new.batch(order[i * self.b:(i + 1) * self.b])
            if self.k:
                pick = torch.randint(0, self.old_starts.numel(), (self.k,), generator=self.generator)
                old = self.old.batch(self.old_starts[pick])
                batch = Batch(*(None if getattr(batch, f.name) is None else
                                join_text(batch.text, old.text) if f.name == "text" else  # text reports: re-indexed
                                batch.graph.join(old.graph) if f.name == "graph" else     # per-window graphs
                                torch.cat([getattr(batch, f.name), getattr(old, f.name)])
                                for f in fields(batch)))
            yield batch


class ReplayBatches:
    """The batch source of an update: the newest ``weeks`` of ``new``'s training windows, with a share
    ``replay`` of every batch drawn from ``old``'s training windows (``old`` ``None``: no replay).

    Attributes:
        update_starts: the new training windows trained on ``[W]``.
    """

    def __init__(self, new, old, weeks: float, replay: float) -> None:
        self.new, self.old = new, old
        self.replay = float(replay)
        self.update_starts = newest_windows(new, weeks)
        self.old_starts = None if old is None else old.split_starts("train")

    def _loader(self, batch_size: int, generator) -> ReplayLoader:
        return ReplayLoader(self.new, self.update_starts, self.old, self.old_starts, batch_size, self.replay,
                            generator, drop_last=True)

    def count(self, batch_size: int) -> int:
        return len(self._loader(batch_size, None))

    def epoch(self, batch_size: int, *, generator, start: int = 0, shard=None, workers: int = 0) -> ReplayLoader:
        """One epoch's batches (an update trains in one process from the epoch's start: ``start``, ``shard`` and
        ``workers`` are not used)."""
        return self._loader(batch_size, generator)


__all__ = ["ReplayBatches", "ReplayLoader", "newest_windows"]
