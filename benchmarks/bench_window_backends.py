"""One-window inference of the shipped stgt on the METR-LA graph per spatial-attention path, side by side.

The same weights under ``'sparse'`` (the chunked edge kernel, what ``'auto'`` runs on CPU), ``'gather'``
(the plain edge-wise path) and ``'dense'``, called in turns over ``--rounds`` rounds
under ``torch.inference_mode`` at ``--threads`` threads; each prints the median of ``--reps`` calls after
three warm-up calls, and the largest difference between the paths' outputs.

Usage: ``python benchmarks/bench_window_backends.py [--rounds 3 --reps 30 --threads 2]``
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from profile_zoo import metr_la_graph, random_batch, zoo_model  # noqa: E402

PATHS = ("sparse", "gather", "dense")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from stgraph.config import compose_config
    torch.set_num_threads(args.threads)
    graph = metr_la_graph()
    n = int(graph.num_nodes)
    x, _, cov = random_batch(1, n)
    models = {}
    for path in PATHS:
        params = {**compose_config(None, "stgt").model.params, "spatial_backend": path}
        models[path] = zoo_model("stgt", n, params).eval()
        models[path].load_state_dict(models[PATHS[0]].state_dict())
    times = {p: [] for p in PATHS}
    outs = {}
    with torch.inference_mode():
        for r in range(args.rounds):
            for path in (PATHS if r % 2 == 0 else PATHS[::-1]):
                m = models[path]
                for _ in range(3):
                    m(x, graph, cov)
                for _ in range(args.reps):
                    t = time.perf_counter()
                    outs[path] = m(x, graph, cov)
                    times[path].append(time.perf_counter() - t)
    for path in PATHS:
        print(f"{path:<7} {statistics.median(times[path]) * 1000:6.2f} ms a window (median of "
              f"{len(times[path])} calls, {args.threads} threads)")
    base = statistics.median(times["sparse"])
    print("sparse / gather: " + f"{base / statistics.median(times['gather']):.2f}x; largest output difference "
          + f"{max((outs[p] - outs['sparse']).abs().max().item() for p in PATHS):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
