"""Covariate files in batches: :class:`Exogenous` scales the aligned sources and gathers them per batch.

The sources are read and aligned to the series by :func:`stgraph.io.covariates.read_covariates`
(what the four kinds are, and how a file's readings are aligned to the series' steps);
:meth:`stgraph.data.ForecastData.from_series` takes them (``covariates=``) and builds the
:class:`Exogenous` of the data.

Scaling: channels holding only 0/1 (flags) are kept as they are; every other channel is z-scored
with the mean and standard deviation of the training rows. Missing values become 0 after scaling
(the training mean, as for the inputs).

Batches (:meth:`Exogenous.gather`) carry ``exo_in [B, T_in, N, C]`` and ``exo_out [B, T_out, N, C]``
gathered by row index from the stored arrays, never from materialised windows. A source known ahead
(:attr:`stgraph.io.covariates.Source.known_ahead`: declared ``FILE:forecast``, or by default shared
series, events and static features: weather forecasts, calendars, the road itself) has its values at the
forecast steps in ``exo_out``; a source that is observed only (``FILE:observed``, or by default a
per-sensor series such as incident flags) repeats its value at the last input step there.

Text reports (``text`` sources, placed by :func:`stgraph.data.reports.read_sources`) are not channels of
``exo_in`` / ``exo_out``: :meth:`Exogenous.text` gathers them per batch (:meth:`ReportTokens.gather`), and the
model's text encoder turns them into channels appended after the numeric ones (:attr:`Exogenous.layout`
lists text sources last, as ``[name, channels, 'text', vector width]``).

A reading that the scaling turns into infinity (``|x - mean| / std`` beyond float32) is refused naming the
file, the column and the series step.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import ConfigError
from ..io.covariates import Source

log = logging.getLogger(__name__)

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
        from .reports import ReportTokens

        self.reports = {s.name: s.table for s in sources if s.kind == "text"}
        for name, tokens in self.reports.items():
            if not isinstance(tokens, ReportTokens):
                raise ConfigError(f"covariates: the reports of '{name}' are not placed on the series; read covariate "
                                  f"files through stgraph.data.reports.read_sources")
            tokens.to(device)
        self.text_sources = [s for s in sources if s.kind == "text"]
        sources = [s for s in sources if s.kind != "text"]
        self.sources = list(sources)
        self.num_nodes = int(num_nodes)
        self.stats = stats if stats is not None else {**self._fit(train_rows), **{
            s.name: {"kind": "text", "channels": list(s.channels), "mean": [], "std": [], "known_ahead": False}
            for s in self.text_sources}}
        self._check_stats()
        by_kind: dict[str, list] = {k: [] for k in ("time", "sensor", "static")}
        self._where = []  # per source: (store, first channel, channels)
        for s in self.sources:
            st = self.stats[s.name]
            with np.errstate(over="ignore", invalid="ignore"):
                v = (s.values.astype(np.float64) - np.asarray(st["mean"])) / np.asarray(st["std"])
            self._refuse_overflow(s, v)
            v = np.nan_to_num(v, nan=0.0).astype(np.float32)
            store = {"shared": "time", "event": "time", "sensor": "sensor", "static": "static"}[s.kind]
            first = sum(a.shape[-1] for a in by_kind[store])
            by_kind[store].append(v)
            self._where.append((store, first, s.num_channels, s.known_ahead))
        self.time = torch.from_numpy(np.concatenate(by_kind["time"], -1)).to(device) if by_kind["time"] else None
        self.sensor = torch.from_numpy(np.concatenate(by_kind["sensor"], -1)).to(device) if by_kind["sensor"] else None
        self.static = torch.from_numpy(np.concatenate(by_kind["static"], -1)).to(device) if by_kind["static"] else None

    @staticmethod
    def _refuse_overflow(s: Source, scaled: np.ndarray) -> None:
        bad = ~np.isfinite(scaled) & ~np.isnan(s.values) | (np.abs(np.nan_to_num(scaled)) > 3.0e38)
        if not bad.any():
            return
        idx = np.argwhere(bad)[0]
        where_ = f"series step {int(idx[0])}" if s.kind != "static" else f"sensor {int(idx[0])}"
        raise ConfigError(f"covariates: {s.origin}, column '{s.channels[int(idx[-1])]}', {where_}: the value "
                          f"{float(s.values[tuple(idx)])!r} overflows the scaler (z-score beyond float32); "
                          f"expected readings within float32's range")

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
                    col = col.astype(np.float64)
                    sd = float(np.nanstd(col))
                    mean.append(float(np.nanmean(col))), std.append(sd if sd > 1e-6 else 1.0)
            stats[s.name] = {"kind": s.kind, "channels": list(s.channels), "mean": mean, "std": std,
                             "known_ahead": s.known_ahead}
        return stats

    def _check_stats(self) -> None:
        for s in self.sources + self.text_sources:
            st = self.stats.get(s.name)
            if st is None or st["kind"] != s.kind or list(st["channels"]) != list(s.channels) or \
                    st.get("known_ahead", s.known_ahead) != s.known_ahead:
                raise ConfigError(f"covariates: source '{s.name}' ({s.origin}) has kind {s.kind} and channels "
                                  f"{s.channels}, but the run was trained with "
                                  f"{'no such source' if st is None else (st['kind'], st['channels'])}"
                                  f"{'' if st is None else ', known ahead' if st.get('known_ahead') else ', observed'}"
                                  f" (this file: {'known ahead' if s.known_ahead else 'observed'}); pass the "
                                  f"covariate files of the run")

    def state_dict(self) -> dict:
        """Plain data: per source its kind, channels and scaling (kept in checkpoints)."""
        return {k: dict(v) for k, v in self.stats.items()}

    @property
    def layout(self) -> list[list]:
        """``[[name, channels], ...]`` in batch channel order: what a model with exogenous inputs is built with."""
        from .reports import TEXT_DIM, TEXT_FEATURES

        text = [[s.name, TEXT_DIM + TEXT_FEATURES, "text", 0 if self.reports[s.name].vectors is None else
                 int(self.reports[s.name].vectors.shape[1])] for s in self.text_sources]
        return [[s.name, s.num_channels] for s in self.sources] + text

    @property
    def num_channels(self) -> int:
        """Numeric channels of ``exo_in`` / ``exo_out`` (text sources' come from the model's encoder)."""
        return sum(s.num_channels for s in self.sources)

    def text(self, rows_in: torch.Tensor, rows_out: torch.Tensor, note: bool = False) -> dict | None:
        """``{source: ReportTokens.gather(rows_in, rows_out)}`` for the text sources (``None``: none);
        ``note``: log when no report reaches the window (a forecast without text signal)."""
        if not self.reports:
            return None
        out = {name: tokens.gather(rows_in, rows_out) for name, tokens in self.reports.items()}
        for name, t in out.items():
            if note and not (t["slot_in"] >= 0).any():
                log.info("covariates: no report of '%s' (%s) reaches this forecast window: no text signal", name,
                         self.reports[name].origin)
        return out

    def gather(self, rows_in: torch.Tensor, rows_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``exo_in [B, T_in, N, C]``, ``exo_out [B, T_out, N, C]`` for series rows ``rows_in [B, T_in]``
        and ``rows_out [B, T_out]``: one gather per stored array and kind of row; sources not known ahead
        repeat their last input value over the forecast steps."""
        from .windows import take_rows

        N = self.num_nodes
        last = rows_in[:, -1:].expand_as(rows_out)
        res = []
        for rows, held in ((rows_in, rows_in), (rows_out, last)):
            B, L = rows.shape
            got: dict = {}

            def take(store, ahead):
                key = (store, ahead)
                if key not in got:
                    got[key] = take_rows(getattr(self, store), rows if ahead else held)  # [B, L, (N,) C]
                return got[key]

            pieces = [torch.zeros(B, L, N, 0, device=rows.device)]
            for store, a, c, ahead in self._where:
                if store == "static":
                    pieces.append(self.static[:, a:a + c].expand(B, L, N, c))
                elif store == "time":
                    pieces.append(take("time", ahead)[..., a:a + c].unsqueeze(2).expand(B, L, N, c))
                else:
                    pieces.append(take("sensor", ahead)[..., a:a + c])
            res.append(torch.cat(pieces, -1))
        return res[0], res[1]
