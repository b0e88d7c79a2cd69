"""Masked forecasting metrics (MAE, RMSE, MAPE), one-shot and streaming.

Nulls: an entry of ``true`` is valid when it is not NaN and, for a numeric
``null_value`` (0.0 for METR-LA / PEMS-BAY), not equal to it. Metrics average
over the valid entries only. This is the DCRNN/GWNet renormalised mask
(``mask /= mask.mean(); mean(err * mask)``) written as
``sum(err * mask) / sum(mask)``, which is the same number and never divides
by a zero mean. MAPE also skips entries where ``true == 0`` (it is undefined
there; with ``null_value=0.0`` these are the nulls anyway).

All-null convention: a slice with no valid entry has no defined error, so
every metric is **NaN** for it (not 0, which would look perfect and pull
averages down). For a training loss on such a batch the value is NaN but the
gradient is 0; skip the step.

Units: :func:`masked_mape` returns a **fraction** (0.078), like the DCRNN/GWNet
functions. The reports of :func:`horizon_metrics` and
:class:`MetricAccumulator` give MAPE in **percent** (7.8 means 7.8%), as the
papers' tables do.

Everything runs in torch on the tensors' device; the streaming accumulator
keeps its sums there and transfers once, in :meth:`MetricAccumulator.compute`.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Sequence

import torch

from .distributions import crps, interval, nll, point
from .errors import ConfigError, SeriesError
from .io.series import null_mask

DEFAULT_HORIZONS = (3, 6, 12)

#: z of the central 90% interval of a normal distribution (the 95% quantile): ``mu +- Z90 * sigma``
Z90 = 1.6448536269514722

#: share of valid true values that are 0 above which MAPE is reported as meaningless
MAPE_MAX_ZERO_SHARE = 0.01


def default_steps(horizon: int, step_minutes: float | None = None) -> list[int]:
    """The horizon steps ``evaluate``, ``plot`` and the ``bench`` tables and plot report by default (``--steps``
    chooses others): every step up to a horizon of 4 (a 4-step weekly forecast shows steps 1-4); beyond, the
    first, the middle (``(horizon + 1) // 2``) and the last step and the standard 3, 6, 12 where they exist
    (horizon 7: 1, 3, 4, 6, 7; horizon 14: 1, 3, 6, 7, 12, 14), except the papers' 3, 6, 12 (15 / 30 / 60 min)
    for 12-step 5-minute data (METR-LA, PEMS-BAY: the published tables' columns)."""
    if horizon <= 4:
        return list(range(1, horizon + 1))
    if step_minutes == 5 and horizon == 12:
        return list(DEFAULT_HORIZONS)
    return sorted({1, (horizon + 1) // 2, horizon} | {h for h in DEFAULT_HORIZONS if h <= horizon})


def parse_steps(text: str, horizon: int) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]``, checked against the ``horizon`` predicted steps."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        steps = [int(t) for t in items]
    except ValueError:
        raise ConfigError(f"steps={text!r}: expected comma-separated step numbers, e.g. '1,2,4'") from None
    return _check_horizons(steps, horizon)


def mape_note(valid: float, zeros: float, negatives: float) -> str | None:
    """Why MAPE means nothing here (``None`` when it does): negative true values (centred or z-scored
    data), or more than :data:`MAPE_MAX_ZERO_SHARE` of them 0 (counts), where it is undefined."""
    if not valid:
        return None
    if negatives:
        return (f"MAPE left out: {100 * negatives / valid:.1f}% of the true values are negative (centred or "
                f"z-scored data?), so a percentage error has no meaningful base; read MAE / RMSE")
    if zeros / valid > MAPE_MAX_ZERO_SHARE:
        return (f"MAPE left out: {100 * zeros / valid:.1f}% of the true values are 0, where a percentage error "
                f"is undefined (MAPE skips them and is dominated by the smallest non-zero values); read MAE / RMSE")
    return None


def valid_mask(true: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Bool tensor shaped like ``true``: True where the reading is valid (not null, not NaN); the
    negation of :func:`stgraph.io.series.null_mask`."""
    return ~null_mask(true, null_value)


def _pair(pred, true) -> tuple[torch.Tensor, torch.Tensor]:
    pred, true = torch.as_tensor(pred), torch.as_tensor(true)
    if pred.shape != true.shape:
        raise SeriesError(f"pred has shape {tuple(pred.shape)} but true has {tuple(true.shape)}; "
                          f"they must match (e.g. both [B, T_out, N, C])")
    return pred, true


def masked_abs_error_sum(pred: torch.Tensor, true: torch.Tensor,
                         null_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of |pred - true| over valid entries, valid mask)``: a scalar tensor and a bool tensor shaped
    like ``true``. Differentiable; the parts a loss or a metric divides as it needs."""
    pred, true = _pair(pred, true)
    m = valid_mask(true, null_value)
    err = torch.where(m, pred - true, torch.zeros((), dtype=pred.dtype, device=pred.device))
    return err.abs().sum(), m


def masked_mae(pred: torch.Tensor, true: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean absolute error over valid entries; scalar tensor (NaN when none is valid). Differentiable."""
    total, m = masked_abs_error_sum(pred, true, null_value)
    return total / m.sum()


def masked_nll_sum(dist: torch.distributions.Distribution, true: torch.Tensor,
                   null_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of -log p(true) over valid entries, valid mask)`` for a forecast distribution shaped like
    ``true`` (e.g. ``[B, T_out, N, C]``; any of :mod:`stgraph.distributions`). Differentiable; null entries
    add nothing (and no gradient)."""
    m = valid_mask(true, null_value)
    per = nll(dist, torch.where(m, true, torch.zeros_like(true)))
    return torch.where(m, per, torch.zeros_like(per)).sum(), m


def masked_nll(dist: torch.distributions.Distribution, true: torch.Tensor,
               null_value: float = 0.0) -> torch.Tensor:
    """Mean negative log-likelihood over valid entries; scalar tensor (NaN when none is valid)."""
    total, m = masked_nll_sum(dist, true, null_value)
    return total / m.sum()


def masked_mse(pred: torch.Tensor, true: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean squared error over valid entries; scalar tensor (NaN when none is valid)."""
    pred, true = _pair(pred, true)
    m = valid_mask(true, null_value)
    err = torch.where(m, pred - true, torch.zeros((), dtype=pred.dtype, device=pred.device))
    return (err * err).sum() / m.sum()


def masked_rmse(pred: torch.Tensor, true: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Root of :func:`masked_mse` over all given entries jointly; scalar tensor (NaN when none is valid)."""
    return masked_mse(pred, true, null_value).sqrt()


def masked_mape(pred: torch.Tensor, true: torch.Tensor, null_value: float = 0.0) -> torch.Tensor:
    """Mean absolute percentage error as a **fraction**, over valid non-zero entries (NaN when none)."""
    pred, true = _pair(pred, true)
    m = valid_mask(true, null_value) & (true != 0)
    one = torch.ones((), dtype=true.dtype, device=true.device)
    ape = torch.where(m, (pred - true).abs() / torch.where(m, true.abs(), one),
                      torch.zeros((), dtype=pred.dtype, device=pred.device))
    return ape.sum() / m.sum()


class MetricAccumulator:
    """Streaming masked MAE / RMSE / MAPE per horizon step over batches.

    ``update(pred, true)`` takes ``[B, T_out, ...]`` tensors (time on axis 1)
    and adds, per step, float64 sums of absolute error, squared error,
    absolute percentage error and the valid counts, on the tensors' device,
    without any host transfer. :meth:`compute` gives the same dict as
    :func:`horizon_metrics` on the concatenation of all batches.

    Args:
        num_steps: ``T_out``; optional, then fixed by the first batch. Every batch must have it.
        null_value: marks a missing reading in ``true`` (0.0 or NaN).
        horizons: 1-based steps to report; horizon ``h`` is step index ``h - 1``.
            ``None`` (default) reports those of 3, 6, 12 that exist (or the last step).
            :meth:`compute` can override them.
    """

    def __init__(self, num_steps: int | None = None, null_value: float = 0.0,
                 horizons: Sequence[int] | None = None) -> None:
        if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, Real)
                                      or not float(num_steps).is_integer() or num_steps < 1):
            raise ConfigError(f"num_steps is {num_steps!r}; expected the number of predicted steps (>= 1) or None")
        self.num_steps = None if num_steps is None else int(num_steps)
        self.null_value = float(null_value)
        self.horizons = None if horizons is None else _check_horizons(horizons, self.num_steps)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        self._sums: torch.Tensor | None = None  # [6, T_out]: abs, sq, ape, count, ape_count, negatives

    @torch.no_grad()
    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        """Add a batch; ``pred`` and ``true`` are ``[B, T_out, ...]`` in the same (raw) units."""
        pred, true = _pair(pred, true)
        if pred.ndim < 2:
            raise SeriesError(f"pred has shape {tuple(pred.shape)}; expected [B, T_out, ...] with time on axis 1")
        steps = pred.shape[1]
        expected = self.num_steps if self._sums is None else self._sums.shape[1]
        if expected is not None and steps != expected:
            raise SeriesError(f"this batch has {steps} horizon steps but the accumulator expects {expected}; "
                              f"pass [B, T_out, ...] tensors with the same T_out, or reset()")
        if self.horizons is not None:
            _check_horizons(self.horizons, steps)
        dims = [0] + list(range(2, pred.ndim))
        m = valid_mask(true, self.null_value)
        zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
        err = torch.where(m, pred - true, zero).abs()
        mp = m & (true != 0)
        ape = torch.where(mp, err / torch.where(mp, true.abs(), torch.ones_like(zero)), zero)
        f64 = torch.float64
        sums = torch.stack([err.sum(dims, dtype=f64), (err * err).sum(dims, dtype=f64), ape.sum(dims, dtype=f64),
                            m.sum(dims, dtype=f64), mp.sum(dims, dtype=f64), (m & (true < 0)).sum(dims, dtype=f64)])
        self._sums = sums if self._sums is None else self._sums + sums

    def all_reduce(self, num_steps: int, device=None) -> None:
        """Add the sums and counts of every process of the default ``torch.distributed`` group
        (data-parallel evaluation: each process saw a part of the windows). A process that saw no
        batch takes part with zeros ``[5, num_steps]`` on ``device``. Afterwards :meth:`compute` gives,
        on every process, the figures of all the windows."""
        if self._sums is None:
            self._sums = torch.zeros(5, int(num_steps), dtype=torch.float64, device=device)
        torch.distributed.all_reduce(self._sums, op=torch.distributed.ReduceOp.SUM)

    def compute(self, horizons: Sequence[int] | None = None) -> dict:
        """``{"horizons": {"3": {"mae", "rmse", "mape"}, ...}, "average": {...}}`` as Python floats.

        ``horizons`` (default: the constructor's) picks the reported steps;
        ``average`` pools every entry of every step (not a mean of per-step
        metrics). MAPE is in percent. A step with no valid entry gives NaN. When MAPE means nothing
        for these true values (see :func:`mape_note`) the dict also holds ``"mape_note"`` saying why.
        """
        if self._sums is None:
            raise SeriesError("no batch was added to the MetricAccumulator; call update(pred, true) first")
        steps = self._sums.shape[1]
        hs = horizons if horizons is not None else self.horizons
        if hs is None:
            hs = [h for h in DEFAULT_HORIZONS if h <= steps] or [steps]
        hs = _check_horizons(hs, steps)
        abs_s, sq_s, ape_s, cnt, ape_cnt, neg = self._sums.cpu().tolist()  # the one transfer
        out = {"horizons": {str(h): _finish(abs_s[h - 1], sq_s[h - 1], ape_s[h - 1], cnt[h - 1], ape_cnt[h - 1])
                            for h in hs}}
        out["average"] = _finish(sum(abs_s), sum(sq_s), sum(ape_s), sum(cnt), sum(ape_cnt))
        note = mape_note(sum(cnt), sum(cnt) - sum(ape_cnt), sum(neg))
        if note:
            out["mape_note"] = note
        return out


class ProbabilisticAccumulator:
    """Streaming masked coverage of the central 90% interval and CRPS per horizon step, for forecast
    distributions ``[B, T_out, ...]`` (any of :mod:`stgraph.distributions`: for the ``Normal`` the
    interval is ``mu +- Z90 * sigma`` and the CRPS its closed form) against ``true`` of that shape.

    Sums and counts are float64 tensors ``[T_out]`` on ``device``; :meth:`compute` transfers once."""

    def __init__(self, horizon: int, null_value: float, device=None):
        self.null_value = float(null_value)
        self.cover = torch.zeros(horizon, dtype=torch.float64, device=device)
        self.crps = torch.zeros(horizon, dtype=torch.float64, device=device)
        self.count = torch.zeros(horizon, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, dist: torch.distributions.Distribution, true: torch.Tensor) -> None:
        """Add a batch: ``dist`` a forecast distribution and ``true`` ``[B, T_out, ...]`` in the same units."""
        mask = valid_mask(true, self.null_value)
        yz = torch.where(mask, true, point(dist))
        lo, hi = interval(dist, 0.9)
        inside = (yz >= lo) & (yz <= hi) & mask
        score = crps(dist, yz)
        score = torch.where(mask, score, torch.zeros_like(score))
        dims = [d for d in range(true.dim()) if d != 1]
        self.cover += inside.double().sum(dim=dims)
        self.crps += score.double().sum(dim=dims)
        self.count += mask.double().sum(dim=dims)

    def all_reduce(self, dist) -> None:
        """Add the sums and counts of every process (``dist``: a :class:`~stgraph.training.distributed.Dist`)."""
        sums = dist.all_reduce_sum(torch.stack([self.cover, self.crps, self.count]))
        self.cover, self.crps, self.count = sums.unbind(0)

    def compute(self, horizons: Sequence[int]) -> dict:
        """``{"horizons": {"3": {"coverage90", "crps"}, ...}, "average": {...}}`` as Python floats."""
        cover = (self.cover / self.count).tolist()
        crps = (self.crps / self.count).tolist()
        total = self.count.sum().clamp(min=1)
        return {
            "horizons": {str(h): {"coverage90": cover[h - 1], "crps": crps[h - 1]} for h in horizons},
            "average": {"coverage90": float(self.cover.sum() / total), "crps": float(self.crps.sum() / total)},
        }


def horizon_metrics(pred: torch.Tensor, true: torch.Tensor, null_value: float = 0.0,
                    horizons: Sequence[int] = DEFAULT_HORIZONS) -> dict:
    """MAE / RMSE / MAPE (percent) at the given 1-based horizon steps and pooled over all steps.

    Args:
        pred, true: ``[B, T_out, N, C]`` (any trailing shape) in raw units.

    Returns:
        ``{"horizons": {"3": {"mae", "rmse", "mape"}, ...}, "average": {...}}``.
    """
    acc = MetricAccumulator(None, null_value, horizons)
    acc.update(pred, true)
    return acc.compute()


def _check_horizons(horizons: Sequence[int], steps: int | None) -> list[int]:
    bad = [h for h in horizons
           if isinstance(h, bool) or not isinstance(h, Real) or not float(h).is_integer() or h < 1]
    if bad or not len(horizons):
        raise ConfigError(f"horizons are {list(horizons)}; expected 1-based step numbers >= 1, e.g. (3, 6, 12)")
    too_far = [int(h) for h in horizons if steps is not None and h > steps]
    if too_far:
        raise ConfigError(f"horizons {too_far} exceed the {steps} predicted steps; "
                          f"report horizons between 1 and {steps}")
    return [int(h) for h in horizons]


def _finish(abs_s: float, sq_s: float, ape_s: float, cnt: float, ape_cnt: float) -> dict[str, float]:
    nan = float("nan")
    return {"mae": abs_s / cnt if cnt else nan,
            "rmse": math.sqrt(sq_s / cnt) if cnt else nan,
            "mape": 100.0 * ape_s / ape_cnt if ape_cnt else nan}
