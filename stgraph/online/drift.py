"""Drift report: a trained run's error per sensor over time, and the sensors whose error jumps.

``stgraph drift RUN_DIR --data PATH``: the run forecasts every window of ``PATH`` (every ``stride``-th
start); each window's masked MAE per sensor (averaged over its horizon steps and target channels) is
filed under the period (``period``, default a day) of its forecast origin, the last input step.
That gives ``errors [P, N]``: the rolling error of every sensor per period.

Each sensor's **rise** is its mean error over the last ``recent`` periods minus its mean over the
first ``baseline`` periods. A sensor is **flagged** when its rise exceeds the median rise of all sensors
by at least ``jump`` times the median baseline error of all sensors: its error grew by at least that
share of a typical sensor's error more than the network's did. A rebuilt road or a broken detector
shows as a flagged sensor; weather or a harder week that hits the whole network raises the median
rise with every sensor and flags nothing. (A ratio test, recent / baseline, misses congested sensors:
their baseline error is high, so even a large rise is a small ratio.)

Written into ``out`` (default ``RUN_DIR/drift``): ``drift.csv`` (one row per sensor: baseline,
recent, ratio, excess rise, flagged, first flagged period), ``errors.csv`` (the ``[P, N]`` table) and
``drift.png`` (every sensor's error over time, the flagged ones in colour).
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..cells import read_cell, safe_cell
from ..distributions import point
from ..errors import ConfigError
from ..files import atomic_open, atomic_write, check_replaceable, record_written
from ..io.series import iso, parse_interval
from ..metrics import valid_mask


def parse_period(period) -> np.timedelta64:
    """``period`` (``'1D'``, ``'6h'``) as ``timedelta64[ns]``; the drift report's bin width.

    Raises:
        ConfigError: not a duration, or zero.
    """
    from ..errors import SeriesError

    try:
        return parse_interval(period)
    except SeriesError as e:
        raise ConfigError(f"period = {period!r}: {e}") from None


def check_jump(jump) -> float:
    """``jump`` as a float: finite and > 0 (NaN flags nothing, a negative jump flags everyone)."""
    try:
        value = float(jump)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ConfigError(f"jump = {jump!r}: expected a finite number > 0, the share of the median baseline error "
                          f"by which a sensor's rise must exceed the network's (e.g. 0.25)")
    return value


def check_count(name: str, value) -> int:
    """``value`` as an int >= 1 (``baseline``, ``recent``, ``stride``)."""
    try:
        ok = not isinstance(value, bool) and int(value) == float(value) and int(value) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        what = {"baseline": "periods taken as the baseline", "recent": "last periods compared with it",
                "stride": "steps between the windows used"}.get(name, "a count")
        raise ConfigError(f"{name} = {value!r}: expected an integer >= 1 ({what})")
    return int(value)


def _bin_width(data, period, stride: int) -> int:
    """The period in ns; at least the spacing of the forecast origins (``stride`` steps of the data's interval),
    else most periods would hold no window and their error would be NaN."""
    from ..io.series import format_interval, infer_interval

    step = parse_period(period)
    spacing = infer_interval(data.timestamps) * stride
    if step < spacing:
        every = f"{stride} step(s) of {format_interval(spacing // stride)}"
        raise ConfigError(f"period = {period!r} is shorter than the spacing of the forecast origins ({every}, stride "
                          f"= {stride}): most periods would hold no window and their error would be NaN; expected "
                          f"a period of at least {format_interval(spacing)}")
    return int(step.astype(np.int64))


@torch.no_grad()
def rolling_errors(run, period: str = "1D", stride: int = 1, batch_size: int = 256):
    """Error of a run's model per sensor and period over every window of its data.

    Args:
        run: a :class:`~stgraph.training.run.Run` (e.g. from :meth:`Run.open <stgraph.training.run.Run.open>`),
            or its :class:`~stgraph.training.forecaster.Forecaster`.
        period: bin width, e.g. ``'1D'``, ``'6h'``.
        stride: use every ``stride``-th window start.

    Returns:
        ``(starts, errors, counts)``: ``starts [P]`` datetime64 first instant of each period,
        ``errors [P, N]`` float64 MAE (NaN where a sensor has no valid target in the period),
        ``counts [P, N]`` the valid target entries behind each.

    Raises:
        ConfigError: ``stride`` not an integer >= 1, ``period`` not a duration or shorter than ``stride`` steps
            of the data's interval (periods without any window).
    """
    forecaster = getattr(run, "forecaster", run)
    data = forecaster.data
    stride = check_count("stride", stride)
    step = _bin_width(data, period, stride)
    starts = np.sort(np.concatenate([np.asarray(data.split[k], dtype=np.int64) for k in ("train", "val", "test")]))
    starts = starts[::stride]
    t_ns = data.timestamps.astype("datetime64[ns]").astype(np.int64)
    origin = t_ns[starts + data.input_len - 1]
    first = (origin.min() // step) * step  # the period of the first forecast origin, not of the first reading:
    # with daily data and a week of input the first week would be periods without a window (a NaN baseline)
    bins = (origin - first) // step
    P, N = int(bins.max()) + 1, data.num_nodes
    sums = torch.zeros(P, N, dtype=torch.float64)
    counts = torch.zeros(P, N, dtype=torch.float64)
    forecaster.model.eval()
    for a in range(0, len(starts), batch_size):
        s = torch.from_numpy(starts[a:a + batch_size]).to(data.device)
        batch = data.batch(s).to(forecaster.device)
        out = forecaster.to_units(forecaster.forward(batch))
        out = point(out) if isinstance(out, torch.distributions.Distribution) else out  # the median
        m = valid_mask(batch.y, forecaster.null_value)
        err = torch.where(m, (out - batch.y).abs(), torch.zeros_like(out)).double().sum(dim=(1, 3)).cpu()  # [B, N]
        cnt = m.double().sum(dim=(1, 3)).cpu()
        b = torch.from_numpy(bins[a:a + batch_size])
        sums.index_add_(0, b, err)
        counts.index_add_(0, b, cnt)
    errors = (sums / counts).numpy()
    errors[counts.numpy() == 0] = np.nan
    period_starts = (first + np.arange(P) * step).astype("datetime64[ns]")
    return period_starts, errors, counts.numpy()


def flag_sensors(errors: np.ndarray, baseline: int = 2, recent: int = 2, jump: float = 0.25) -> dict:
    """Which sensors' error jumped (module docstring); ``errors`` ``[P, N]``.

    Returns ``{"baseline": [N], "recent": [N], "ratio": [N], "excess": [N], "flagged": [N] bool,
    "first": [N] int}``: ``excess`` is the rise above the median rise in units of the median baseline
    error, ``first`` the first period after the baseline whose excess reaches ``jump`` (``-1``: not flagged).

    Raises:
        ConfigError: ``baseline`` or ``recent`` not an integer >= 1, ``jump`` not finite and > 0, or fewer periods
            than ``baseline + recent``.
    """
    baseline, recent, jump = check_count("baseline", baseline), check_count("recent", recent), check_jump(jump)
    P = errors.shape[0]
    if P < baseline + recent:
        raise ConfigError(f"the data cover {P} period(s); the drift report needs baseline {baseline} + recent "
                          f"{recent}: pass a longer file or a shorter period")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sensor without any valid reading: NaN, not flagged
        base = np.nanmean(errors[:baseline], axis=0)
        now = np.nanmean(errors[P - recent:], axis=0)
        scale = max(float(np.nanmedian(base)), 1e-12)
        excess = ((now - base) - np.nanmedian(now - base)) / scale
        flagged = excess >= jump
        per_period = errors - base[None, :]
        above = (per_period - np.nanmedian(per_period, axis=1, keepdims=True)) / scale >= jump
    first = np.where(flagged, np.argmax(above[baseline:], axis=0) + baseline, -1)
    return {"baseline": base, "recent": now, "ratio": now / base, "excess": excess,
            "flagged": np.nan_to_num(flagged).astype(bool), "first": first}


def drift_report(run_dir, data_path, out=None, *, period: str = "1D", baseline: int = 2, recent: int = 2,
                 jump: float = 0.25, stride: int = 1, model: str | None = None,
                 plot: bool = True, force: bool = False) -> dict:
    """Run the drift report of ``run_dir`` on ``data_path`` (module docstring) and write its files (files of
    those names in ``out`` that stgraph did not write are an error unless ``force``:
    :func:`stgraph.files.check_replaceable`).

    Returns ``{"flagged": [sensor ids], "periods": P, "table": path, "errors": path, "plot": path|None}``.

    Raises:
        ConfigError: a setting out of range (:func:`parse_period`, :func:`check_jump`, :func:`check_count`),
            checked before the run is opened; a period shorter than the data's interval times ``stride``.
        SeriesError: ``data_path`` does not fit the run (:func:`stgraph.data.fit.check_fits`).
    """
    from ..training.layout import RunFiles
    from ..training.run import load_run

    parse_period(period), check_jump(jump), check_count("stride", stride)
    check_count("baseline", baseline), check_count("recent", recent)
    run = load_run(run_dir, data_path=str(data_path), model=model)
    starts, errors, _ = rolling_errors(run, period, stride)
    f = flag_sensors(errors, baseline, recent, jump)
    ids = run.data.sensor_ids
    out = Path(out) if out is not None else RunFiles(run_dir).drift
    written = [out / name for name in ("drift.csv", "errors.csv", "drift.json")] + ([out / "drift.png"] if plot else [])
    check_replaceable(written, force=force)
    out.mkdir(parents=True, exist_ok=True)
    order = np.argsort(-np.nan_to_num(f["excess"], nan=-np.inf))
    with atomic_open(out / "drift.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sensor_id", "baseline_mae", "recent_mae", "ratio", "excess_rise", "flagged",
                    "first_flagged_period"])
        for i in order:
            w.writerow([safe_cell(str(ids[i])), f"{f['baseline'][i]:.4f}", f"{f['recent'][i]:.4f}", f"{f['ratio'][i]:.3f}",
                        f"{f['excess'][i]:.3f}", int(f["flagged"][i]), iso(starts[f["first"][i]]) if f["first"][i] >= 0 else ""])
    with atomic_open(out / "errors.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["period_start", *(safe_cell(str(s)) for s in ids)])
        for p in range(len(starts)):
            w.writerow([iso(starts[p]), *(f"{v:.4f}" for v in errors[p])])
    flagged = [ids[i] for i in order if f["flagged"][i]]
    png = _plot(starts, errors, f["flagged"], ids, out / "drift.png") if plot else None
    result = {"flagged": flagged, "periods": int(len(starts)), "table": str(out / "drift.csv"),
              "errors": str(out / "errors.csv"), "plot": None if png is None else str(png),
              "settings": {"period": period, "baseline": baseline, "recent": recent, "jump": jump,
                           "stride": stride, "data": str(data_path)}}
    atomic_write(out / "drift.json", json.dumps(result, indent=1))
    record_written(written)
    return result


def drift_table(result: dict, limit: int = 20) -> str:
    """The first ``limit`` rows of ``drift.csv`` (sensors by excess rise) as text."""
    with open(result["table"], encoding="utf-8") as fh:
        rows = [[read_cell(c) for c in r] for r in csv.reader(fh)]
    width = [max(len(r[j]) for r in rows[:limit + 1]) for j in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width)) for r in rows[:limit + 1])


def _plot(starts, errors, flagged, ids, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import save_figure

    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = starts.astype("datetime64[s]").astype(object)
    for i in np.flatnonzero(~flagged):
        ax.plot(x, errors[:, i], color="0.75", lw=0.8)
    for i in np.flatnonzero(flagged):
        ax.plot(x, errors[:, i], lw=1.8, label=f"{ids[i]} (flagged)")
    ax.plot(x, np.nanmedian(errors, axis=1), color="k", lw=1.2, ls="--", label="median of all sensors")
    ax.set_ylabel("MAE (data units), all horizon steps")
    ax.set_title(f"Error per sensor over time: {int(flagged.sum())} of {len(ids)} flagged")
    ax.legend(fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    return save_figure(fig, path)
