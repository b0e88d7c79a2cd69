"""Where does text help or hurt? A diagnostic beside ``bench_cross_modal.py`` (its data, model and scoring).

Trains the chosen variants on one seed's data and prints MAE at 15 / 30 / 60 min on the bench's groups, and the
unaffected entries split by whether a report published by the forecast origin reaches the forecast token
(``reached``; from the placement of ``reports.csv`` with the default ``data.report_hours``) or not. Variants:
``flags``, ``flags + text``, ``flags + shuffled text`` and ``flags + text, report_hours H`` (the reports without
an end reach the series for ``H`` hours instead of 3). Same seed, same figures as the bench's rows (the runs are
deterministic on one thread).

Usage: ``python benchmarks/diag_cross_modal.py --seed 2 [--sensors 16 --days 20 --epochs 10 --report-hours 1.5]
[--only 'flags + text, report_hours 1.5'] [--jobs 2]``
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import multiprocessing as mp
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location("bench_cross_modal", Path(__file__).with_name("bench_cross_modal.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def run(paths: dict, covariates: list, epochs: int, seed: int, extra: dict) -> dict:
    """Train one variant (its own process); the test split's errors ``err [S, T_out, N]``, ``valid``, window
    ``starts [S]`` and, with text, the report placement ``slots [T, N, M]`` / ``first [R]``."""
    import torch
    torch.set_num_threads(1)
    from stgraph.config import RunConfig, with_fields
    from stgraph.training.run import train

    cfg = with_fields(RunConfig(), {
        "data.path": paths["data"], "data.graph": paths["adj"], "data.covariates": covariates,
        "data.locations": paths["locations"], "model.params": dict(bench.PARAMS), "train.epochs": epochs,
        "train.batch_size": 32, "train.lr": 3e-3, "train.progress": False, "train.threads": 1,
        "train.seed": seed, "train.patience": 0, "train.device": "cpu"} | extra)
    tr = train(cfg, None)
    err, valid, starts = [], [], []
    for out, y, st in tr.predictions("test"):
        err.append((out - y).abs()[..., 0].cpu().numpy())
        valid.append((y[..., 0] != 0).cpu().numpy())
        starts.append(st.cpu().numpy())
    res = {"err": np.concatenate(err), "valid": np.concatenate(valid), "starts": np.concatenate(starts),
           "input_len": tr.data.input_len, "horizon": tr.data.horizon}
    reports = getattr(tr.data.exogenous, "reports", None) if tr.data.exogenous is not None else None
    if reports and not extra:
        tokens = next(iter(reports.values()))
        res["slots"], res["first"] = tokens.slots.numpy(), tokens.first.numpy()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--sensors", type=int, default=16)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--incident-rate", type=float, default=1.5)
    ap.add_argument("--report-hours", type=float, default=1.5)
    ap.add_argument("--only", action="append", help="run only these variants (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--work", default="/tmp/stgraph-diag-cross-modal")
    args = ap.parse_args()
    d = bench.make_data(Path(args.work) / f"seed{args.seed}", args.sensors, args.days, args.seed, args.incident_rate)
    p = d["paths"]
    variants = {"flags": ([p["incidents"]], {}), "flags + text": ([p["incidents"], p["reports"]], {}),
                f"flags + text, report_hours {args.report_hours:g}": ([p["incidents"], p["reports"]],
                                                                     {"data.report_hours": args.report_hours}),
                "flags + shuffled text": ([p["incidents"], p["shuffled"]], {})}
    variants = {k: v for k, v in variants.items() if not args.only or k in args.only or k == "flags + text"}
    with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as ex:
        futs = {name: ex.submit(run, p, cov, args.epochs, args.seed, extra) for name, (cov, extra) in variants.items()}
        res = {name: f.result() for name, f in futs.items()}
    ref = res["flags + text"]
    L, H, starts = ref["input_len"], ref["horizon"], ref["starts"]
    rows = starts[:, None] + L + np.arange(H)                                   # [S, T_out]
    origin = (starts + L - 1)[:, None, None, None]
    s = ref["slots"][rows].astype(np.int64)                                     # [S, T_out, N, M]
    reached = ((s >= 0) & (ref["first"][np.clip(s, 0, None)] <= origin)).any(-1)
    since = d["affected"][rows]
    hit = since < np.iinfo(np.int64).max // 2
    known = since <= origin[..., 0]
    groups = {"affected": hit, "foreseeable": hit & known, "unforeseeable": hit & ~known, "unaffected": ~hit,
              "unaffected reached": ~hit & reached, "unaffected not reached": ~hit & ~reached}
    for name, r in res.items():
        if (r["starts"] != starts).any():
            raise ValueError(f"{name}: other test windows than flags + text")
        cells = []
        for g, m in groups.items():
            m = m & r["valid"]
            cells.append(f"{g} " + " ".join(f"{r['err'][:, h - 1][m[:, h - 1]].mean():.3f}" for h in bench.STEPS)
                         + f" (n {int(m[:, bench.STEPS[-1] - 1].sum())})")
        print(f"seed {args.seed} | {name} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
