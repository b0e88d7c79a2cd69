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
    """Streaming PIT histogram and per-level band counts over batches (float64 sums)."""

    def __init__(self, null_value: float, bins: int = PIT_BINS, levels=LEVELS) -> None:
        self.null_value = float(null_value)
        self.bins = int(bins)
        self.levels = tuple(float(v) for v in levels)
        self.pit = torch.zeros(self.bins, dtype=torch.float64)
        self.inside = torch.zeros(len(self.levels), dtype=torch.float64)
        self.count = 0

    @torch.no_grad()
    def update(self, forecast, y: torch.Tensor, keep: torch.Tensor | None = None) -> None:
        """Add a batch: ``forecast`` a distribution of batch shape ``[B, T_out, N, C]`` and ``y [B, T_out, N, C]``
        the truth, both in data units (null readings left out); ``keep [B, T_out, N, C]`` (bool): only these
        readings (one group's, :func:`evaluate_calibration`'s ``groups``).

        Raises:
            ConfigError: ``forecast`` is a point forecast (a tensor): calibration needs a distribution.
        """
        if not isinstance(forecast, Distribution):
            raise ConfigError("calibration needs a forecast distribution, but the run gives point forecasts: train "
                              "it with probabilistic=True (--probabilistic)")
        mask = valid_mask(y, self.null_value)
        if keep is not None:
            mask = mask & keep
        yz = torch.where(mask, y, forecast.loc.to(y.dtype)).to(forecast.loc.dtype)
        u = forecast.cdf(yz)[mask].double().clamp(0, 1)
        self.pit += torch.histc(u.cpu(), bins=self.bins, min=0.0, max=1.0)
        for i, level in enumerate(self.levels):
            lo, hi = interval(forecast, level)
            self.inside[i] += float(((yz >= lo) & (yz <= hi))[mask].sum())
        self.count += int(mask.sum())

    def compute(self) -> dict:
        """``{"count": n, "pit": {"edges": [bins + 1], "density": [bins]}, "reliability": [{"nominal": L,
        "observed": share}, ...]}`` as Python numbers (density 1 everywhere for a calibrated forecast)."""
        n = self.count
        if not n:
            raise ConfigError("calibration: the split holds no valid target reading")
        edges = torch.linspace(0, 1, self.bins + 1).tolist()
        return {"count": n, "pit": {"edges": [round(e, 6) for e in edges],
                                    "density": (self.pit * self.bins / n).tolist()},
                "reliability": [{"nominal": level, "observed": float(k) / n}
                                for level, k in zip(self.levels, self.inside)]}


def evaluate_calibration(predictions, null_value: float, groups=None) -> dict:
    """:meth:`CalibrationAccumulator.compute` of one pass over ``predictions`` (``(forecast, y, starts)`` per
    batch in data units, :meth:`stgraph.training.forecaster.Forecaster.predictions`).

    ``groups``: ``(names, ids)`` with ``ids(starts, y) -> [B, T_out, N, C]`` group indices into ``names``
    (:func:`stgraph.regimes.grouper`, e.g. the traffic regimes): the result then also holds, under ``"by"``,
    each group's PIT histogram and reliability (a group without a valid reading is left out).
    """
    acc = CalibrationAccumulator(null_value)
    names, ids = groups if groups is not None else ((), None)
    per = [CalibrationAccumulator(null_value) for _ in names]
    for out, y, starts in predictions:
        acc.update(out, y)
        if per:
            g = ids(starts, y)
            for k, a in enumerate(per):
                a.update(out, y, keep=g == k)
    result = acc.compute()
    if per:
        result["by"] = {name: a.compute() for name, a in zip(names, per) if a.count}
    return result


__all__ = ["CalibrationAccumulator", "LEVELS", "PIT_BINS", "evaluate_calibration"]
