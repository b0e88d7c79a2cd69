"""The bench's reports: results.csv / .md, per_step.csv and horizon_mae.png (:func:`write_reports`), or with
budgets budget.csv / .md and budget_mae.png (:func:`write_budget_reports`)."""
from __future__ import annotations

from pathlib import Path

from ..files import atomic_write
from ..io.series import horizon_text
from .plots import plot_budgets, plot_horizons
from .spec import HORIZONS, BenchSpec
from .tables import (BUDGET_COLUMNS, BUDGET_TAIL, aggregate, load_published, markdown, md_head, result_steps,
                     step_minutes, table_steps, write_csv, write_per_step)


def write_reports(spec: BenchSpec, rows: list[dict], command: str | None = None) -> dict[str, Path]:
    """Write results.csv, results.md, per_step.csv and horizon_mae.png (with budgets: budget.csv, budget.md
    and budget_mae.png, :func:`write_budget_reports`); returns their paths."""
    if spec.budgets:
        return write_budget_reports(spec, rows, command)
    agg = aggregate(rows)
    out = spec.out
    step = step_minutes(rows)
    steps = table_steps(result_steps(rows), step, spec.steps)
    paths = {"csv": out / "results.csv", "md": out / "results.md", "per_step": out / "per_step.csv",
             "plot": out / "horizon_mae.png"}
    write_csv(agg, paths["csv"], steps=steps)
    write_per_step(rows, paths["per_step"])
    published = None
    key = spec.published_key or (spec.dataset.lower() if spec.dataset else "metr-la")
    if spec.compare_published:
        published = load_published(spec.published_file)
    text = md_head(f"# stgraph bench: {spec.dataset or spec.data}", command)
    text += [markdown(agg, published, key, step, steps=steps), ""]
    if published is not None:
        text += [f"Rows in italics: published test results on **{key}** (full dataset, papers' training budgets) "
                 f"from `benchmarks/published.yaml`; measured rows use the data and epochs above. Their parameter "
                 f"counts come from the same file: where no paper states one it holds a count of the official "
                 f"code (marked `published: false` there).", ""]
    atomic_write(paths["md"], "\n".join(text))
    if any("error" not in r for r in rows):
        plot_horizons(rows, paths["plot"], step, spec.steps and steps)
    return paths


BUDGET_NOTE = ("Budgets are CPU time (`time.process_time()` of each run's own process: its training steps and "
               "validation passes, not its setup or the test evaluation), one torch thread per run "
               "(`train.threads=1` unless set); each learned model is evaluated at its best-validation "
               "checkpoint. Closed-form models are fitted once and stand in every budget at their fitting time.")


def budget_aggregates(rows: list[dict]) -> list[tuple[float, list[dict]]]:
    """``(budget, aggregate(rows of that budget))`` per budget, ascending; each aggregated row carries
    ``budget_minutes``."""
    out = []
    for b in sorted({r["budget"] for r in rows if r.get("budget") is not None}):
        agg = aggregate([r for r in rows if r.get("budget") == b])
        out.append((b, [{**a, "budget_minutes": b} for a in agg]))
    return out


def best_per_budget(aggs: list[tuple[float, list[dict]]], step_minutes: float | None = None,
                    steps: list[int] | None = None) -> str:
    """Markdown: per budget (rows) and horizon step (columns: ``steps``, default 3, 6, 12), the model with the
    lowest mean test MAE."""
    steps = steps or list(HORIZONS)
    keys = [f"h{h}" for h in steps] + ["avg"]
    head = ["budget"] + [horizon_text(h, step_minutes) for h in steps] + ["average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b, agg in aggs:
        cells = [f"{b:g} min"]
        for key in keys:
            have = [a for a in agg if f"{key}_mae" in a]
            best = min(have, key=lambda a: a[f"{key}_mae"]) if have else None
            cells.append(f"{best['model']} ({best[f'{key}_mae']:.2f})" if best else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_budget_reports(spec: BenchSpec, rows: list[dict], command: str | None = None) -> dict[str, Path]:
    """Write budget.csv (a row per budget and model, mean over seeds), budget.md (a table per budget, then
    the best model per budget and horizon) and budget_mae.png; returns their paths."""
    out = spec.out
    step = step_minutes(rows)
    steps = table_steps(result_steps(rows), step, spec.steps)
    paths = {"csv": out / "budget.csv", "md": out / "budget.md", "plot": out / "budget_mae.png"}
    aggs = budget_aggregates(rows)
    write_csv([a for _, agg in aggs for a in agg], paths["csv"], BUDGET_COLUMNS, steps=steps)
    text = md_head(f"# stgraph bench at equal training budgets: {spec.dataset or spec.data}", command)
    text += [BUDGET_NOTE]
    shared = sorted({(r["model"], r["run_budget"]) for r in rows
                     if "error" not in r and r.get("run_budget") is not None and r["run_budget"] != r["budget"]})
    if shared:
        text += ["", "Runs that served several budgets (their schedule does not follow the budget): "
                 + "; ".join(f"{m}, one run of {b:g} min, the smaller budgets from its snapshots of the best "
                             f"checkpoint when its CPU time crossed them" for m, b in shared) + "."]
    text += [""]
    for b, agg in aggs:
        text += [f"## budget {b:g} CPU min", "", markdown(agg, step_minutes=step, tail=BUDGET_TAIL, steps=steps), ""]
    text += ["## best model per budget and horizon (test MAE)", "", best_per_budget(aggs, step, steps), ""]
    atomic_write(paths["md"], "\n".join(text))
    if any("error" not in r for r in rows):
        plot_budgets(rows, paths["plot"], step)
    return paths
