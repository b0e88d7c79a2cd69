"""Pictures of a trained run: where the forecast holds and where it fails.

:func:`plot_run` writes, next to ``out``:

* ``out``: the forecast of one sensor against the truth over the test split at
  15 and 60 minutes ahead, with the 90% band when the run is probabilistic;
* ``<stem>_errors.png``: the test MAE of every sensor on a map of sensor
  coordinates (or ranked bars when none are known), and the MAE by time of day;
* ``<stem>_attention.png``: temporal and spatial attention heat maps, for
  models that can return their attention weights.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from torch.distributions import Distribution

from .distributions import interval, point
from .io.series import horizon_text
from .metrics import valid_mask


def _collect(run, sensor_index: int | None):
    """One pass over the test split: per-sensor MAE, MAE by time of day, and one sensor's traces."""
    data = run.data
    null = float(data.null_value)
    horizon = data.horizon
    n = data.num_nodes
    err_sum = torch.zeros(n, dtype=torch.float64)
    err_cnt = torch.zeros(n, dtype=torch.float64)
    spd = max(1, int(data.steps_per_day))
    bins = min(spd, 48)
    tod_sum = torch.zeros(bins, dtype=torch.float64)
    tod_cnt = torch.zeros(bins, dtype=torch.float64)
    traces = []
    for out, y, starts in run.predictions("test"):
        prob = isinstance(out, Distribution)
        mean = point(out) if prob else out  # the median of a distribution (its mean for the Normal)
        band = interval(out, 0.9) if prob else None  # never below 0 for a count's lognormal
        mask = valid_mask(y, null)
        err = torch.where(mask, (mean - y).abs(), torch.zeros_like(y)).double().cpu()
        m = mask.double().cpu()
        err_sum += err.sum(dim=(0, 1, 3))
        err_cnt += m.sum(dim=(0, 1, 3))
        # time of day of the last horizon step
        last_rows = (starts.cpu() + data.input_len + horizon - 1)
        tod = data.tod[last_rows] if hasattr(data, "tod") else torch.zeros(len(starts))
        b = (tod.cpu() * bins).long().clamp(0, bins - 1)
        tod_sum.index_add_(0, b, err[:, -1].sum(dim=(1, 2)))
        tod_cnt.index_add_(0, b, m[:, -1].sum(dim=(1, 2)))
        if sensor_index is not None:
            traces.append((starts.cpu(), mean[:, :, sensor_index, 0].float().cpu(), y[:, :, sensor_index, 0].cpu(),
                           None if band is None else torch.stack([b[:, :, sensor_index, 0] for b in band]).float().cpu()))
    per_sensor = (err_sum / err_cnt.clamp(min=1)).numpy()
    per_sensor[err_cnt.numpy() == 0] = np.nan
    by_tod = (tod_sum / tod_cnt.clamp(min=1)).numpy()
    by_tod[tod_cnt.numpy() == 0] = np.nan
    return per_sensor, by_tod, traces


def _locations(run, locations, crs: str = "degrees"):
    """``(y, x, crs)`` of every sensor (latitude / longitude, or northing / easting metres when
    ``crs`` is projected), or ``None`` when some sensor has no position."""
    from .graph.coords import parse_crs

    ids = run.series.sensor_ids
    if locations:
        from .graph import read_locations
        crs = parse_crs(crs)
        lid, lat, lon = read_locations(locations, crs)
        crs = "projected" if crs == "projected" else "degrees"
        pos = {s: (a, o) for s, a, o in zip(lid, lat, lon)}
    else:
        g = run.prepared.nx_graph
        crs = "degrees" if g is None else g.graph.get("crs", "degrees")
        pos = {} if g is None else {s: (d["lat"], d["lon"]) for s, d in g.nodes(data=True)
                                    if d.get("lat") is not None and d.get("lon") is not None}
    if not all(s in pos for s in ids):
        return None
    return (np.array([pos[s][0] for s in ids], dtype=float), np.array([pos[s][1] for s in ids], dtype=float),
            crs)


PICTURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
#: per-sensor bars drawn (and named) when no coordinates are known
MAX_BARS = 60


def sub_daily(data) -> bool:
    """True when the data have several steps a day, so an error-by-time-of-day panel means something."""
    step = getattr(data, "interval_minutes", None)
    return bool(step) and step < 24 * 60


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay ``fig`` out, write it to exactly ``path`` (atomically, in the format its suffix names: matplotlib
    would add '.png' to a name without one) and close it."""
    from .files import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".").lower())
    pyplot().close(fig)
    return path


def _picture_path(out) -> Path:
    """``out`` as the picture file :func:`plot_run` writes (a file name with a picture suffix)."""
    from .errors import ConfigError

    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"out '{out}' is a folder; expected a picture file name such as "
                          f"'{out / 'forecast.png'}' (the other pictures are written beside it)")
    if out.suffix.lower() not in PICTURE_SUFFIXES:
        raise ConfigError(f"out '{out}': expected a picture file ending in {' / '.join(PICTURE_SUFFIXES)} "
                          f"(suffix {out.suffix or 'none'!r})")
    return out


def _sensor_index(run, sensor: str | None) -> int:
    """The position of ``sensor`` in the run's series, or with ``None`` the sensor of median test MAE."""
    from .errors import ConfigError

    ids = list(run.series.sensor_ids)
    if sensor is None:
        per_sensor, _, _ = _collect(run, None)
        finite = np.where(np.isfinite(per_sensor))[0]
        order = finite[np.argsort(per_sensor[finite])]
        return int(order[len(order) // 2]) if len(order) else 0
    if str(sensor) not in ids:
        raise ConfigError(f"sensor '{sensor}' is not in the run's series; sensors are e.g. {ids[:8]}")
    return ids.index(str(sensor))


def plot_run(run_dir, out, *, sensor: str | None = None, locations: str | None = None,
             model: str | None = None, crs: str = "degrees", steps=None) -> list[Path]:
    """Write the pictures of ``run_dir`` (a run directory, or a :class:`~stgraph.training.run.Run`); returns
    their paths. See the module docstring. ``steps``: the horizon steps of the forecast panels (``[1, 4]`` or
    ``"1,4"``; default :func:`stgraph.metrics.default_steps` of the horizon)."""
    from .training.run import Run

    out = _picture_path(out)
    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir, model=model)
    out.parent.mkdir(parents=True, exist_ok=True)
    s_idx = _sensor_index(run, sensor)
    per_sensor, by_tod, traces = _collect(run, s_idx)
    from .metrics import default_steps, parse_steps

    horizon = run.data.horizon
    steps = (parse_steps(steps if isinstance(steps, str) else ",".join(map(str, steps)), horizon) if steps else
             default_steps(horizon, getattr(run.data, "interval_minutes", None)))
    written = [_plot_forecast(run, traces, s_idx, out, sorted(set(steps)))]
    err_path = out.with_name(out.stem + "_errors" + out.suffix)
    written.append(_plot_errors(run, per_sensor, by_tod, _locations(run, locations, crs), err_path))
    att = attention_sample(run)
    if att is not None:
        written.append(_plot_attention(run, att, out.with_name(out.stem + "_attention" + out.suffix)))
    return written


def _plot_forecast(run, traces, s_idx: int, path: Path, steps: list[int]) -> Path:
    """The forecast of sensor ``s_idx`` against the truth over the test split, a panel per horizon step of
    ``steps``."""
    plt = pyplot()
    data, series = run.data, run.series
    ids = list(series.sensor_ids)
    starts = torch.cat([t[0] for t in traces]).numpy()
    pred = torch.cat([t[1] for t in traces]).numpy()
    true = torch.cat([t[2] for t in traces]).numpy()
    band = None if traces[0][3] is None else torch.cat([t[3] for t in traces], dim=1).numpy()  # [2, W, T_out]
    ts = series.timestamps
    fig, axes = plt.subplots(len(steps), 1, figsize=(12, 3.2 * len(steps)), sharex=True, squeeze=False)
    step_min = getattr(data, "interval_minutes", None)
    null = float(data.null_value)
    for ax, h in zip(axes[:, 0], steps):
        rows = starts + data.input_len + h - 1
        t = ts[rows]
        truth = true[:, h - 1].astype(float)
        truth[~valid_mask(truth, null)] = np.nan
        ax.plot(t, truth, color="black", lw=1.0, label="observed")
        ax.plot(t, pred[:, h - 1], color="tab:blue", lw=1.0, label="forecast")
        if band is not None:
            lo, hi = band[0, :, h - 1], band[1, :, h - 1]
            ax.fill_between(t, lo, hi, color="tab:blue", alpha=0.2, lw=0, label="90% interval")
        ahead = horizon_text(h, step_min)
        mae = np.nanmean(np.abs(pred[:, h - 1] - truth))
        ax.set_title(f"sensor {ids[s_idx]}: {ahead} ahead (test MAE {mae:.2f})", fontsize=10)
        ax.set_ylabel(series.channels[data.target_channels[0]])
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="lower left", fontsize=8, ncol=3)
    fig.autofmt_xdate()
    return save_figure(fig, path)


def _plot_errors(run, per_sensor, by_tod, loc, path: Path) -> Path:
    """Where it fails: the per-sensor error on a map (``loc``, or ranked bars) and the error by time of day."""
    plt = pyplot()
    data, ids = run.data, list(run.series.sensor_ids)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1.2, 1]})
    if loc is not None:
        from .graph.coords import axis_labels

        lat, lon, where_crs = loc
        sc = a1.scatter(lon, lat, c=per_sensor, cmap="magma_r", s=28, edgecolor="k", lw=0.3)
        fig.colorbar(sc, ax=a1, label="test MAE (all horizons)")
        xlabel, ylabel = axis_labels(where_crs)
        a1.set_xlabel(xlabel)
        a1.set_ylabel(ylabel)
        worst = np.argsort(np.nan_to_num(per_sensor, nan=-1))[-5:]
        for i in worst:
            a1.annotate(ids[i], (lon[i], lat[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        a1.set_title("per-sensor error (5 worst labelled)", fontsize=10)
    else:
        order = np.argsort(np.nan_to_num(per_sensor, nan=-1))[::-1][:MAX_BARS]
        a1.bar(np.arange(len(order)), per_sensor[order], color="tab:red", width=0.8)
        a1.set_xticks(np.arange(len(order)))
        a1.set_xticklabels([ids[i] for i in order], rotation=90, fontsize=max(4, min(8, 400 // max(len(order), 1))))
        shown = f"the {len(order)} worst of {len(ids)}" if len(order) < len(ids) else "worst first"
        a1.set_xlabel(f"sensor ({shown})")
        a1.set_ylabel("test MAE (all horizons)")
        a1.set_title("per-sensor error (no coordinates known)", fontsize=10)
    if sub_daily(data):
        hours = (np.arange(len(by_tod)) + 0.5) * 24 / len(by_tod)
        a2.plot(hours, by_tod, marker="o", ms=3)
        a2.set_xlabel("time of day (h)")
        a2.set_ylabel("MAE at the last horizon step")
        a2.set_title("error by time of day", fontsize=10)
        a2.grid(alpha=0.3)
    else:
        a2.set_axis_off()
        a2.text(0.5, 0.5, f"no time-of-day panel: the data are sampled every\n"
                          f"{horizon_text(1, data.interval_minutes)}, not several times a day",
                ha="center", va="center", fontsize=10, transform=a2.transAxes)
    return save_figure(fig, path)


def _plot_attention(run, att: dict, path: Path) -> Path:
    """Heat maps of :func:`attention_sample`'s matrices, one panel each."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    panels = [k for k in ("temporal", "spatial", "cross") if k in att]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    # stgt's tokens are patches of patch_len steps (its efficient shape), or single steps
    unit = "patch" if getattr(run.model, "patch_len", 1) > 1 else "step"
    titles = {"temporal": f"encoder temporal attention\n(query {unit} x key {unit})",
              "spatial": "spatial attention\n(target sensor x source sensor)",
              "cross": f"decoder cross-attention\n(future {unit} x input {unit})"}
    for ax, key in zip(axes[0], panels):
        mat = att[key]
        im = ax.imshow(mat, cmap="Blues", aspect="auto", interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046)
        for axis, n in ((ax.xaxis, mat.shape[1]), (ax.yaxis, mat.shape[0])):  # whole steps and sensors
            if n <= 24:
                axis.set_ticks(range(n))  # a locator finds no whole tick on a 1 or 2 wide axis
            else:
                axis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(titles[key], fontsize=10)
    return save_figure(fig, path)


@torch.no_grad()
def attention_sample(run, max_nodes: int = 60) -> dict | None:
    """Attention maps averaged over one test batch, heads and sensors; ``None`` if the model has none.

    Returns numpy matrices: ``temporal`` ``[T_in, T_in]``, ``spatial`` ``[n, n]``
    (the first ``max_nodes`` sensors, weights of existing edges; with a graph that changes over time, each
    window's own graph and a pair's mean over the windows that have it), ``cross`` ``[T_out, T_in]``.
    """
    import inspect

    model = run.model
    if "return_attention" not in inspect.signature(model.forward).parameters:
        return None
    model.eval()
    batch = next(iter(run.data.loader("test", 16, shuffle=False))).to(run.forecaster.device)
    graph = run.graph if getattr(batch, "graph", None) is None else batch.graph  # a dynamic graph: each window's
    _, att = model(batch.x, graph, batch.covariates, return_attention=True)
    out = {}
    if att.get("temporal") is not None:
        t = att["temporal"].float()
        out["temporal"] = t.reshape(-1, t.shape[-2], t.shape[-1]).mean(0).cpu().numpy()
    if att.get("cross") is not None:
        c = att["cross"].float()
        out["cross"] = c.reshape(-1, c.shape[-2], c.shape[-1]).mean(0).cpu().numpy()
    if att.get("spatial") is not None:
        w = att["spatial"].float()
        w = w.mean(-1) if w.dim() > 1 else w
        ei = att.get("spatial_edge_index", graph.edge_index)
        N = run.data.num_nodes
        n = min(N, max_nodes)
        src, dst = ei[0].cpu().numpy() % N, ei[1].cpu().numpy() % N  # per-window graphs: window b's node b N + n
        keep = (src < n) & (dst < n)
        sums, counts = np.zeros((n, n)), np.zeros((n, n))
        np.add.at(sums, (dst[keep], src[keep]), w.cpu().numpy()[keep])
        np.add.at(counts, (dst[keep], src[keep]), 1.0)
        out["spatial"] = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.nan)  # mean over the windows
    return out or None


def plot_groups(by: dict, out) -> Path:
    """MAE and coverage of the 90% band by group and horizon step (``stgraph evaluate --by ... --plot``).

    Args:
        by: :func:`stgraph.regimes.evaluate_groups`'s result (``result["by"]`` of :func:`stgraph.evaluate`).
        out: the picture file (PNG, SVG, PDF).

    Returns:
        the path written: MAE per step, one line per group (a legend up to 12 groups), and for a probabilistic
        run the coverage beside it with the nominal 0.9 dashed.
    """
    path = _picture_path(out)
    groups = by["groups"]
    prob = any("coverage90" in g["average"] for g in groups.values())
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if prob else 1, figsize=(11 if prob else 6, 4), squeeze=False)
    panels = [("mae", "MAE (data units)")] + ([("coverage90", "coverage of the 90% band")] if prob else [])
    for ax, (key, title) in zip(axes[0], panels):
        for name, g in groups.items():
            steps = [int(h) for h in g["horizons"]]
            ax.plot(steps, [g["horizons"][str(h)][key] for h in steps], marker="o", lw=1.2 if len(groups) <= 12
                    else 0.6, label=f"{name} ({100 * g['average']['share']:.1f}%)")
            ax.set_xticks(steps)  # whole steps only
        if key == "coverage90":
            ax.axhline(0.9, color="k", ls="--", lw=0.8)
            ax.set_ylim(0, 1.02)
        ax.set_xlabel("horizon step")
        ax.set_title(f"{title} by {by['by']}")
        if len(groups) <= 12:
            ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_calibration(cal: dict, out) -> Path:
    """The PIT histogram and the reliability diagram of a probabilistic run (``stgraph evaluate --calibration``).

    Args:
        cal: :func:`stgraph.calibration.evaluate_calibration`'s result (``result["calibration"]``).
        out: the picture file (PNG, SVG, PDF).

    Returns:
        the path written: left the PIT density per bin with the calibrated level 1 dashed, right the observed
        coverage of the central bands against their nominal level with the diagonal dashed.
    """
    path = _picture_path(out)
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    edges, density = cal["pit"]["edges"], cal["pit"]["density"]
    left.bar(edges[:-1], density, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge",
             edgecolor="k", lw=0.5)
    left.axhline(1.0, color="k", ls="--", lw=0.8)
    left.set_xlabel("PIT = forecast CDF at the truth")
    left.set_ylabel("density")
    left.set_title(f"PIT histogram ({cal['count']:,} readings)")
    nominal = [r["nominal"] for r in cal["reliability"]]
    right.plot([0, 1], [0, 1], color="k", ls="--", lw=0.8)
    right.plot(nominal, [r["observed"] for r in cal["reliability"]], marker="o")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1)
    right.set_xlabel("nominal coverage of the central band")
    right.set_ylabel("observed coverage")
    right.set_title("reliability")
    return save_figure(fig, path)
