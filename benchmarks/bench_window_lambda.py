"""STGCN on a dynamic graph: a training step with ``lambda_max`` estimated for every batch (an empty cache
for each step, as before the per-period cache) against the cache kept (estimated once per period).

A random dynamic graph of ``--periods`` periods over ``--nodes`` nodes (about 6 in-edges a node), batches of
``--batch`` windows each holding a random period, STGCN's default widths; forward, backward and an AdamW step,
one thread. Both paths run interleaved in one process after a warm-up that fills the cache; the medians of
``--steps`` steps are printed with their ratio.

Usage: ``python benchmarks/bench_window_lambda.py [--nodes 40 --periods 730 --batch 32 --steps 30]``
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=40)
    ap.add_argument("--periods", type=int, default=730)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    from stgraph.graph.dynamic import DynamicGraph
    from stgraph.models.registry import build_model

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    N, P = args.nodes, args.periods
    edges, ptr = [], [0]
    for _ in range(P):
        src, dst = torch.randint(0, N, (6 * N,), generator=g), torch.randint(0, N, (6 * N,), generator=g)
        key = torch.unique(src[src != dst] * N + dst[src != dst])
        edges.append(torch.stack([key // N, key % N]))
        ptr.append(ptr[-1] + key.numel())
    ei = torch.cat(edges, 1)
    times = np.datetime64("2012-03-01", "ns") + np.arange(P) * np.timedelta64(1, "D")
    dg = DynamicGraph([str(i) for i in range(N)], times, ei, torch.rand(ei.size(1), generator=g),
                      torch.tensor(ptr)).aligned(times)
    sizes = dict(num_nodes=N, in_channels=1, out_channels=1, input_len=12, horizon=12, steps_per_day=1,
                 target_channels=(0,), probabilistic=False)
    model = build_model("stgcn", sizes, {})
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(args.batch, 12, N, 1), torch.randn(args.batch, 12, N, 1)

    def step(keep: bool) -> float:
        full = model._window_lambdas
        if not keep:
            model._window_lambdas = {}  # an empty cache for this step only
        wg = dg.window_graphs(torch.randint(0, P, (args.batch,), generator=g))
        t0 = time.perf_counter()
        loss = (model(x, wg) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model._window_lambdas = full
        return (time.perf_counter() - t0) * 1e3

    for p in range(0, P, args.batch):  # warm-up: every period's lambda in the cache
        model(x[: min(args.batch, P - p)], dg.period_graphs(torch.arange(p, min(P, p + args.batch))))
    times_ms = {False: [], True: []}
    for _ in range(args.steps):
        for keep in (False, True):
            times_ms[keep].append(step(keep))
    assert len(model._window_lambdas) == P, len(model._window_lambdas)
    from stgraph.nn.window_graphs import window_laplacian
    op_ms = {False: [], True: []}
    for _ in range(args.steps):
        for keep in (False, True):
            wg = dg.window_graphs(torch.randint(0, P, (args.batch,), generator=g))
            cache = model._window_lambdas if keep else {}
            t0 = time.perf_counter()
            window_laplacian(wg, None, cache=cache)
            op_ms[keep].append((time.perf_counter() - t0) * 1e3)
    op_every, op_cached = statistics.median(op_ms[False]), statistics.median(op_ms[True])
    every, cached = statistics.median(times_ms[False]), statistics.median(times_ms[True])
    print(f"STGCN training step, {N} nodes, {P} periods, batch {args.batch}, median of {args.steps} "
          f"(one thread): lambda estimated every batch {every:.1f} ms, cached per period {cached:.1f} ms, "
          f"ratio {every / cached:.2f}x; building the batch's Laplacian alone {op_every:.2f} ms against "
          f"{op_cached:.2f} ms, ratio {op_every / op_cached:.1f}x")


if __name__ == "__main__":
    main()
