"""stgt's training cost, the shipped shape (``stgraph/configs/stgt.yaml``) against the classic one
(``stgt-classic.yaml``), side by side in one run: the cost goals of issue 23.

Rows (each in its own process, so its peak RSS is its own; the processes take turns over ``--rounds``
rounds, order reversed every other round; every process reports the median of its timed steps after
one warm-up step; one step = forward, masked MAE, backward, AdamW):

* the METR-LA graph (207 sensors), batch 16, both shapes: the speed-up of the default (goal >= 5x);
* a synthetic road network of 8,600 sensors (:func:`stgraph.synth.make_road_network`), the shipped
  shape at batch 8 (goal: within 3 GB and 6 s) and batch 32 (goal: fits 24 GB), with the trainer's
  default allocator (:func:`stgraph.runtime.tune_malloc`: blocks up to 32 MiB kept in the heap,
  larger ones mapped and given back); the classic shape at batch 8 for reference, with the lean
  allocator and recompute as ``stgraph train`` falls back to (the plain classic step does not fit 14 GB);
* the allocator before this change (every block kept in the heap, ``heap_only``), shipped shape, at
  207 sensors batch 16 and 8,600 sensors batch 8: what the 32 MiB threshold changes.

The worker and the turn-taking are ``bench_attention.py``'s. Both shapes use their shipped
parameters (width, heads, blocks, patches), 2 input channels, 12 steps in and out, the
memory-efficient ``sparse`` spatial attention, the machine's torch threads.

Usage: ``python benchmarks/bench_stgt_cost.py [--rounds 2 --steps 3]``
-> ``benchmarks/results/stgt_cost.md`` and ``stgt_cost.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_attention import interleave, key, shape_params, summarise  # noqa: E402

ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
OUT = HERE / "results"
SHAPES = ("stgt", "stgt-classic")


def specs(args) -> list[tuple[str, dict]]:
    rows = []
    for shape in SHAPES:
        p = shape_params(shape)
        rows.append(("metr-la", {"nodes": 207, "batch": 16, "path": "sparse", "hidden": p.pop("hidden"),
                                 "steps": args.steps, "params": p, "label": f"{shape} N=207 B=16"}))
    p = shape_params("stgt")
    hidden = p.pop("hidden")
    rows.append(("metr-la", {"nodes": 207, "batch": 16, "path": "sparse", "hidden": hidden, "steps": args.steps,
                             "params": p, "heap_only": True, "label": "stgt N=207 B=16, every block in the heap"}))
    for b in (8, 32):
        rows.append(("large", {"nodes": 8600, "batch": b, "path": "sparse", "hidden": hidden, "steps": 1,
                               "params": p, "label": f"stgt N=8600 B={b}"}))
    rows.append(("large", {"nodes": 8600, "batch": 8, "path": "sparse", "hidden": hidden, "steps": 1, "params": p,
                           "heap_only": True, "label": "stgt N=8600 B=8, every block in the heap"}))
    p = shape_params("stgt-classic")
    rows.append(("large", {"nodes": 8600, "batch": 8, "path": "sparse", "hidden": p.pop("hidden"), "steps": 1,
                           "params": p, "lean": True, "recompute": True,
                           "label": "stgt-classic N=8600 B=8 (lean allocator + recompute)"}))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per process at 207 sensors")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--skip-large", action="store_true", help="only the METR-LA rows")
    ap.add_argument("--out", default=str(OUT / "stgt_cost"))
    args = ap.parse_args()
    log = lambda m: print(m, flush=True)  # noqa: E731
    t0, load0 = time.time(), os.getloadavg()
    rows = [(g, s) for g, s in specs(args) if not (args.skip_large and g == "large")]
    res = interleave([s for g, s in rows if g == "metr-la"], args.rounds, args.timeout, log)
    res.update(interleave([s for g, s in rows if g == "large"], 1, args.timeout, log))
    table = [{"label": s["label"], "batch": s["batch"], "nodes": s["nodes"], **summarise(res[key(s)])}
             for _, s in rows]
    by = {r["label"]: r for r in table}
    small = [by.get(f"{shape} N=207 B=16", {}) for shape in SHAPES]
    ratio = (small[1]["seconds"] / small[0]["seconds"]) if all("seconds" in r for r in small) else None
    payload = {"rounds": args.rounds, "steps": args.steps, "threads": __import__("torch").get_num_threads(),
               "table": table, "speedup_207_b16": ratio, "load": [load0[0], os.getloadavg()[0]],
               "minutes": round((time.time() - t0) / 60, 1)}
    from stgraph.files import atomic_write
    atomic_write(args.out + ".json", json.dumps(payload, indent=1))
    lines = ["# stgt: one training step, shipped shape against the classic one", "",
             f"Command: `python benchmarks/bench_stgt_cost.py {' '.join(sys.argv[1:])}`", "",
             f"CPU, {payload['threads']} torch threads, 12 steps in / 12 out, 2 input channels, sparse spatial "
             f"attention. Seconds: median of the timed steps (after one warm-up) over {args.rounds} interleaved "
             f"processes at 207 sensors, one process of one step at 8,600. Peak: the process's peak RSS (GB), torch "
             f"and the graph included. 1-minute load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f} on "
             f"{os.cpu_count()} cores; {payload['minutes']} min in all.", "",
             "| case | params | s / step | peak GB |", "|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['label']} | {r.get('parameters', '-'):,} | "
                     + (f"{r['seconds']:.3f} | {r['peak_rss_mb'] / 1024:.2f} |" if "seconds" in r else f"{r['error']} | - |"))
    if ratio:
        lines += ["", f"Classic / shipped step time at 207 sensors, batch 16: **{ratio:.2f}x** (goal >= 5x)."]
    atomic_write(args.out + ".md", "\n".join(lines) + "\n")
    log("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
