"""Error over time after a change point: frozen vs updated vs retrained from scratch, with their compute.

Synthetic network (``--sensors`` x ``--days``, no random incidents), a lane closure
(:func:`stgraph.synth.events.lane_closure`, half the lanes) on ``--closed`` sensors from day
``--change``. Three models, stgt (width 16, one encoder and one decoder block), seed 0:

* **frozen**: trained on days ``0 .. change`` (before the closure) and left as it is;
* **updated**: the frozen run continued with ``stgraph update`` on days ``change - 2 .. change + new``
  (its training split, 70 %, reaches ``~0.6 * (new + 2)`` days after the change), lr x 0.5, 4 epochs,
  25 % replay of the run's own training windows;
* **scratch**: a fresh run trained on days ``0 .. change + new`` (split 0.85 / 0.1 / 0.05, so its
  training split reaches about as far after the change as the update's).

Each is scored day by day (MAE over all horizon steps, :func:`stgraph.online.drift.rolling_errors`) on
the days after ``change + new`` that none of them saw, at the closed sensors and at the others; the
frozen run also on the days in between. Writes a markdown table and the ``stgraph drift`` plot of the
frozen run.

Usage: ``python benchmarks/bench_online.py [--sensors 20 --days 24 --change 12 --new 6]
[--out benchmarks/results/online.md]``
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
D = 288


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=20)
    ap.add_argument("--days", type=int, default=24)
    ap.add_argument("--change", type=int, default=12)
    ap.add_argument("--new", type=int, default=6)
    ap.add_argument("--closed", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--work", default="/tmp/stgraph-bench-online")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "online.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    from stgraph.config import RunConfig, with_fields
    from stgraph.files import atomic_write
    from stgraph.io import read_series, write_series
    from stgraph.io.series import Series, iso
    from stgraph.online import drift_report, update_run
    from stgraph.online.drift import rolling_errors
    from stgraph.synth import write_synthetic
    from stgraph.synth.events import lane_closure
    from stgraph.training.run import load_run, train

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    paths = write_synthetic(work / "syn", num_sensors=args.sensors, days=args.days, seed=1, incident_rate=0.0)
    s = read_series(paths["data"])
    rng = np.random.default_rng(7)
    hit = sorted(s.sensor_ids[i] for i in rng.choice(s.num_nodes, args.closed, replace=False))
    s = lane_closure(s, hit, args.change * D)

    def cut(a, b, name):
        x = Series(s.values[a * D:b * D], s.timestamps[a * D:b * D], s.sensor_ids, s.channels, s.null_value)
        write_series(x, work / name, layout="pandas")
        return str(work / name)

    c, n = args.change, args.change + args.new
    before, new, later, watch = cut(0, c, "before.h5"), cut(c - 2, n, "new.h5"), cut(n, args.days, "later.h5"), \
        cut(c - 2, args.days, "watch.h5")

    def cfg_for(path, split=(0.7, 0.1, 0.2)):
        return with_fields(RunConfig(), {
            "data.path": path, "data.graph": str(paths["adj"]), "data.split": list(split),
            "model.params": dict(hidden=16, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0, residual="last"),
            "train.epochs": args.epochs, "train.batch_size": 32, "train.lr": 3e-3, "train.progress": False,
            "train.threads": 1, "train.seed": 0, "train.patience": 0, "train.device": "cpu"})

    cost = {}
    t0 = time.perf_counter()
    tr = train(cfg_for(before), work / "frozen")
    cost["frozen"] = (time.perf_counter() - t0, args.epochs * int(tr.data.split_starts("train").numel()))
    t0 = time.perf_counter()
    _, summary = update_run(work / "frozen", new, work / "updated", weeks=0, lr_scale=0.5, epochs=4, replay=0.25,
                            progress=False)
    cost["updated"] = (time.perf_counter() - t0, 4 * summary["update_windows"])
    t0 = time.perf_counter()
    tr = train(cfg_for(cut(0, n, "all.h5"), (0.85, 0.1, 0.05)), work / "scratch")
    cost["scratch"] = (time.perf_counter() - t0, args.epochs * int(tr.data.split_starts("train").numel()))

    idx = [s.sensor_ids.index(h) for h in hit]
    rest = [i for i in range(s.num_nodes) if i not in idx]
    _, e_pre, _ = rolling_errors(load_run(work / "frozen"))
    pre = (np.nanmean(e_pre[-2:, idx]), np.nanmean(e_pre[-2:, rest]))
    days_w, e_w, _ = rolling_errors(load_run(work / "frozen", data_path=watch))
    table = {"frozen": e_w}
    days_l, _, _ = rolling_errors(load_run(work / "frozen", data_path=later))
    for name in ("updated", "scratch"):
        table[name] = rolling_errors(load_run(work / name, data_path=later))[1]
    report = drift_report(work / "frozen", watch, work / "drift")
    shutil.copyfile(work / "drift" / "drift.png", Path(args.out).with_suffix(".png"))

    load = os.getloadavg()
    lines = [
        "# Online adaptation after a change point (synthetic lane closure)",
        "",
        f"Command: `python benchmarks/bench_online.py --sensors {args.sensors} --days {args.days} --change {c} "
        f"--new {args.new} --closed {args.closed} --epochs {args.epochs}` (one CPU thread).",
        "",
        f"Closed sensors (half the lanes from day {c}, {iso(s.timestamps[c * D])}): {hit}. Before the change the "
        f"frozen run's error on its last two days was {pre[0]:.3f} at the closed sensors and {pre[1]:.3f} at the "
        f"others (MAE, mph, all horizon steps).",
        "",
        "Daily MAE (mph, all horizon steps) by forecast day; `closed` = the closed sensors, `others` = the rest. "
        f"Days {c - 2}..{n - 1} are the update's data; updated and scratch are scored only on the days none of the "
        f"models saw (from day {n}).",
        "",
        "| day | frozen closed | frozen others | updated closed | updated others | scratch closed | scratch others |",
        "|---|---|---|---|---|---|---|",
    ]
    offset = {iso(d): k for k, d in enumerate(days_l)}
    for k, d in enumerate(days_w):
        day = c - 2 + k
        j = offset.get(iso(d))
        cells = [f"{np.nanmean(e_w[k, idx]):.3f}", f"{np.nanmean(e_w[k, rest]):.3f}"]
        for name in ("updated", "scratch"):
            cells += (["-", "-"] if j is None else
                      [f"{np.nanmean(table[name][j, idx]):.3f}", f"{np.nanmean(table[name][j, rest]):.3f}"])
        lines.append(f"| {day} ({iso(d)[:10]}) | " + " | ".join(cells) + " |")
    lines += ["", "Compute (wall-clock on a shared 2-core machine, load average "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; windows = training windows x epochs):", "",
              "| model | seconds | windows trained |", "|---|---|---|"]
    for name, (sec, win) in cost.items():
        lines.append(f"| {name} | {sec:.1f} | {win} |")
    lines += ["", f"`stgraph drift` on the frozen run over days {c - 2}..{args.days - 1} (baseline the first 2 days, "
              f"recent the last 2) flags {report['flagged']} (closed: {hit}).", "",
              "![error per sensor over time](online.png)", "",
              "update.json of the updated run:", "", "```", json.dumps(summary, indent=1), "```"]
    atomic_write(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
