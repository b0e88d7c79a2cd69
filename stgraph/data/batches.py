"""Batches of windows: :class:`Batch` (one gather per tensor) and :class:`BatchLoader` (a split's windows
in batches, shuffled by a seeded generator, sharded for data-parallel training, optionally gathered
ahead in worker processes). A :class:`~stgraph.data.ForecastData` makes both (``batch``, ``loader``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np
import torch

from ..errors import ConfigError

__all__ = ["Batch", "BatchLoader", "each_tensor"]


@dataclass
class Batch:
    """A batch of ``B`` windows.

    Attributes:
        x: ``[B, T_in, N, C_in]`` scaled inputs (nulls are 0).
        y: ``[B, T_out, N, C_out]`` raw targets (nulls are ``null_value``).
        tod_in, dow_in: ``[B, T_in]`` time of day (float32, ``[0, 1)``) and day of week (int64) of the inputs.
        tod_out, dow_out: ``[B, T_out]`` the same for the targets.
        starts: ``[B]`` int64 first row of each window in the series.
        exo_in, exo_out: ``[B, T_in, N, C_x]`` / ``[B, T_out, N, C_x]`` scaled covariates from files
            (:mod:`stgraph.data.covariates`), or ``None`` when the data has none.
        graph: each window's graph (that of its last input step) as one disjoint union
            (:class:`stgraph.graph.dynamic.WindowGraphs`) when the data has a dynamic graph; ``None``: the
            run's static graph serves every window.
        text: text reports of the windows, ``{source: ReportTokens.gather(...)}`` (:mod:`stgraph.data.reports`),
            or ``None`` when the data has none.
    """

    x: torch.Tensor
    y: torch.Tensor
    tod_in: torch.Tensor
    dow_in: torch.Tensor
    tod_out: torch.Tensor
    dow_out: torch.Tensor
    starts: torch.Tensor
    exo_in: torch.Tensor | None = None
    exo_out: torch.Tensor | None = None
    graph: object = None
    text: dict | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The batch on ``device`` (``non_blocking`` pays off from pinned memory)."""
        return Batch(*(each_tensor(getattr(self, f.name), lambda t: t.to(device, non_blocking=non_blocking))
                       for f in fields(self)))

    def pin_memory(self) -> "Batch":
        """The batch in page-locked host memory, for asynchronous copies to the GPU."""
        return Batch(*(each_tensor(getattr(self, f.name), lambda t: t.pin_memory()) for f in fields(self)))

    @property
    def covariates(self) -> dict[str, torch.Tensor]:
        """``tod_in``, ``dow_in``, ``tod_out``, ``dow_out`` (and ``exo_in``, ``exo_out`` when the data has
        covariate files) as a dict (model keyword arguments)."""
        cov = {"tod_in": self.tod_in, "dow_in": self.dow_in, "tod_out": self.tod_out, "dow_out": self.dow_out}
        if self.exo_in is not None:
            cov.update(exo_in=self.exo_in, exo_out=self.exo_out)
        if self.text is not None:
            cov["text"] = self.text
        return cov


def each_tensor(value, fn):
    """``fn`` applied to a field (``None`` stays, a dict of tensors is applied to each, nested)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: each_tensor(v, fn) for k, v in value.items()}
    return fn(value)


class BatchLoader:
    """Iterates the windows of one split in batches; ``len()`` is the number of batches.

    Each batch is one vectorised gather (no worker processes, no per-sample
    loop). With ``shuffle`` a fresh permutation is drawn from ``generator``
    (or torch's global RNG) at the start of every pass, so a seeded generator
    makes the order repeatable.

    ``start``: batches before it are skipped without being gathered (a resumed epoch; the
    permutation is still drawn whole, so the order is the uninterrupted one).
    ``shard=(rank, world)``: the distributed sampler of data-parallel training. Every batch of
    ``batch_size`` windows (the global batch, from the one permutation, whatever ``world`` is) is
    split into ``world`` near-equal parts (``torch.tensor_split``) and this loader yields part
    ``rank`` (``[batch_size / world]`` windows when ``world`` divides ``batch_size``), skipping an
    empty part; over the ``world`` processes every window of the split comes once per pass.
    ``len()`` stays the number of global batches.

    ``workers > 0``: the batches are gathered in that many worker processes (``torch.utils.data``,
    started by ``fork`` for each pass; each opens a lazy series' file itself) while the caller uses
    the previous ones, ``prefetch`` batches ahead per worker; they come in the same order, with the
    same content, as without workers. Worth it for a lazy series, whose batches are read from disk.
    """

    def __init__(self, data: "ForecastData", starts: torch.Tensor, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 pin_memory: bool | None = None, start: int = 0,
                 shard: tuple[int, int] | None = None, workers: int = 0, prefetch: int = 2) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size is {batch_size!r}; expected an integer >= 1, e.g. 64")
        self.data = data
        self.starts = starts
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
            raise ConfigError(f"start is {start!r}; expected the index of the first batch, an integer >= 0")
        self.start = int(start)
        if shard is not None:
            ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
                  and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard)
                  and 0 <= shard[0] < shard[1])
            if not ok:
                raise ConfigError(f"shard is {shard!r}; expected (rank, world) with 0 <= rank < world")
            shard = (int(shard[0]), int(shard[1]))
        self.shard = shard
        for name, v, lo in (("workers", workers, 0), ("prefetch", prefetch, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f"{name} is {v!r}; expected an integer >= {lo}")
        self.workers, self.prefetch = int(workers), int(prefetch)
        if pin_memory is None:
            pin_memory = torch.cuda.is_available() and data.device.type == "cpu"
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available() and data.device.type == "cpu"

    @property
    def num_windows(self) -> int:
        return int(self.starts.shape[0])

    def __len__(self) -> int:
        n, b = self.num_windows, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        parts = self._parts()
        if self.workers and parts:
            yield from self._prefetched(parts)
            return
        for idx in parts:
            batch = self.data.batch(idx)
            yield batch.pin_memory() if self.pin_memory else batch

    def _parts(self) -> list[torch.Tensor]:
        """The window starts ``[b]`` of every batch this pass yields (one permutation drawn now)."""
        order = self.starts
        if self.shuffle:
            gen_device = self.generator.device if self.generator is not None else torch.device("cpu")
            perm = torch.randperm(self.num_windows, generator=self.generator, device=gen_device)
            order = order[perm.to(order.device)]  # one transfer per pass, not per batch
        b = self.batch_size
        parts = []
        for i in range(self.start, len(self)):
            idx = order[i * b:(i + 1) * b]
            if self.shard is not None:
                idx = torch.tensor_split(idx, self.shard[1])[self.shard[0]]
                if idx.numel() == 0:
                    continue
            parts.append(idx)
        return parts

    def _prefetched(self, parts: list[torch.Tensor]) -> Iterator[Batch]:
        import multiprocessing

        from torch.utils.data import DataLoader

        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        loader = DataLoader(_Batches(self.data, parts), batch_size=None, shuffle=False,
                            num_workers=min(self.workers, len(parts)), prefetch_factor=self.prefetch,
                            pin_memory=self.pin_memory, multiprocessing_context=method,
                            generator=torch.Generator().manual_seed(0))  # leaves the global RNG (dropout) alone
        yield from loader


class _Batches(torch.utils.data.Dataset):
    """Batch ``i`` of one pass of a :class:`BatchLoader`: what its worker processes gather."""

    def __init__(self, data: "ForecastData", parts: list[torch.Tensor]) -> None:
        self.data = data
        self.parts = parts

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, i: int) -> Batch:
        return self.data.batch(self.parts[i])
