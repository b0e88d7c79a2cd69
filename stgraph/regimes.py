"""Evaluation by group: traffic regime, sensor or hour of day, through one grouping function.

``stgraph evaluate RUN --by regime|sensor|hour`` and :func:`stgraph.evaluate` ``(run, by=...)`` label every
target reading ``y [B, T_out, N, C]`` with a group (:func:`group_ids`, the one grouping function) and add,
per group and horizon step, the share of the valid readings, MAE, RMSE and, for a probabilistic run, the
coverage of the central 90% band and the CRPS (:class:`GroupAccumulator`).

Regimes (``by="regime"``), labelled from the data itself (:class:`RegimeConfig`, defaults below):

* per sensor and channel the **free-flow speed** is the ``free_flow_quantile`` (0.85) quantile of its
  valid readings in the training rows, and the **threshold** ``congested_fraction`` (0.6) of it;
* **transition**: the truth crosses the threshold within the window: the last input reading and the
  ``T_out`` target readings of that sensor do not all fall on the same side of it (so a target on the
  other side of the last input is always a transition); every step of such a window is a transition;
* otherwise **congested** (below the threshold) or **free flow** (at or above it).

A free-flow speed means nothing for counts and other non-speed targets (:func:`is_speed_target`): there
the user gives the ``threshold`` in data units (one for every sensor), or the evaluation says that
regimes do not apply (:class:`~stgraph.errors.ConfigError`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch.distributions import Distribution

from .distributions import crps, interval, point
from .errors import ConfigError
from .metrics import valid_mask

#: what ``--by`` takes
GROUPINGS = ("regime", "sensor", "hour")

#: the regime labels, in the order of their ids
REGIMES = ("free flow", "congested", "transition")

#: words in a target channel's name that mark counts (no free-flow speed); see :func:`is_speed_target`
COUNT_WORDS = ("count", "cases", "flow", "volume", "occupancy", "boarding", "demand", "trips")

#: the figures of a group at a horizon step (``coverage90`` and ``crps`` for probabilistic runs only)
FIGURES = ("share", "mae", "rmse", "coverage90", "crps")


@dataclass(frozen=True)
class RegimeConfig:
    """How readings are labelled free flow / congested / transition (``stgraph evaluate --by regime``).

    Attributes:
        free_flow_quantile: per-sensor free-flow speed = this quantile of its valid training readings
            (default 0.85: a high quantile, above the rush hours, below the outliers).
        congested_fraction: congested below this fraction of the free-flow speed (default 0.6: 39 mph on a
            65 mph road).
        threshold: one threshold in data units for every sensor instead of the derived ones; required for
            a target that is not a speed (counts), where a free-flow speed means nothing (default None).
    """

    free_flow_quantile: float = 0.85
    congested_fraction: float = 0.6
    threshold: Optional[float] = None

    def validate(self) -> "RegimeConfig":
        for name in ("free_flow_quantile", "congested_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ConfigError(f"{name} = {v!r}: expected a number in (0, 1], e.g. "
                                  f"{getattr(RegimeConfig, name)}")
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise ConfigError(f"threshold = {t!r}: expected a finite number in data units (or None: derived "
                              f"per sensor from its free-flow speed)")
        return self


def is_speed_target(data) -> bool:
    """Whether the run's target is a speed, for which a free-flow speed is defined: not when a target
    channel's name mentions counts (:data:`COUNT_WORDS`) or every valid training reading is a whole number
    (counts). ``data``: a :class:`~stgraph.data.ForecastData`."""
    names = " ".join(data.target_channel_names).lower()
    if any(w in names for w in COUNT_WORDS):
        return False
    values = training_targets(data)
    values = values[valid_mask(values, data.null_value)]
    return bool(values.numel()) and not bool((values == values.round()).all())


def training_targets(data) -> torch.Tensor:
    """``[T_train, N, C]`` the target readings in the rows of the training windows (data units)."""
    from .data.windows import take_rows

    starts = data.split_starts("train")
    if not len(starts):
        raise ConfigError("the run has no training windows, so no free-flow speed can be derived; pass "
                          "threshold=VALUE in data units")
    end = int(starts.max()) + data.input_len + data.horizon
    return take_rows(data.targets, torch.arange(end, device=starts.device)[None])[0]


def thresholds(data, cfg: RegimeConfig | None = None) -> torch.Tensor:
    """``[N, C]`` the congestion threshold of every sensor and target channel in data units:
    ``cfg.congested_fraction`` times the ``cfg.free_flow_quantile`` quantile of its valid training readings,
    or ``cfg.threshold`` everywhere.

    Raises:
        ConfigError: a non-speed target (:func:`is_speed_target`) without ``cfg.threshold``.
    """
    cfg = (cfg or RegimeConfig()).validate()
    shape = (data.num_nodes, data.out_channels)
    if cfg.threshold is not None:
        return torch.full(shape, float(cfg.threshold))
    if not is_speed_target(data):
        raise ConfigError(f"regimes (free flow / congested / transition) apply to speeds; the target "
                          f"{data.target_channel_names} holds counts or other non-speed values, so no free-flow "
                          f"speed exists: pass threshold=VALUE in data units, or group by='sensor' or by='hour'")
    values = training_targets(data).float()
    values = torch.where(valid_mask(values, data.null_value), values, torch.nan)
    free = torch.nanquantile(values.reshape(values.shape[0], -1), cfg.free_flow_quantile, dim=0).reshape(shape)
    return (cfg.congested_fraction * free).cpu()


def regime_labels(last: torch.Tensor, y: torch.Tensor, threshold: torch.Tensor,
                  null_value: float) -> torch.Tensor:
    """``[B, T_out, N, C]`` int64 ids into :data:`REGIMES` of the target readings ``y [B, T_out, N, C]``,
    from the last input readings ``last [B, 1, N, C]`` and the thresholds ``[N, C]`` (all data units).
    A null reading is left out of the crossing test and takes its window's side (it has no metric)."""
    seq = torch.cat([last.to(y.dtype), y], dim=1)
    valid = valid_mask(seq, null_value)
    below = seq < threshold.to(seq.device, seq.dtype)
    any_below = (below & valid).any(dim=1, keepdim=True)
    mixed = any_below & (~below & valid).any(dim=1, keepdim=True)
    labels = torch.where(valid[:, 1:], below[:, 1:], any_below).long()  # 0 free flow, 1 congested
    return torch.where(mixed, torch.full_like(labels, 2), labels)


def group_names(by: str, data) -> list[str]:
    """The names of the groups of ``by`` (:data:`GROUPINGS`), in the order of their ids."""
    if by == "regime":
        return list(REGIMES)
    if by == "sensor":
        return [str(s) for s in data.sensor_ids]
    return [f"{h:02d}:00" for h in range(24)]


def check_by(by: str, data) -> None:
    """``by`` must be one of :data:`GROUPINGS`; ``hour`` needs sub-daily data."""
    if by not in GROUPINGS:
        raise ConfigError(f"by={by!r}: expected one of {list(GROUPINGS)}")
    step = data.interval_minutes
    if by == "hour" and (step is None or step >= 24 * 60):
        raise ConfigError(f"by='hour' needs readings more often than daily; this series has one every "
                          f"{step} minutes: group by='regime' or by='sensor'")


def group_ids(by: str, data, starts: torch.Tensor, y: torch.Tensor,
              threshold: torch.Tensor | None = None) -> torch.Tensor:
    """The one grouping function: ``[B, T_out, N, C]`` int64 group ids (into :func:`group_names`) of the
    target readings ``y [B, T_out, N, C]`` of the windows starting at ``starts [B]``.

    ``by``: ``"regime"`` (:func:`regime_labels`, ``threshold [N, C]`` from :func:`thresholds`), ``"sensor"``
    (the sensor's index) or ``"hour"`` (the hour of day of the target's timestamp, 0-23)."""
    from .data.windows import take_rows

    b, t, n, c = y.shape
    if by == "sensor":
        return torch.arange(n, device=y.device).view(1, 1, n, 1).expand(b, t, n, c)
    if by == "hour":
        tod = take_rows(data.tod, data.windows.target_rows(starts.to(data.tod.device)))
        hour = (tod.to(y.device) * 24).long().clamp(0, 23)
        return hour.view(b, t, 1, 1).expand(b, t, n, c)
    if threshold is None:
        raise ConfigError("group_ids(by='regime') needs threshold, the [N, C] thresholds of thresholds(data)")
    rows = data.windows.input_rows(starts)[:, -1:]
    last = take_rows(data.targets, rows.to(starts.device)).to(y.device)
    return regime_labels(last, y, threshold, data.null_value)


class GroupAccumulator:
    """Streaming per-group, per-step sums: valid count, absolute and squared error, and for forecast
    distributions the readings inside the central 90% band and the CRPS (float64 ``[G, T_out]``)."""

    def __init__(self, num_groups: int, horizon: int, null_value: float) -> None:
        self.shape = (int(num_groups), int(horizon))
        self.null_value = float(null_value)
        self.sums = {k: torch.zeros(self.shape, dtype=torch.float64) for k in ("count", "abs", "sq", "cover", "crps")}
        self.probabilistic = False

    @torch.no_grad()
    def update(self, forecast, y: torch.Tensor, groups: torch.Tensor) -> None:
        """Add a batch: ``forecast`` ``[B, T_out, N, C]`` (a tensor or a distribution of that shape), ``y`` the
        truth and ``groups`` the int64 ids of :func:`group_ids`, both ``[B, T_out, N, C]``, in data units."""
        g, steps = self.shape
        mask = valid_mask(y, self.null_value)
        prob = isinstance(forecast, Distribution)
        pred = point(forecast) if prob else forecast
        err = (pred.float() - y.float())[mask].double()
        step = torch.arange(steps, device=y.device).view(1, steps, 1, 1).expand_as(y)
        key = (groups.expand_as(y) * steps + step)[mask].cpu()
        values = {"count": torch.ones_like(err), "abs": err.abs(), "sq": err * err}
        if prob:
            self.probabilistic = True
            yz = torch.where(mask, y, pred)
            lo, hi = interval(forecast, 0.9)
            values["cover"] = ((yz >= lo) & (yz <= hi))[mask].double()
            values["crps"] = crps(forecast, yz)[mask].double()
        for name, v in values.items():
            self.sums[name] += torch.bincount(key, weights=v.cpu(), minlength=g * steps).view(g, steps)

    def compute(self, horizons: Sequence[int], names: Sequence[str]) -> dict:
        """``{name: {"horizons": {"3": {"share", "mae", "rmse"[, "coverage90", "crps"]}}, "average": {...}}}``
        for every group with a valid reading, as Python floats (``share``: of the step's valid readings)."""
        s = self.sums
        out = {}
        for i, name in enumerate(names):
            if not s["count"][i].sum():
                continue
            per = {str(h): self._figures(i, [h - 1]) for h in horizons}
            out[name] = {"horizons": per, "average": self._figures(i, list(range(self.shape[1])))}
        return out

    def _figures(self, i: int, steps: list[int]) -> dict[str, float]:
        s = {k: float(v[i, steps].sum()) for k, v in self.sums.items()}
        total = float(self.sums["count"][:, steps].sum())
        n = s["count"]
        nan = float("nan")
        got = {"share": n / total if total else nan, "mae": s["abs"] / n if n else nan,
               "rmse": math.sqrt(s["sq"] / n) if n else nan}
        if self.probabilistic:
            got.update(coverage90=s["cover"] / n if n else nan, crps=s["crps"] / n if n else nan)
        return got


def evaluate_groups(predictions, data, by: str, horizons: Sequence[int], cfg: RegimeConfig | None = None) -> dict:
    """Figures by group of one pass over ``predictions`` (``(forecast, y, starts)`` per batch in data units,
    :meth:`stgraph.training.forecaster.Forecaster.predictions`) of a run's ``data``.

    Returns:
        ``{"by": by, "groups": {name: {"horizons": {...}, "average": {...}}}}`` (:meth:`GroupAccumulator.compute`)
        plus, for regimes, ``"thresholds"``: the settings and the mean threshold over the sensors.
    """
    check_by(by, data)
    thr = thresholds(data, cfg) if by == "regime" else None
    names = group_names(by, data)
    acc = GroupAccumulator(len(names), data.horizon, data.null_value)
    for out, y, starts in predictions:
        acc.update(out, y, group_ids(by, data, starts, y, thr))
    result = {"by": by, "groups": acc.compute(horizons, names)}
    if thr is not None:
        cfg = cfg or RegimeConfig()
        result["thresholds"] = {"free_flow_quantile": cfg.free_flow_quantile,
                                "congested_fraction": cfg.congested_fraction, "threshold": cfg.threshold,
                                "mean_threshold": float(thr.mean())}
    return result


def grouper(by: str, data, cfg: RegimeConfig | None = None) -> tuple[list[str], object]:
    """``(names, ids)`` of a grouping, ``ids(starts, y) -> [B, T_out, N, C]`` group indices into ``names``:
    :func:`group_ids` with the thresholds computed once (for calibration by group,
    :func:`stgraph.calibration.evaluate_calibration`)."""
    check_by(by, data)
    thr = thresholds(data, cfg) if by == "regime" else None
    return list(group_names(by, data)), lambda starts, y: group_ids(by, data, starts, y, thr)


__all__ = ["COUNT_WORDS", "FIGURES", "GROUPINGS", "GroupAccumulator", "REGIMES", "RegimeConfig", "check_by",
           "evaluate_groups", "group_ids", "group_names", "grouper", "is_speed_target", "regime_labels", "thresholds",
           "training_targets"]


def format_groups(by: dict, data=None) -> str:
    """Plain-text table of :func:`stgraph.regimes.evaluate_groups`: one row per group and horizon step."""
    from .io.series import horizon_text

    step = getattr(data, "interval_minutes", None) if data is not None else None
    groups = by["groups"]
    first = next(iter(groups.values()))["average"] if groups else {}
    keys = [k for k in ("share", "mae", "rmse", "coverage90", "crps") if k in first]
    head = f"{by['by']:>12} {'horizon':>16} " + " ".join(f"{k.upper():>10}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, g in groups.items():
        rows = list(g["horizons"].items()) + [("average", g["average"])]
        for h, vals in rows:
            label = f"{h} ({horizon_text(int(h), step)})" if step and h != "average" else h
            lines.append(f"{name[:12]:>12} {label:>16} " + " ".join(f"{vals[k]:>10.4f}" for k in keys))
    thr = by.get("thresholds")
    if thr:
        lines.append(f"regime thresholds: mean {thr['mean_threshold']:.4g} in data units (free-flow quantile "
                     f"{thr['free_flow_quantile']}, congested below {thr['congested_fraction']} of it"
                     + (f"; given {thr['threshold']}" if thr["threshold"] is not None else "") + ")")
    return "\n".join(lines)
