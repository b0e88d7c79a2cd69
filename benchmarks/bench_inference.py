"""Inference cost of every zoo model on CPU at METR-LA size (207 sensors, METR-LA graph).

In eval mode under ``torch.inference_mode``, each model and setting in its own child:

* ``window ms``: latency of one window (the latest hour, every sensor: ``x [1, 12, 207, 1]``),
  median of ``--reps`` calls after two warm-up calls, at 1 thread in float32, at ``--threads``
  (default 2: this machine's cores) in float32 and in bfloat16 autocast (``stgraph predict --amp
  bf16 --threads 2``); the goal is under 20 ms;
* ``day windows/s``: a day of windows (288) predicted in batches of ``--batch`` (1 thread, float32),
  median of ``--day-reps`` passes;
* for models with a probabilistic head (``stgt``): the same with ``probabilistic=True``
  (mean and scale of a Normal), and its cost over the point head (goal under 10 %); both heads
  are built in one child and called in turns, the order swapped each repeat.

Models are built from their shipped configs (``stgraph/configs/<name>.yaml``).

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


def child(name: str, heads: list[bool], args) -> dict:
    """``{head: {window_ms, day_wps, day_wps_cpu}}`` for each head of ``heads`` (False: point, True:
    probabilistic), the models built in this one process and called in turns (the order swapped each
    repeat), so the head's cost is not buried in the run-to-run spread of separate processes."""
    import torch

    from stgraph.runtime import autocast_context
    torch.set_num_threads(args.threads)
    graph = metr_la_graph()
    n = int(graph.num_nodes)
    models = {}
    for prob in heads:
        torch.manual_seed(0)
        models[prob] = zoo_model(name, n, probabilistic=prob).eval()
    x, _, cov = random_batch(288, n)

    def call(prob, lo, hi):
        out = models[prob](x[lo:hi], graph, {k: v[lo:hi] for k, v in cov.items()})
        return out.mean if isinstance(out, torch.distributions.Distribution) else out

    lat = {p: [] for p in heads}
    day_s = {p: [] for p in heads}
    day_cpu = {p: [] for p in heads}
    with torch.inference_mode(), autocast_context(torch.device("cpu"), args.amp)():
        for p in heads:
            call(p, 287, 288), call(p, 287, 288)
        for r in range(args.reps):
            for p in (heads if r % 2 == 0 else heads[::-1]):
                t = time.perf_counter()
                call(p, 287, 288)
                lat[p].append(time.perf_counter() - t)
        for r in range(args.day_reps):
            for p in (heads if r % 2 == 0 else heads[::-1]):
                t, c = time.perf_counter(), time.process_time()
                for lo in range(0, 288, args.batch):
                    call(p, lo, min(lo + args.batch, 288))
                day_s[p].append(time.perf_counter() - t)
                day_cpu[p].append(time.process_time() - c)
    return {str(p): {"window_ms": 1e3 * statistics.median(lat[p]), "day_wps": 288 / statistics.median(day_s[p]),
                     "day_wps_cpu": 288 / statistics.median(day_cpu[p])} for p in heads}


def accuracy_section(run_dirs: list[str], threads: int) -> str:
    """``## bf16 accuracy``: test MAE (average and at the last step) of trained runs in float32 and in bf16
    autocast, as ``stgraph predict --amp bf16`` computes them."""
    import torch

    from stgraph.training.run import Run
    torch.set_num_threads(threads)
    rows = ["| run | model | test MAE float32 | bf16 | change | last step float32 | bf16 | change |",
            "|---|---|---|---|---|---|---|---|"]
    for d in run_dirs:
        res = {}
        for amp in ("off", "bf16"):
            run = Run.open(d, device="cpu", amp=amp)
            r = run.evaluate("test")
            last = max(r["horizons"], key=int)
            res[amp] = (r["average"]["mae"], r["horizons"][last]["mae"])
        (a0, l0), (a1, l1) = res["off"], res["bf16"]
        rows.append(f"| `{d}` | {run.config.model.name} | {a0:.4f} | {a1:.4f} | {100 * (a1 / a0 - 1):+.2f} % | "
                    f"{l0:.4f} | {l1:.4f} | {100 * (l1 / l0 - 1):+.2f} % |")
        print(rows[-1], flush=True)
    cmd = "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:])
    return ("## bf16 accuracy\n\nCommand: `" + cmd + "`. Test split of each trained run, masked MAE in data units, "
            "evaluated with `Run.open(run, amp='off' | 'bf16')`.\n\n" + "\n".join(rows) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--out", default=str(HERE / "results" / "inference.md"))
    p.add_argument("--child")
    p.add_argument("--heads", default="point", help=argparse.SUPPRESS)
    p.add_argument("--day-reps", type=int, default=3, help="passes over the day of windows (median)")
    p.add_argument("--threads", type=int, default=2, help="threads of the fast settings (children: their own)")
    p.add_argument("--amp", default="off", help=argparse.SUPPRESS)
    p.add_argument("--accuracy", nargs="*", default=[], metavar="RUN_DIR",
                   help="trained runs whose test MAE is compared in float32 and bf16 (a section of the results)")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, [h == "prob" for h in args.heads.split(",")], args)))
        return
    if args.accuracy:
        section = accuracy_section(args.accuracy, args.threads)
        print(section)
        from stgraph.files import atomic_write
        old = Path(args.out).read_text() if Path(args.out).is_file() else ""
        atomic_write(args.out, old.split("\n## bf16 accuracy")[0].rstrip("\n") + "\n\n" + section)
        return
    from stgraph.files import atomic_write
    from stgraph.models.registry import get_model_class
    import inspect
    load0 = os.getloadavg()
    fast = args.threads
    rows = [f"| model | head | window ms, 1 thread | {fast} threads | {fast} threads, bf16 | fastest (goal < 20) | "
            "day of windows, windows/s | per CPU-s |", "|---|---|---|---|---|---|---|---|"]

    def run(name, heads, threads, amp):
        cmd = [sys.executable, __file__, "--child", name, "--reps", str(args.reps), "--batch", str(args.batch),
               "--threads", str(threads), "--amp", amp, "--heads", heads, "--day-reps", str(args.day_reps)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        if done.returncode:
            print(f"{name} ({threads} threads, {amp}): failed\n{done.stderr[-1500:]}")
            return None
        return json.loads(done.stdout.strip().splitlines()[-1])

    for name in args.models.split(","):
        from stgraph.bench import setup_of
        has_prob = "probabilistic" in inspect.signature(get_model_class(setup_of(name)[0])).parameters
        one = run(name, "point,prob" if has_prob else "point", 1, "off")  # both heads in turns, one process
        if one is None:
            continue
        f32, b16 = run(name, "point", fast, "off"), run(name, "point", fast, "bf16")
        fastest = min((r["False"]["window_ms"] for r in (f32, b16) if r), default=None)
        cell = lambda r: "" if r is None else f"{r['False']['window_ms']:.1f}"
        goal = "" if fastest is None else (" met" if fastest < 20 else " missed")
        r = one["False"]
        rows.append(f"| {name} | point | {r['window_ms']:.1f} | {cell(f32)} | {cell(b16)} | "
                    f"{fastest if fastest is None else round(fastest, 1)}{goal} | {r['day_wps']:.0f} | "
                    f"{r['day_wps_cpu']:.0f} |")
        print(rows[-1], flush=True)
        if has_prob:
            q = one["True"]
            rows.append(f"| {name} | probabilistic | {q['window_ms']:.1f} "
                        f"({100 * (q['window_ms'] / r['window_ms'] - 1):+.0f} % window, "
                        f"{100 * (r['day_wps_cpu'] / q['day_wps_cpu'] - 1):+.0f} % CPU per day; goal < 10 %) | | | | "
                        f"{q['day_wps']:.0f} | {q['day_wps_cpu']:.0f} |")
            print(rows[-1], flush=True)
    head = (f"# Inference on CPU, 207 sensors (METR-LA graph), `torch.inference_mode`\n\n"
            f"Command: `python benchmarks/bench_inference.py {' '.join(sys.argv[1:])}`; day = 288 windows in "
            f"batches of {args.batch}. {load_text(load0)}.\n\n")
    atomic_write(args.out, head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
