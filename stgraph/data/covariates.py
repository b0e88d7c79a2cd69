"""Covariate files in batches: :class:`Exogenous` scales the aligned sources and gathers them per batch.

The sources are read and aligned to the series by :func:`stgraph.io.covariates.read_covariates`
(what the four kinds are, and how a file's readings are aligned to the series' steps);
:meth:`stgraph.data.ForecastData.from_series` takes them (``covariates=``) and builds the
:class:`Exogenous` of the data.

Scaling: channels holding only 0/1 (flags) are kept as they are; every other channel is z-scored
with the mean and standard deviation of the training rows. Missing values become 0 after scaling
(the training mean, as for the inputs).

Batches (:meth:`Exogenous.gather`) carry ``exo_in [B, T_in, N, C]`` and ``exo_out [B, T_out, N, C]``
gathered by row index from the stored arrays, never from materialised windows. Shared series,
events and static features are taken as known ahead (weather forecasts, calendars, the road
itself): ``exo_out`` holds their values at the forecast steps. Per-sensor series (incidents) are
not known ahead: ``exo_out`` repeats their value at the last input step.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..io.covariates import Source

__all__ = ["Exogenous"]


def _is_flag(v: np.ndarray) -> bool:
    finite = v[np.isfinite(v)]
    return finite.size > 0 and bool(np.isin(finite, (0.0, 1.0)).all())


class Exogenous:
    """Aligned covariate sources of one :class:`~stgraph.data.ForecastData`, scaled and on a device.

    Args:
        sources: aligned :class:`Source` objects.
        num_nodes: ``N``, sensors of the series (batches broadcast shared sources over them).
        train_rows: series rows of the training split (the scaling statistics come from them).
        stats: saved statistics (:meth:`state_dict`) to use instead of fitting them.
        device: where the arrays live.

    Shapes: ``shared`` ``[T, Cs]``, ``sensor`` ``[T, N, Cn]``, ``static`` ``[N, Cst]`` float32
    (each kind's sources side by side); batches ``[B, L, N, C]`` with ``C`` the channels of all
    sources in the order given (:attr:`layout`).
    """

    def __init__(self, sources: list[Source], num_nodes: int, train_rows: np.ndarray | None = None,
                 stats: dict | None = None, device="cpu"):
        if not sources:
            raise ConfigError("covariates: no source given")
        self.sources = list(sources)
        self.num_nodes = int(num_nodes)
        self.stats = stats if stats is not None else self._fit(train_rows)
        self._check_stats()
        by_kind: dict[str, list] = {k: [] for k in ("time", "sensor", "static")}
        self._where = []  # per source: (store, first channel, channels)
        for s in self.sources:
            st = self.stats[s.name]
            v = (s.values - np.asarray(st["mean"], np.float32)) / np.asarray(st["std"], np.float32)
            v = np.nan_to_num(v, nan=0.0).astype(np.float32)
            store = {"shared": "time", "event": "time", "sensor": "sensor", "static": "static"}[s.kind]
            first = sum(a.shape[-1] for a in by_kind[store])
            by_kind[store].append(v)
            self._where.append((store, first, s.num_channels))
        self.time = torch.from_numpy(np.concatenate(by_kind["time"], -1)).to(device) if by_kind["time"] else None
        self.sensor = torch.from_numpy(np.concatenate(by_kind["sensor"], -1)).to(device) if by_kind["sensor"] else None
        self.static = torch.from_numpy(np.concatenate(by_kind["static"], -1)).to(device) if by_kind["static"] else None

    def _fit(self, train_rows) -> dict:
        stats = {}
        for s in self.sources:
            v = s.values
            if s.kind != "static" and train_rows is not None:
                v = v[np.asarray(train_rows)]
            v = v.reshape(-1, s.num_channels)
            whole = s.values.reshape(-1, s.num_channels)
            mean, std = [], []
            for c in range(s.num_channels):
                col = v[:, c] if np.isfinite(v[:, c]).any() else whole[:, c]
                if _is_flag(whole[:, c]) or not np.isfinite(col).any():
                    mean.append(0.0), std.append(1.0)  # flags stay 0/1
                else:
                    sd = float(np.nanstd(col))
                    mean.append(float(np.nanmean(col))), std.append(sd if sd > 1e-6 else 1.0)
            stats[s.name] = {"kind": s.kind, "channels": list(s.channels), "mean": mean, "std": std}
        return stats

    def _check_stats(self) -> None:
        for s in self.sources:
            st = self.stats.get(s.name)
            if st is None or st["kind"] != s.kind or list(st["channels"]) != list(s.channels):
                raise ConfigError(f"covariates: source '{s.name}' ({s.origin}) has kind {s.kind} and channels "
                                  f"{s.channels}, but the run was trained with "
                                  f"{'no such source' if st is None else (st['kind'], st['channels'])}; pass the "
                                  f"covariate files of the run")

    def state_dict(self) -> dict:
        """Plain data: per source its kind, channels and scaling (kept in checkpoints)."""
        return {k: dict(v) for k, v in self.stats.items()}

    @property
    def layout(self) -> list[list]:
        """``[[name, channels], ...]`` in batch channel order: what a model with exogenous inputs is built with."""
        return [[s.name, s.num_channels] for s in self.sources]

    @property
    def num_channels(self) -> int:
        return sum(s.num_channels for s in self.sources)

    def gather(self, rows_in: torch.Tensor, rows_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``exo_in [B, T_in, N, C]``, ``exo_out [B, T_out, N, C]`` for series rows ``rows_in [B, T_in]``
        and ``rows_out [B, T_out]``: one gather per stored array; sources not known ahead repeat their
        last input value over the forecast steps."""
        from .windows import take_rows

        N = self.num_nodes
        last = rows_in[:, -1:].expand_as(rows_out)
        res = []
        for rows, sensor_rows in ((rows_in, rows_in), (rows_out, last)):
            B, L = rows.shape
            time = None if self.time is None else take_rows(self.time, rows)              # [B, L, Ct]
            sensor = None if self.sensor is None else take_rows(self.sensor, sensor_rows)  # [B, L, N, Cn]
            pieces = []
            for store, a, c in self._where:
                if store == "static":
                    pieces.append(self.static[:, a:a + c].expand(B, L, N, c))
                elif store == "time":
                    pieces.append(time[..., a:a + c].unsqueeze(2).expand(B, L, N, c))
                else:
                    pieces.append(sensor[..., a:a + c])
            res.append(torch.cat(pieces, -1))
        return res[0], res[1]
