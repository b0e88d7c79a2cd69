"""Calibration of a probabilistic run's forecast distribution, overall: the PIT histogram and the reliability
diagram (``stgraph evaluate RUN --calibration PNG``, :func:`stgraph.evaluate` ``(run, calibration=True)``).

* **PIT** (probability integral transform): ``u = F(y)``, the forecast CDF at the truth, per valid target
  reading; a calibrated forecast gives uniform ``u`` (a flat histogram at density 1); a U shape means bands too
  narrow, a hump bands too wide, a slope a biased median. (A distribution with a mass point, e.g. at 0 for
  ``data.nonnegative``, gives the mass point's readings ``u = F(0)`` there.)
* **Reliability**: for every nominal level ``L`` of :data:`LEVELS` (10% .. 90%) the observed share of valid
  readings inside the central ``L`` band (the ``(1 - L)/2`` and ``(1 + L)/2`` quantiles,
  :func:`stgraph.distributions.interval`); calibrated: observed = nominal.
"""
from __future__ import annotations

import torch
from torch.distributions import Distribution

from .distributions import interval
from .errors import ConfigError
from .metrics import valid_mask

#: the nominal central-band levels of the reliability diagram
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

#: bins of the PIT histogram over [0, 1]
PIT_BINS = 10


class CalibrationAccumulator:
    """Streaming PIT histogram and per-level band counts over batches (float64 sums), overall and, with
    ``groups = G``, per group in the same pass: the CDF at the truth and the nine bands are computed once
    per batch and each reading's counts go to its group by one ``bincount`` (no pass per group).

    Args:
        null_value: the run's null reading (left out).
        bins: PIT histogram bins over ``[0, 1]``.
        levels: the central-band levels of the reliability diagram.
        groups: ``G``: also count per group ``0 .. G-1`` (:meth:`update`'s ``group``); 0: overall only.
    """

    def __init__(self, null_value: float, bins: int = PIT_BINS, levels=LEVELS, groups: int = 0) -> None:
        self.null_value = float(null_value)
        self.bins = int(bins)
        self.levels = tuple(float(v) for v in levels)
        self.groups = int(groups)
        self.pit = torch.zeros(self.bins, dtype=torch.float64)
        self.inside = torch.zeros(len(self.levels), dtype=torch.float64)
        self.count = 0
        self.group_pit = torch.zeros(self.groups, self.bins, dtype=torch.float64)
        self.group_inside = torch.zeros(self.groups, len(self.levels), dtype=torch.float64)
        self.group_count = torch.zeros(self.groups, dtype=torch.float64)

    @torch.no_grad()
    def update(self, forecast, y: torch.Tensor, group: torch.Tensor | None = None) -> None:
        """Add a batch: ``forecast`` a distribution of batch shape ``[B, T_out, N, C]`` and ``y [B, T_out, N, C]``
        the truth, both in data units (null readings left out); ``group [B, T_out, N, C]`` (integers in
        ``0 .. groups-1``): each reading's group (:func:`stgraph.regimes.grouper`), needed when ``groups > 0``.

        Raises:
            ConfigError: ``forecast`` is a point forecast (a tensor): calibration needs a distribution.
        """
        if not isinstance(forecast, Distribution):
            raise ConfigError("calibration needs a forecast distribution, but the run gives point forecasts: train "
                              "it with probabilistic=True (--probabilistic)")
        mask = valid_mask(y, self.null_value)
        yz = torch.where(mask, y, forecast.loc.to(y.dtype)).to(forecast.loc.dtype)
        u = forecast.cdf(yz)[mask].double().clamp(0, 1).cpu()
        bin_of = (u * self.bins).long().clamp(max=self.bins - 1)  # torch.histc's bins over [0, 1]
        inside = torch.stack([((yz >= lo) & (yz <= hi))[mask] for lo, hi in
                              (interval(forecast, level) for level in self.levels)]).double().cpu()  # [L, n]
        self.pit += torch.bincount(bin_of, minlength=self.bins).double()
        self.inside += inside.sum(1)
        self.count += int(u.numel())
        if self.groups:
            g = group[mask].long().cpu()
            G, bins = self.groups, self.bins
            self.group_pit += torch.bincount(g * bins + bin_of, minlength=G * bins).double().view(G, bins)
            self.group_inside += torch.stack([torch.bincount(g, weights=row, minlength=G) for row in inside], 1)
            self.group_count += torch.bincount(g, minlength=G).double()

    def _summary(self, n: int, pit: torch.Tensor, inside: torch.Tensor) -> dict:
        edges = torch.linspace(0, 1, self.bins + 1).tolist()
        return {"count": n, "pit": {"edges": [round(e, 6) for e in edges], "density": (pit * self.bins / n).tolist()},
                "reliability": [{"nominal": level, "observed": float(k) / n}
                                for level, k in zip(self.levels, inside)]}

    def compute(self) -> dict:
        """``{"count": n, "pit": {"edges": [bins + 1], "density": [bins]}, "reliability": [{"nominal": L,
        "observed": share}, ...]}`` as Python numbers (density 1 everywhere for a calibrated forecast)."""
        if not self.count:
            raise ConfigError("calibration: the split holds no valid target reading")
        return self._summary(self.count, self.pit, self.inside)

    def compute_groups(self) -> dict:
        """``{g: compute()-like dict}`` for every group ``g`` with a valid reading."""
        return {g: self._summary(int(self.group_count[g]), self.group_pit[g], self.group_inside[g])
                for g in range(self.groups) if self.group_count[g] > 0}


def evaluate_calibration(predictions, null_value: float, groups=None) -> dict:
    """:meth:`CalibrationAccumulator.compute` of one pass over ``predictions`` (``(forecast, y, starts)`` per
    batch in data units, :meth:`stgraph.training.forecaster.Forecaster.predictions`).

    ``groups``: ``(names, ids)`` with ``ids(starts, y) -> [B, T_out, N, C]`` group indices into ``names``
    (:func:`stgraph.regimes.grouper`, e.g. the traffic regimes): the result then also holds, under ``"by"``,
    each group's PIT histogram and reliability (a group without a valid reading is left out).
    """
    names, ids = groups if groups is not None else ((), None)
    acc = CalibrationAccumulator(null_value, groups=len(names))
    for out, y, starts in predictions:
        acc.update(out, y, ids(starts, y) if names else None)
    result = acc.compute()
    if names:
        result["by"] = {names[g]: summary for g, summary in acc.compute_groups().items()}
    return result


__all__ = ["CalibrationAccumulator", "LEVELS", "PIT_BINS", "evaluate_calibration"]
