"""``stgraph bench``: train and evaluate many models under one protocol, side by side.

Every model sees the same series, graph, windows, split, scaler and masked
metrics; each (model, seed) pair trains in its own process, started with
``multiprocessing``'s 'spawn' and calling the library (its peak memory is its own, and a crash loses
only that run) into ``OUT/runs/<model>/seed<k>``,
from the model's paper configuration in ``stgraph/configs/<model>.yaml`` when
there is one. A bench that stops part-way picks up where it stopped when run
again with the same ``--out``: finished runs are reused, interrupted ones resume.

Outputs in ``OUT``:

* ``results.csv``: one row per model, mean and standard deviation over seeds of
  MAE / RMSE / MAPE at horizons 3, 6, 12 and averaged, parameters, training
  seconds and peak memory;
* ``results.md``: the same as a Markdown table (``mean ± std``), with the
  published figures beside them under ``--compare-published``;
* ``per_step.csv``: every run's metrics at every horizon step;
* ``horizon_mae.png``: test MAE against horizon for all models.

With budgets (``--budget 1m,3m,10m``, :attr:`BenchSpec.budgets`) every learned model is trained for the
same *compute* instead of the same epochs: each run gets ``train.budget_minutes`` of CPU time
(:mod:`stgraph.training.trainer`), ``train.epochs`` :data:`BUDGET_EPOCHS` (unless ``--epochs`` / ``--set``
say otherwise), ``train.patience`` 0 unless set (the budget is the stopping rule), ``train.budget_stop``
'step' (the run stops at the first step past its budget, after validating what it has: a budget binds
even where one epoch costs more than it) and one torch thread (``train.threads=1`` unless set), and its
best-validation checkpoint is evaluated. A model whose schedule
does not follow the budget (``multistep`` / ``none``) trains once, with the
largest budget, and serves the smaller ones through its snapshots ``best@<m>m.pt``; a ``cosine`` model
trains once per budget. Closed-form models (last, ha, var) are fitted once and stand in every budget's
rows at their fitting time. Run folders: :func:`run_dir`. Outputs in ``OUT``: ``budget.csv``,
``budget.md`` (a table per budget, then the best model per budget and horizon) and ``budget_mae.png``
(test MAE at the longest horizon and averaged against the budget).

The package by job: :mod:`.spec` (what to compare, the runs it plans, their folders and configs),
:mod:`.running` (each run in its own process, :func:`run_bench`, which logs a line per run at INFO),
:mod:`.tables` (aggregates, CSV and Markdown), :mod:`.plots` (the pictures) and :mod:`.reports` (the
files of a bench, with or without budgets).
"""
from .plots import plot_budgets, plot_horizons
from .reports import BUDGET_NOTE, best_per_budget, budget_aggregates, write_budget_reports, write_reports
from .running import run_bench, run_job, run_one
from .spec import (BUDGET_EPOCHS, DETERMINISTIC, HORIZONS, METRICS, PUBLISHED, BenchError, BenchJob, BenchSpec,
                   model_config, plan, run_config, run_dir, setup_of)
from .tables import (BUDGET_COLUMNS, BUDGET_TAIL, RESULTS_COLUMNS, RESULTS_TAIL, aggregate, load_published,
                     markdown, write_csv, write_per_step)

__all__ = ["BUDGET_COLUMNS", "BUDGET_EPOCHS", "BUDGET_NOTE", "BUDGET_TAIL", "DETERMINISTIC", "HORIZONS", "METRICS",
           "PUBLISHED", "RESULTS_COLUMNS", "RESULTS_TAIL", "BenchError", "BenchJob", "BenchSpec", "aggregate",
           "best_per_budget", "budget_aggregates", "load_published", "markdown", "model_config", "plan",
           "plot_budgets", "plot_horizons", "run_bench", "run_config", "run_dir", "run_job", "run_one", "setup_of",
           "write_budget_reports", "write_csv", "write_per_step", "write_reports"]
