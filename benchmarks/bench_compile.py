"""``torch.compile`` (what ``train.compile: true`` does) for every zoo model on CPU: does it work,
what does compiling cost, what does it gain.

Each model in its own child at METR-LA size (207 sensors, METR-LA graph), batch ``--batch``,
one thread: ``--steps`` eager training steps (after one warm-up), then the same model wrapped
in ``torch.compile``: the first compiled step (compile time included) and ``--steps`` more.
Reports eager and compiled seconds per step (CPU time, robust to other processes on the
machine), the speed-up and the compile time, or the error when compiling fails.

Usage: ``python benchmarks/bench_compile.py [--models stid,stgcn] [--batch 8]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from profile_zoo import ZOO, load_text, metr_la_graph, random_batch, zoo_model  # noqa: E402


def child(name: str, args) -> dict:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    graph = metr_la_graph()
    model = zoo_model(name, int(graph.num_nodes))
    x, y, cov = random_batch(args.batch, int(graph.num_nodes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(m):
        opt.zero_grad(set_to_none=True)
        (m(x, graph, cov) - y).abs().mean().backward()
        opt.step()

    def timed(m, k):
        c = time.process_time()
        for _ in range(k):
            step(m)
        return (time.process_time() - c) / k

    step(model)
    eager = timed(model, args.steps)
    compiled = torch.compile(model)
    try:
        t, c = time.perf_counter(), time.process_time()
        step(compiled)
        first_wall, first_cpu = time.perf_counter() - t, time.process_time() - c
        comp = timed(compiled, args.steps)
    except Exception as e:  # report, do not hide: the table says it failed and why
        return {"eager_s": eager, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    return {"eager_s": eager, "compiled_s": comp, "compile_wall_s": first_wall, "compile_cpu_s": first_cpu}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "compile.md"))
    p.add_argument("--child")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    from stgraph.files import atomic_write
    load0 = os.getloadavg()
    rows = ["| model | eager s/step (CPU) | compiled s/step (CPU) | speed-up | first compiled step: wall s / CPU s |",
            "|---|---|---|---|---|"]
    for name in args.models.split(","):
        done = subprocess.run([sys.executable, __file__, "--child", name, "--batch", str(args.batch),
                               "--steps", str(args.steps)], capture_output=True, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
        if done.returncode:
            rows.append(f"| {name} | crashed: {done.stderr.strip().splitlines()[-1][:150]} | | | |")
        else:
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(f"| {name} | {r['eager_s']:.3f} | failed: {r['error']} | | |" if "error" in r else
                        f"| {name} | {r['eager_s']:.3f} | {r['compiled_s']:.3f} | {r['eager_s'] / r['compiled_s']:.2f}x"
                        f" | {r['compile_wall_s']:.0f} / {r['compile_cpu_s']:.0f} |")
        print(rows[-1], flush=True)
    head = (f"# torch.compile on CPU (`train.compile: true`), 207 sensors, batch {args.batch}, 1 thread\n\n"
            f"Command: `python benchmarks/bench_compile.py {' '.join(sys.argv[1:])}`. "
            f"{load_text(load0)}; step times are CPU seconds of the process.\n\n")
    atomic_write(args.out, head + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
