"""Graphs that change over time (issue 26): stgt and Graph WaveNet with the dynamic mobility graph against the
same models with its mean static graph, on the synthetic daily mobility network (stgraph.synth.mobility).

One command (about 15 minutes on one core; the accuracy part is the same on any machine, budgets are in epochs):

    .venv/bin/python benchmarks/bench_dynamic_graph.py

writes benchmarks/results/dynamic_graph.md and dynamic_graph.csv. What it runs:

* data: ``write_mobility(regions=40, days=730, seed=0)``: cases.csv, mobility.csv (a graph per day) and
  mobility_mean.csv (the same weights averaged over the days, a pair absent on a day counting 0);
* accuracy: each model trained with ``--graph mobility.csv`` (dynamic: each window the graph of its last input
  step) and with ``--graph mobility_mean.csv`` (static), input 7 / horizon 7 days, the shipped configs with the
  CPU budget off and a fixed number of epochs (stgt 40, gwnet 30: a fixed number of optimiser steps), seeds
  ``--seeds`` (0 and 1);
  test MAE at every horizon (mean over seeds);
* cost: CPU milliseconds per training step (batch gather, forward, backward, AdamW step; median over
  ``--timing-steps`` steps after 3 warm-up steps, one thread) of the static path just before and just after the
  change (``--baseline`` / ``--after``) and of the dynamic path (``--dynamic-commit``), each commit exported
  with ``git archive``;
  each measured in its own process, the three interleaved over ``--rounds`` rounds (median of the rounds).
  Timings depend on the machine and its load: the results file says under what conditions they were taken.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"stgt": 40, "gwnet": 30}  # epochs (fixed optimiser steps; the shipped configs otherwise, CPU budget off)
WINDOW = {"data.input_len": 7, "data.horizon": 7, "train.budget_minutes": 0}
#: the static path's step time just before (6a80b4f~1) and just after (6a80b4f) the change that added per-window
#: graphs to batches and models; the dynamic path is timed on HEAD (it needs the later commits that read the file)
BASELINE, AFTER, DYNAMIC = "6a80b4f~1", "6a80b4f", "HEAD"


def accuracy(files: dict, seeds: list[int], epochs: dict) -> list[dict]:
    """Test MAE per horizon of every (model, graph, seed)."""
    import torch

    import stgraph

    torch.set_num_threads(1)
    rows = []
    for model, n_epochs in epochs.items():
        for graph in ("dynamic", "static"):
            for seed in seeds:
                t0 = time.process_time()
                run = stgraph.train(data=files["data"], graph=files["graph" if graph == "dynamic" else "mean_graph"],
                                    model=model, epochs=n_epochs, overrides={**WINDOW, "train.seed": seed},
                                    progress=False)
                m = stgraph.evaluate(run, "test", steps=list(range(1, 8)), write=False)
                steps = n_epochs * len(run.data.loader("train", run.config.train.batch_size, drop_last=True))
                rows.append({"model": model, "graph": graph, "seed": seed, "epochs": n_epochs, "steps": steps,
                             "cpu_s": round(time.process_time() - t0, 1),
                             **{f"mae_{h}": m["horizons"][str(h)]["mae"] for h in range(1, 8)},
                             "mae_avg": m["average"]["mae"]})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def time_steps(files: dict, model: str, graph: str, steps: int) -> float:
    """Median CPU ms per training step (gather, forward, backward, AdamW) of ``model`` on ``graph`` (one thread;
    process CPU time, which other processes on a shared machine disturb less than wall time)."""
    import torch

    import stgraph

    torch.set_num_threads(1)
    run = stgraph.train(data=files["data"], graph=files["graph" if graph == "dynamic" else "mean_graph"],
                        model=model, epochs=1, overrides={**WINDOW, "train.patience": 0}, progress=False)
    f = run.forecaster
    f.model.train()
    opt = torch.optim.AdamW(f.model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    out = []
    loader = iter(())
    for i in range(steps + 3):
        t0 = time.process_time()
        batch = next(loader, None)
        if batch is None:
            loader = iter(run.data.loader("train", run.config.train.batch_size, shuffle=True, drop_last=True,
                                          generator=gen))
            batch = next(loader)
        pred = f.to_units(f.forward(batch))
        ok = torch.isfinite(batch.y)
        loss = (pred - batch.y).abs()[ok].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(time.process_time() - t0)
    return 1000 * statistics.median(out[3:])


def _export(commit: str) -> Path:
    """The package at ``commit`` in a temporary folder (``git archive``; the working tree is left alone)."""
    out = Path(tempfile.mkdtemp(prefix="stgraph-" + commit.replace("~", "-") + "-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "stgraph"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def timing(files: dict, steps: int, rounds: int, commits: tuple[str, str, str]) -> dict:
    """``{model: {path: ms}}``: the static path before and after the change, and the dynamic path."""
    before, after, dynamic = (_export(c) for c in commits)
    paths = {"static (before)": (before, "static"), "static": (after, "static"), "dynamic": (dynamic, "dynamic")}
    got: dict = {m: {p: [] for p in paths} for m in MODELS}
    for r in range(rounds):
        for model in MODELS:
            for name, (tree, graph) in paths.items():
                env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
                cmd = [sys.executable, __file__, "--time-one", model, graph, str(steps), json.dumps(
                    {k: str(v) for k, v in files.items()})]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
                if res.returncode:
                    raise RuntimeError(res.stderr[-2000:])
                got[model][name].append(float(res.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1} {model} {name}: {got[model][name][-1]:.1f} ms/step", flush=True)
    return {m: {p: statistics.median(v) for p, v in d.items()} for m, d in got.items()}


def report(rows: list[dict], cost: dict | None, args, files: dict) -> str:
    import numpy as np

    lines = ["# Dynamic vs mean static graph (issue 26)", "",
             f"Command: `.venv/bin/python benchmarks/bench_dynamic_graph.py --seeds {' '.join(map(str, args.seeds))}`"
             f" (data: `stgraph data synth --kind daily --dynamic-graph --sensors {args.regions} --days {args.days}"
             f" --seed 0`; input 7 / horizon 7 days, split 0.7 / 0.1 / 0.2, the shipped configs with the CPU "
             f"budget off; epochs: " + ", ".join(f"{m} {e}" for m, e in MODELS.items()) + "; seeds "
             + ", ".join(map(str, args.seeds)) + ").", "",
             "Test MAE (cases a day) at every horizon, mean over the seeds (± std); dynamic: each window takes the "
             "graph of its last input day; static: the mean graph over all days.", "",
             "| model | graph | steps | " + " | ".join(f"day {h}" for h in range(1, 8)) + " | average |",
             "|---|---|---|" + "---|" * 8]
    for model in MODELS:
        for graph in ("dynamic", "static"):
            sel = [r for r in rows if r["model"] == model and r["graph"] == graph]
            cells = []
            for key in [f"mae_{h}" for h in range(1, 8)] + ["mae_avg"]:
                v = np.array([r[key] for r in sel])
                cells.append(f"{v.mean():.3f}" + (f" ± {v.std():.3f}" if len(v) > 1 else ""))
            lines.append(f"| {model} | {graph} | {sel[0]['steps']} | " + " | ".join(cells) + " |")
    lines += ["", "Dynamic better than static at every horizon: " + ", ".join(
        f"{m}: {'yes' if _beats(rows, m) else 'no'}"
        for m in MODELS) + "."]
    if cost:
        lines += ["", "Cost: CPU ms per training step (batch gather, forward, backward, AdamW; one thread; median "
                  f"of {args.timing_steps} steps, median of {args.rounds} interleaved rounds, each path in its own "
                  f"process). 'static (before)' / 'static' are the static path at `{args.baseline}` / `{args.after}` "
                  f"(just before / after the change that put per-window graphs into batches and models), "
                  f"'dynamic' the dynamic path at `{args.dynamic_commit}`. "
                  f"**Measured under CPU contention** ({os.cpu_count()} CPUs shared with other work): rerun alone "
                  "with `--timing-only` for clean figures.", "",
                  "| model | static (before) | static | dynamic | static / before | dynamic / static |",
                  "|---|---|---|---|---|---|"]
        for m, c in cost.items():
            lines.append(f"| {m} | {c['static (before)']:.1f} | {c['static']:.1f} | {c['dynamic']:.1f} | "
                         f"{c['static'] / c['static (before)']:.2f} | {c['dynamic'] / c['static']:.2f} |")
    lines += ["", _graph_note(files), "", "Per run: `dynamic_graph.csv` (model, graph, seed, steps, CPU seconds, MAE "
              "per day)."]
    return "\n".join(lines) + "\n"


def _graph_note(files: dict) -> str:
    """The two graphs' sizes (what the cost figures rest on)."""
    from stgraph.graph.dynamic import read_dynamic_graph

    info = read_dynamic_graph(files["graph"], None).info()
    pairs = len(Path(files["mean_graph"]).read_text().splitlines()) - 1
    e = info["edges_per_period"]
    return (f"Graphs: the dynamic one has {info['periods']} periods (days) of {e['min']} .. {e['max']} edges "
            f"(mean {e['mean']}), churn {info['churn']} (the share of a day's edges not there the day before); the "
            f"mean static graph has {pairs} edges, every pair seen on some day, so a static step multiplies by a "
            f"denser graph than a dynamic one.")


def _beats(rows, model) -> bool:
    return all(_mean(rows, model, "dynamic", h) < _mean(rows, model, "static", h) for h in range(1, 8))


def _mean(rows, model, graph, h):
    v = [r[f"mae_{h}"] for r in rows if r["model"] == model and r["graph"] == graph]
    return sum(v) / len(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="bench_dynamic", help="working folder (the synthetic data)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "dynamic_graph"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--regions", type=int, default=40)
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--epochs", type=int, default=None, help="epochs of every model (default: stgt 40, gwnet 30)")
    p.add_argument("--timing-steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline", default=BASELINE, help="commit of the static path before (default %(default)s)")
    p.add_argument("--after", default=AFTER, help="commit of the static path after (default %(default)s)")
    p.add_argument("--dynamic-commit", default=DYNAMIC, help="commit the dynamic path is timed on (default HEAD)")
    p.add_argument("--timing-only", action="store_true", help="only the cost table (reuses the accuracy CSV)")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--time-one", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.time_one:
        model, graph, steps, files = args.time_one
        print(time_steps(json.loads(files), model, graph, int(steps)))
        return 0
    from stgraph.synth.mobility import write_mobility

    files = {k: str(v) for k, v in write_mobility(args.out, args.regions, args.days, seed=0, force=True).items()}
    if args.epochs:
        MODELS.update({m: args.epochs for m in MODELS})
    csv_path = Path(args.results + ".csv")
    if args.timing_only:
        import csv
        rows = [{k: (float(v) if k.startswith("mae") or k == "cpu_s" else int(v) if k in ("seed", "epochs", "steps")
                     else v) for k, v in r.items()} for r in csv.DictReader(open(csv_path))]
    else:
        rows = accuracy(files, args.seeds, MODELS)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(rows[0])
        csv_path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r[k]) for k in keys) + "\n" for r in rows))
    cost = None if args.no_timing else timing(files, args.timing_steps, args.rounds,
                                              (args.baseline, args.after, args.dynamic_commit))
    text = report(rows, cost, args, files)
    Path(args.results + ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
