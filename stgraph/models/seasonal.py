"""The residual a forecasting network starts from: last value, or a learned blend of last value and
the seasonal (time-of-week) average.

:class:`SeasonalResidual` is stgt's ``residual='blend'``: per horizon step ``h`` and channel,
``gate_last[h] * last + gate_seasonal[h] * HA(slot of step h)`` where ``HA`` is the package's
historical average (:class:`~stgraph.models.ha.HistoricalAverage`, fitted in closed form on the
training rows). :meth:`SeasonalResidual.fit_closed_form` starts the two gates at the least-squares blend
of the two closed-form forecasts over the training windows, so the network starts from the better
of last value and HA (or a mix) at every step and learns from there.

:func:`choose_residual` is the data-driven default: ``'blend'`` when the seasonal average beats last
value on the validation windows (pooled MAE over all steps) by a margin the number of windows supports,
else ``'last'`` (METR-LA-like speeds, where last value wins by far and stgt stays exactly what it was;
and any split with fewer than :data:`MIN_VALIDATION_WINDOWS` windows, where no difference is trusted).
"""
from __future__ import annotations

import math

from typing import NamedTuple, Sequence

import torch
from torch import nn

from ..metrics import valid_mask
from .ha import HistoricalAverage
from .registry import ClosedForm, ClosedFormData

#: ridge added to the 2x2 normal equations of the gate fit (z-score units)
GATE_RIDGE = 1e-3
#: fewer validation windows than this and a choice made on them (stgt's residual, the early-stopping
#: epoch) rests on too little: :func:`choose_residual` keeps ``'last'`` and ``stgraph train`` warns
MIN_VALIDATION_WINDOWS = 30
#: fewer windows than this and no choice is made at all: :func:`choose_residual` keeps ``'last'`` (on 4 validation
#: windows of a 61-day daily series the blend looked ahead and was worse on test: 7.53 against 6.65 MAE, issue 26)
MIN_CHOICE_WINDOWS = 10
#: the seasonal average must be ahead of last value by this many standard errors of the per-window
#: MAE difference for :func:`choose_residual` to choose ``'blend'``
CHOICE_STANDARD_ERRORS = 2.0
#: with fewer than :data:`MIN_VALIDATION_WINDOWS` windows, :func:`choose_residual` chooses ``'blend'`` only when
#: the seasonal average's pooled MAE is at least this share below last value's (hourly counts: 40-60 %)
FEW_WINDOWS_GAIN = 0.2


class SeasonalResidual(ClosedForm, nn.Module):
    """``gate_last * last + gate_seasonal * seasonal average`` per horizon step.

    Args:
        num_nodes, out_channels, horizon, steps_per_day: sizes (see :class:`HistoricalAverage`).
        target_channels: positions of the ``C_out`` targets among the inputs' channels.

    Shapes:
        - input: ``last`` ``[B, 1, N, C_out]`` (z-scored last observed targets), ``covariates`` with
          ``tod_out`` / ``dow_out`` ``[B, T_out]``
        - output: ``[B, T_out, N, C_out]``
    """

    def __init__(self, num_nodes: int, out_channels: int, horizon: int, steps_per_day: int,
                 target_channels: Sequence[int]):
        super().__init__()
        self.average = HistoricalAverage(num_nodes, out_channels, steps_per_day)
        self.gate_last = nn.Parameter(torch.empty(horizon, out_channels))
        self.gate_seasonal = nn.Parameter(torch.empty(horizon, out_channels))
        self.register_buffer("target_index", torch.tensor(list(target_channels)), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Pure persistence until :meth:`fit_closed_form` runs (gates 1 and 0, empty table)."""
        self.average.reset_parameters()
        nn.init.ones_(self.gate_last)
        nn.init.zeros_(self.gate_seasonal)

    def forward(self, last: torch.Tensor, covariates: dict) -> torch.Tensor:
        seasonal = self.average(None, None, covariates).to(last.dtype)  # [B, T_out, N, C_out]
        return self.gate_last[:, None, :] * last + self.gate_seasonal[:, None, :] * seasonal

    @torch.no_grad()
    def fit_closed_form(self, fit: ClosedFormData, batch_size: int = 256) -> None:
        """Fit the seasonal table on the training rows, then the gates by least squares over the training
        windows (per step and channel, valid targets only, in z-score units)."""
        self.average.fit_closed_form(fit)
        mean, std = (torch.tensor(v, dtype=torch.float64, device=self.gate_last.device)
                     for v in (fit.target_mean, fit.target_std))
        H, C = self.gate_last.shape
        sums = torch.zeros(5, H, C, dtype=torch.float64, device=self.gate_last.device)  # ll, ls, ss, ly, sy
        for b in fit.batches("train", batch_size):
            b = b.to(self.gate_last.device)
            last = b.x[:, -1:, :, :].index_select(-1, self.target_index).double()  # [B, 1, N, C]
            seas = self.average(None, None, b.covariates).double()  # [B, H, N, C]
            y = b.y.double()
            m = valid_mask(y, fit.null_value).double()
            yz = torch.where(m > 0, (y - mean) / std, torch.zeros_like(y))
            last = last.expand_as(seas)
            dims = (0, 2)
            sums += torch.stack([(m * last * last).sum(dims), (m * last * seas).sum(dims),
                                 (m * seas * seas).sum(dims), (m * last * yz).sum(dims),
                                 (m * seas * yz).sum(dims)])
        ll, ls, ss, ly, sy = sums
        count = max(float(fit.windows["train"]) * fit.num_nodes, 1.0)
        r = GATE_RIDGE * count
        det = (ll + r) * (ss + r) - ls * ls
        ok = det > 0
        a = torch.where(ok, ((ss + r) * ly - ls * sy) / det.clamp(min=1e-12), torch.ones_like(ll))
        b = torch.where(ok, ((ll + r) * sy - ls * ly) / det.clamp(min=1e-12), torch.zeros_like(ll))
        self.gate_last.copy_(a.float())
        self.gate_seasonal.copy_(b.float())


class ResidualChoice(NamedTuple):
    """What :func:`choose_residual` decided and on what: ``choice`` (``'blend'`` or ``'last'``), the pooled
    MAEs (data units) of ``last_mae`` (last value) and ``ha_mae`` (seasonal average), ``windows`` compared on
    ``split`` and ``reason``, a phrase for the log line."""
    choice: str
    last_mae: float
    ha_mae: float
    windows: int
    split: str
    reason: str


@torch.no_grad()
def choose_residual(fit: ClosedFormData, batch_size: int = 256) -> ResidualChoice:
    """Last value or the blend, from the validation windows (the training ones when there are none).

    ``'blend'`` only when the seasonal average's pooled MAE over every step is lower than last value's
    *and* the split has at least :data:`MIN_CHOICE_WINDOWS` windows *and* either it has at least
    :data:`MIN_VALIDATION_WINDOWS` windows and the average per-window
    gain is at least :data:`CHOICE_STANDARD_ERRORS` standard errors, or it has fewer and the seasonal
    average is at least :data:`FEW_WINDOWS_GAIN` below last value (the reason then says on how few
    windows the choice rests); the standard error comes from the gains
    averaged over blocks of ``horizon`` consecutive windows (neighbouring windows share most of their steps,
    so they are not independent). Anything else keeps ``'last'``, the model as it was.
    ``fit.target_channels`` must place every target among the inputs."""
    from ..metrics import MetricAccumulator
    from .last import LastValue

    ha = HistoricalAverage(fit.num_nodes, fit.out_channels, fit.steps_per_day)
    ha.fit_closed_form(fit)
    last = LastValue(fit.horizon, fit.target_channels)
    mean, std = (torch.tensor(v, dtype=torch.float32) for v in (fit.target_mean, fit.target_std))
    split = "val" if fit.windows["val"] else "train"
    accs = {"last": MetricAccumulator(fit.horizon, fit.null_value),
            "ha": MetricAccumulator(fit.horizon, fit.null_value)}
    gains = []  # per window: last value's MAE minus the seasonal average's (data units)
    for b in fit.batches(split, batch_size):
        b = b.to("cpu")
        m = valid_mask(b.y, fit.null_value).float()
        err = {}
        for name, model in (("last", last), ("ha", ha)):
            pred = model(b.x, None, b.covariates).float() * std + mean
            accs[name].update(pred, b.y)
            err[name] = (torch.where(m > 0, (pred - b.y.float()).abs(), torch.zeros_like(pred)) * m).flatten(1).sum(1)
        gains.append((err["last"] - err["ha"]) / m.flatten(1).sum(1).clamp(min=1.0))
    mae = {k: acc.compute([1])["average"]["mae"] for k, acc in accs.items()}
    gain = torch.cat(gains).double() if gains else torch.zeros(0, dtype=torch.float64)
    k, where = int(gain.numel()), {"val": "validation", "train": "training"}[split]

    def choice(name: str, reason: str) -> ResidualChoice:
        return ResidualChoice(name, mae["last"], mae["ha"], k, split, reason)

    if mae["ha"] >= mae["last"]:
        return choice("last", "last value is the better forecast")
    if k < MIN_CHOICE_WINDOWS:
        return choice("last", f"only {k} {where} windows (fewer than {MIN_CHOICE_WINDOWS}): too few to choose the "
                              f"blend on, whatever they show; keeping 'last'")
    if k < MIN_VALIDATION_WINDOWS:
        share = 1.0 - mae["ha"] / mae["last"]
        if share >= FEW_WINDOWS_GAIN:
            return choice("blend", f"the seasonal average is {share:.0%} ahead, at least {FEW_WINDOWS_GAIN:.0%}; the "
                                   f"choice rests on only {k} {where} windows (fewer than {MIN_VALIDATION_WINDOWS})")
        return choice("last", f"the seasonal average is {share:.0%} ahead, less than the {FEW_WINDOWS_GAIN:.0%} that "
                              f"{k} {where} windows (fewer than {MIN_VALIDATION_WINDOWS}) need; keeping 'last'")
    blocks = torch.stack([c.mean() for c in gain.split(max(1, fit.horizon))])
    se = float(blocks.std() / math.sqrt(blocks.numel())) if blocks.numel() > 1 else math.inf
    margin = CHOICE_STANDARD_ERRORS * se
    ahead = f"the seasonal average is ahead by {float(gain.mean()):.3g} a window"
    if float(gain.mean()) > margin:
        return choice("blend", f"{ahead}, more than {CHOICE_STANDARD_ERRORS:g} standard errors ({margin:.3g})")
    return choice("last", f"{ahead}, less than {CHOICE_STANDARD_ERRORS:g} standard errors ({margin:.3g}); keeping 'last'")
