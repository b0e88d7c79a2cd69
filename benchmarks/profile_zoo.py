"""Profile one training step of each zoo model on the METR-LA graph (207 sensors).

For every model (a fresh child process each, so peaks are its own): build it
with the registry at METR-LA size (speed in, speed out, 12 -> 12 steps), run
``--warmup`` training steps (forward, masked MAE, backward, Adam) on random
z-scored windows, then ``--steps`` steps under ``torch.profiler`` and report

* the process's peak RSS (``ru_maxrss``, with the trainer's :func:`stgraph.runtime.tune_malloc`) and the training windows/s;
* the operators that take the most self CPU time (``--rows`` of them),
  written to ``benchmarks/results/profile/<model>.txt``.

The graph is the real METR-LA adjacency found through
:func:`stgraph.shared_data.shared_file` (``metr-la-week/adj_mx.pkl``).

Usage: ``python benchmarks/profile_zoo.py [--models dcrnn,gwnet] [--batch 32] [--threads 1]``
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ZOO = ("stid", "stgcn", "gwnet", "dcrnn", "gman", "staeformer", "stgt")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rows", type=int, default=25)
    p.add_argument("--no-profile", action="store_true", help="peak memory and speed only")
    p.add_argument("--out", default=str(HERE / "results" / "profile"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load_text(load0) -> str:
    """``os.getloadavg()`` at the start (``load0``) and now, as text for a results file."""
    now = os.getloadavg()
    shared = max(load0[0], now[0]) > (os.cpu_count() or 1)
    return (f"`os.getloadavg()` {tuple(round(v, 2) for v in load0)} -> {tuple(round(v, 2) for v in now)} on "
            f"{os.cpu_count()} cores: " + ("other work shared the cores, wall-clock figures are disturbed (per CPU-s less so)"
                                           if shared else "no more runnable work than cores"))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def metr_la_graph():
    """PyG graph of the METR-LA adjacency (207 sensors) and its sensor ids."""
    from stgraph.graph import read_graph, to_pyg
    from stgraph.graph.safe_pickle import safe_load_pickle
    from stgraph.shared_data import shared_file

    path = shared_file("metr-la-week", "adj_mx.pkl")
    if path is None:
        raise SystemExit("METR-LA graph not found: set STGRAPH_SHARED_DATA to the folder holding metr-la-week/")
    sensor_ids = [str(s) for s in safe_load_pickle(path)[0]]
    return to_pyg(read_graph(path, sensor_ids=sensor_ids), sensor_ids)


def zoo_model(name: str, num_nodes: int, params: dict | None = None, probabilistic: bool = False):
    """Zoo model ``name`` at METR-LA size: speed in, speed out, 12 -> 12 steps; ``params`` default: the
    model's shipped config (``stgraph/configs/<name>.yaml``, what ``stgraph train --model NAME`` builds)."""
    from stgraph.models.registry import build_model
    sizes = dict(num_nodes=num_nodes, in_channels=1, out_channels=1, input_len=12, horizon=12,
                 steps_per_day=288, target_channels=(0,), probabilistic=probabilistic)
    from stgraph.bench import setup_of
    model, path = setup_of(name)  # a model or a shipped set-up such as stgt-classic
    if params is None:
        from stgraph.config import compose_config
        params = dict(compose_config(None, path).model.params) if path else {}
    return build_model(model, sizes, params)


def random_batch(batch: int, num_nodes: int, seed: int = 0):
    """z-scored ``x [B, 12, N, 1]``, targets ``y [B, 12, N, 1]`` and the covariates dict."""
    import torch
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 12, num_nodes, 1, generator=g)
    y = torch.randn(batch, 12, num_nodes, 1, generator=g)
    tod0 = torch.randint(0, 288, (batch, 1), generator=g)
    tod_in = ((tod0 + torch.arange(12)) % 288) / 288.0
    tod_out = ((tod0 + 12 + torch.arange(12)) % 288) / 288.0
    dow = torch.zeros(batch, 12, dtype=torch.long)
    return x, y, {"tod_in": tod_in.float(), "dow_in": dow, "tod_out": tod_out.float(), "dow_out": dow}


def child(args: argparse.Namespace) -> dict:
    import torch

    from stgraph.runtime import tune_malloc
    tune_malloc()  # as the trainer does on CPU
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    graph = metr_la_graph()
    n = int(graph.num_nodes)
    model = zoo_model(args.child, n)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y, cov = random_batch(args.batch, n)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = (model(x, graph, cov) - y).abs().mean()
        loss.backward()
        opt.step()

    model.train()
    for _ in range(args.warmup):
        step()
    t0 = time.perf_counter()
    table = None
    if args.no_profile:
        for _ in range(args.steps):
            step()
    else:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False, profile_memory=True) as prof:
            for _ in range(args.steps):
                step()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    elapsed = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(model=args.child, params=params, peak_mb=rss_mb(), batch=args.batch,
                windows_per_s=args.batch * args.steps / elapsed, profiled=not args.no_profile, table=table)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    from stgraph.files import atomic_write
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    passed = sys.argv[1:] if argv is None else list(argv)
    rows = []
    for name in args.models.split(","):
        load0 = os.getloadavg()[0]
        done = subprocess.run([sys.executable, __file__, *passed, "--child", name], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        r["load"] = (load0, os.getloadavg()[0])
        rows.append(r)
        print(f"{name:<11} {r['params']:>10,} params  peak RSS {r['peak_mb']:7.0f} MB  "
              f"{r['windows_per_s']:7.1f} windows/s{' (under the profiler)' if r['profiled'] else ''}  "
              f"load {r['load'][0]:.2f}->{r['load'][1]:.2f}", flush=True)
        if r["table"]:
            head = (f"# {name}: one training step (forward, masked MAE, backward, Adam), batch {args.batch}, "
                    f"{args.threads} thread(s), 207 sensors (METR-LA graph), {args.steps} steps profiled\n"
                    f"# params {r['params']:,}; peak RSS {r['peak_mb']:.0f} MB; "
                    f"os.getloadavg() {r['load'][0]:.2f} -> {r['load'][1]:.2f} (1-minute load on {os.cpu_count()} cores)\n"
                    f"# command: python benchmarks/profile_zoo.py {' '.join(passed)}\n\n")
            atomic_write(out / f"{name}.txt", head + r["table"])


if __name__ == "__main__":
    main()
