"""Inference cost of every zoo model on CPU at METR-LA size (207 sensors, METR-LA graph).

In eval mode under ``torch.inference_mode``, one thread, fp32, each model in its own child:

* ``window ms``: latency of one window (the latest hour, every sensor: ``x [1, 12, 207, 1]``),
  median of ``--reps`` calls after two warm-up calls; the goal is under 20 ms;
* ``day windows/s``: a day of windows (288) predicted in batches of ``--batch``;
* for models with a probabilistic head (``stgt``): the same with ``probabilistic=True``
  (mean and scale of a Normal), and its cost over the point head (goal under 10 %).

Usage: ``python benchmarks/bench_inference.py [--models stgt,dcrnn] [--reps 7]``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from profile_zoo import ZOO, load_text, metr_la_graph, random_batch, zoo_model  # noqa: E402


def child(name: str, probabilistic: bool, args) -> dict:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    graph = metr_la_graph()
    n = int(graph.num_nodes)
    model = zoo_model(name, n, probabilistic=probabilistic).eval()
    x, _, cov = random_batch(288, n)

    def call(lo, hi):
        out = model(x[lo:hi], graph, {k: v[lo:hi] for k, v in cov.items()})
        return out.mean if isinstance(out, torch.distributions.Distribution) else out

    with torch.inference_mode():
        call(287, 288), call(287, 288)
        lat = []
        for _ in range(args.reps):
            t = time.perf_counter()
            call(287, 288)
            lat.append(time.perf_counter() - t)
        t, c = time.perf_counter(), time.process_time()
        for lo in range(0, 288, args.batch):
            call(lo, min(lo + args.batch, 288))
        day_s, day_cpu = time.perf_counter() - t, time.process_time() - c
    return {"window_ms": 1e3 * statistics.median(lat), "day_wps": 288 / day_s, "day_wps_cpu": 288 / day_cpu}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", default=str(HERE / "results" / "inference.md"))
    p.add_argument("--child")
    p.add_argument("--probabilistic", action="store_true")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.probabilistic, args)))
        return
    from stgraph.files import atomic_write
    from stgraph.models.registry import get_model_class
    import inspect
    load0 = os.getloadavg()
    rows = ["| model | head | window ms (goal < 20) | day of windows, windows/s | per CPU-s |", "|---|---|---|---|---|"]
    for name in args.models.split(","):
        heads = [False] + ([True] if "probabilistic" in inspect.signature(get_model_class(name)).parameters else [])
        res = {}
        for prob in heads:
            cmd = [sys.executable, __file__, "--child", name, "--reps", str(args.reps), "--batch", str(args.batch)]
            done = subprocess.run(cmd + (["--probabilistic"] if prob else []), capture_output=True, text=True,
                                  env=dict(os.environ, OMP_NUM_THREADS="1"))
            if done.returncode:
                print(f"{name}: failed\n{done.stderr[-1500:]}")
                continue
            r = res[prob] = json.loads(done.stdout.strip().splitlines()[-1])
            extra = ""
            if prob and False in res:
                extra = (f" ({100 * (r['window_ms'] / res[False]['window_ms'] - 1):+.0f} % window, "
                         f"{100 * (res[False]['day_wps_cpu'] / r['day_wps_cpu'] - 1):+.0f} % CPU per day)")
            row = (f"| {name} | {'probabilistic' if prob else 'point'} | {r['window_ms']:.1f}"
                   f"{' met' if r['window_ms'] < 20 else ' missed'}{extra} | {r['day_wps']:.0f} | {r['day_wps_cpu']:.0f} |")
            rows.append(row)
            print(row, flush=True)
    head = (f"# Inference on CPU, 207 sensors (METR-LA graph), 1 thread, fp32, `torch.inference_mode`\n\n"
            f"Command: `python benchmarks/bench_inference.py {' '.join(sys.argv[1:])}`; day = 288 windows in "
            f"batches of {args.batch}. {load_text(load0)}.\n\n")
    atomic_write(args.out, head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
