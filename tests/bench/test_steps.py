"""Issue 26: any horizon in the reports -- bench tables, evaluate and plot choose their steps from the horizon."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from stgraph.bench import aggregate, markdown
from stgraph.bench.reports import best_per_budget
from stgraph.bench.tables import table_steps, write_csv
from stgraph.cli.main import main
from stgraph.errors import ConfigError
from stgraph.metrics import default_steps

WEEK = 7 * 24 * 60


def rows_of(horizon: int, models=("last", "stgt")) -> list[dict]:
    """Bench rows as running.run_one writes them: every step 1..horizon evaluated."""
    out = []
    for i, m in enumerate(models):
        hs = {str(h): {"mae": 1.0 + i + h / 10, "rmse": 2.0 + h / 10, "mape": 10.0} for h in range(1, horizon + 1)}
        out.append({"model": m, "seed": 0, "parameters": 10, "step_minutes": WEEK,
                    "result": {"horizons": hs, "average": {"mae": 1.5 + i, "rmse": 2.5, "mape": 10.0}}})
    return out


def test_default_steps_follow_the_horizon():
    assert default_steps(4, WEEK) == [1, 2, 3, 4] and default_steps(2) == [1, 2]
    assert default_steps(14, 1440) == [1, 3, 6, 7, 12, 14]  # step 1 shown (was 3, 6, 12, 14)
    assert default_steps(7, 1440) == [1, 3, 4, 6, 7] and default_steps(12, 5) == [3, 6, 12]  # the papers'


def test_horizon_4_bench_columns_are_steps_1_to_4(tmp_path):
    rows = rows_of(4)
    agg = aggregate(rows)
    md = markdown(agg, step_minutes=WEEK)
    head = md.splitlines()[0].split(" | ")
    maes = [h for h in head if h.startswith("MAE ")]
    assert maes == ["MAE 1 week", "MAE 2 weeks", "MAE 3 weeks", "MAE 4 weeks", "MAE avg"]
    body = [line.split(" | ") for line in md.splitlines()[2:4]]
    for k in (k for k, h in enumerate(head) if h.split()[0] in ("MAE", "RMSE", "MAPE")):  # no metric column all '-'
        assert any(cells[k].strip(" |") != "-" for cells in body), head[k]
    assert body[1][head.index("MAE 2 weeks")] == "2.20"  # stgt: 1 + 1 + 2 / 10
    write_csv(agg, tmp_path / "r.csv", step_minutes=WEEK)
    cols = next(csv.reader((tmp_path / "r.csv").open()))
    assert [c for c in cols if c.endswith("_mae")] == ["h1_mae", "h2_mae", "h3_mae", "h4_mae", "avg_mae"]
    # --steps chooses; a step the results lack is refused naming the range
    assert table_steps([1, 2, 3, 4], WEEK, [4, 2]) == [2, 4]
    assert "MAE 3 weeks" not in markdown(agg, step_minutes=WEEK, steps=[2, 4])
    with pytest.raises(ConfigError, match=r"steps \[6\] are not in the results, which hold steps 1..4"):
        table_steps([1, 2, 3, 4], WEEK, [1, 6])
    best = best_per_budget([(1.0, agg)], WEEK, [1, 2, 3, 4]).splitlines()
    assert best[0] == "| budget | 1 week | 2 weeks | 3 weeks | 4 weeks | average |" and "last (1.10)" in best[2]


def test_bench_plot_ticks_are_whole_steps(tmp_path, monkeypatch):
    import stgraph.plot
    from stgraph.bench import plot_horizons

    figs = []
    monkeypatch.setattr(stgraph.plot, "save_figure", lambda fig, path: figs.append(fig) or path)
    plot_horizons(rows_of(4), tmp_path / "h.png", WEEK, [1, 2, 3, 4])
    ax = figs[0].axes[0]
    assert list(ax.get_xticks()) == [1, 2, 3, 4] and ax.get_xlabel() == "horizon (weeks)"
    figs.clear()
    plot_horizons(rows_of(12), tmp_path / "h.png", 5, [3, 6, 12])
    assert list(figs[0].axes[0].get_xticks()) == [15, 30, 60]  # minutes
    figs.clear()
    plot_horizons(rows_of(7), tmp_path / "h.png", 1440)  # default: every step of a short horizon
    assert list(figs[0].axes[0].get_xticks()) == [1, 2, 3, 4, 5, 6, 7]
    figs.clear()
    plot_horizons(rows_of(14), tmp_path / "h.png", 1440)  # a longer one: the tables' steps
    assert list(figs[0].axes[0].get_xticks()) == [1, 3, 6, 7, 12, 14]


def test_horizon_14_evaluate_shows_step_1_and_plot_takes_steps(tmp_path, capsys, monkeypatch):
    days = 61
    t = np.datetime64("2020-03-01") + np.arange(days).astype("timedelta64[D]")
    v = np.random.default_rng(0).poisson(5.0, (days, 3))
    lines = ["timestamp,a,b,c"] + [f"{str(d)}," + ",".join(map(str, r)) for d, r in zip(t, v)]
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "cases.csv"), "--model", "last", "--set", "data.input_len=7",
                 "--set", "data.horizon=14", "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    shown = [line.split()[0] for line in out.splitlines() if "(" in line and "day" in line and line.strip()[0].isdigit()]
    assert shown == ["1", "3", "6", "7", "12", "14"], out
    assert main(["evaluate", str(run), "--steps", "2,5"]) == 0
    assert "2 (2 days)" in capsys.readouterr().out
    import stgraph.plot
    figs = []
    monkeypatch.setattr(stgraph.plot, "save_figure", lambda fig, path: figs.append(fig) or path)
    assert main(["plot", str(run), "--steps", "1,4", "--out", str(tmp_path / "p.png")]) == 0
    titles = [ax.get_title() for ax in figs[0].axes]
    assert [t.split(": ")[1].split(" ahead")[0] for t in titles] == ["1 day", "4 days"]
