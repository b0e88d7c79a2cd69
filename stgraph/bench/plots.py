"""The bench's pictures: test MAE against horizon (:func:`plot_horizons`) and against the training budget
(:func:`plot_budgets`)."""
from __future__ import annotations

from pathlib import Path

from ..io.series import duration_unit, horizon_text


def plot_horizons(rows: list[dict], path: Path, step_minutes: float | None = None,
                  steps: list[int] | None = None) -> None:
    """Test MAE against horizon, one line per model (mean over seeds, band = min..max) over every step, ticks at
    the whole steps ``steps`` (``stgraph bench --steps``; default: every step up to 12 of them, else
    :func:`stgraph.metrics.default_steps`), in the data's unit."""
    import numpy as np

    from ..plot import pyplot, save_figure

    plt = pyplot()
    unit, unit_seconds = duration_unit(step_minutes * 60) if step_minutes else ("steps", 1.0)
    fig, ax = plt.subplots(figsize=(8, 5))
    for m in dict.fromkeys(r["model"] for r in rows):
        ok = [r for r in rows if r["model"] == m and "error" not in r]
        if not ok:
            continue
        have = sorted(int(k) for k in ok[0]["result"]["horizons"])
        mat = np.array([[r["result"]["horizons"][str(s)]["mae"] for s in have] for r in ok])
        x = np.array(have) * (step_minutes * 60 / unit_seconds if step_minutes else 1)
        ax.plot(x, mat.mean(0), marker="o", ms=3, label=m)
        if len(ok) > 1:
            ax.fill_between(x, mat.min(0), mat.max(0), alpha=0.15)
    every = sorted({int(k) for r in rows if "error" not in r for k in r["result"]["horizons"]})
    if not steps:  # every step up to 12 of them, else the tables' default steps
        from ..metrics import default_steps
        steps = every if len(every) <= 12 else [s for s in default_steps(every[-1], step_minutes) if s in every]
    ticks = steps
    scale = step_minutes * 60 / unit_seconds if step_minutes else 1
    ax.set_xticks([t * scale for t in ticks], [f"{t * scale:g}" for t in ticks])
    ax.set_xlabel(f"horizon ({unit})")
    ax.set_ylabel("test MAE")
    ax.set_title("forecast error against horizon")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def _mae(result: dict, key: str) -> float:
    return result["average"]["mae"] if key == "average" else result["horizons"][key]["mae"]


def plot_budgets(rows: list[dict], path: Path, step_minutes: float | None = None) -> None:
    """Two panels, test MAE at the longest horizon and averaged against the budget (CPU minutes): a line
    per learned model (mean over seeds), a dashed horizontal line per closed-form model."""
    from ..plot import pyplot, save_figure

    plt = pyplot()
    ok = [r for r in rows if "error" not in r and r.get("budget") is not None]
    last = str(max(int(k) for r in ok for k in r["result"]["horizons"]))
    budgets = sorted({r["budget"] for r in ok})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    color = plt.get_cmap("tab20")  # 20 distinct colours: the default cycle repeats after 10 models
    for ax, key, title in ((axes[0], last, f"test MAE at {horizon_text(int(last), step_minutes)}"),
                           (axes[1], "average", "test MAE averaged over the horizon")):
        for i, m in enumerate(dict.fromkeys(r["model"] for r in ok)):
            mine = [r for r in ok if r["model"] == m]
            if mine[0].get("closed_form"):
                fit = mine[0].get("cpu_seconds")
                ax.axhline(_mae(mine[0]["result"], key), ls="--", lw=1.2, color=color(i % 20),
                           label=f"{m} (closed form" + (f", fitted in {fit:.1f} CPU s)" if fit is not None else ")"))
                continue
            xs = [b for b in budgets if any(r["budget"] == b for r in mine)]
            ys = [sum(_mae(r["result"], key) for r in mine if r["budget"] == b) /
                  sum(1 for r in mine if r["budget"] == b) for b in xs]
            ax.plot(xs, ys, marker="o", ms=4, color=color(i % 20), label=m)
        if len(budgets) > 1 and budgets[-1] >= 10 * budgets[0]:
            ax.set_xscale("log")
        ax.set_xlabel("training budget (CPU minutes)")
        ax.set_ylabel("test MAE")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
