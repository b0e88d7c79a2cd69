"""One ``stgt`` training step at growing network sizes, per spatial-attention path: seconds and peak memory.

Graphs: the real METR-LA graph (207 sensors, ``../shared/data/metr-la-week/adj_mx.pkl``) and synthetic
road networks from :func:`stgraph.synth.make_road_network` (the generator behind ``stgraph data synth``)
of 1,000, 2,000 and 8,600 sensors. Model: ``stgt`` in a shipped shape (``--shape``: ``stgt``, the default
efficient one, or ``stgt-classic``; its width unless ``--hidden``), 12 steps in and out, batch 8 and 32;
one step = forward, backward and AdamW update on random inputs. Paths:

* ``gather``: the plain edge-wise formulation (stgraph's previous ``sparse`` path): q/k/v gathered
  for every edge and slice, all kept for backward;
* ``dense``: SDPA over all sensors with an additive mask (explicit scores on CPU training);
* ``sparse``: the memory-efficient edge attention (chunked online softmax, recomputed backward).
  Where the plain ``sparse`` step would not fit ``--max-gb``, it runs with ``recompute=True``
  (activation checkpointing per block), marked ``+rc``.

Every (size, batch, path) runs in its own process (its peak RSS is its own), with the malloc tuning
the trainer uses; the processes take turns over ``--rounds`` rounds (order reversed every other
round) and each reports the median of ``--steps`` timed steps after one warm-up step. A row whose
estimated peak (``stgraph.training.memory.estimate_train_memory`` plus the process footprint) exceeds ``--max-gb``
is not run: it shows the estimate, marked ``est.``. Also measured: the chunk budget of the sparse
path (``--chunk-sweep``), the CPU inference paths incl. FlexAttention, and the headline step at
8,600 sensors, batch 8, width 64.

Usage: ``python benchmarks/bench_attention.py [--rounds 2 --steps 2 --max-gb 14] [--dry-run]``
(8,600-sensor rows: one round of one step; 2,000: one step a round).
-> ``benchmarks/results/attention_scaling.md``, ``attention_scaling.json``, ``attention_scaling.png``.
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results"
SIZES = (207, 1000, 2000, 8600)
BATCHES = (8, 32)
PATHS = ("gather", "dense", "sparse")


# ----------------------------------------------------------------------------------- the worker
def shape_params(name: str) -> dict:
    """The model params of a shipped stgt set-up (``stgt``, ``stgt-classic``), ``hidden`` included."""
    from stgraph.config import compose_config
    params = dict(compose_config(None, name).model.params)
    params.pop("spatial_backend", None)
    return params


@functools.lru_cache(maxsize=None)
def build(num_nodes: int):
    """``(edge_index [2, E], edge_weight [E])`` of the METR-LA graph (207) or a synthetic road network."""
    import torch

    from stgraph.graph import read_graph, to_pyg
    if num_nodes == 207:
        from stgraph.shared_data import shared_file
        week = shared_file("metr-la-week")
        if week is None:
            raise SystemExit("error: ../shared/data/metr-la-week not found beside the project")
        g = read_graph(week / "adj_mx.pkl")
        ids = [str(n) for n in g.nodes]
        data = to_pyg(g, ids)
    else:
        from stgraph.synth import make_road_network
        g = make_road_network(num_nodes, seed=0)
        data = to_pyg(g, list(g.nodes))
    return data.edge_index, data.edge_weight.to(torch.float32)


def worker(spec: dict) -> dict:
    import resource

    import torch

    from stgraph.models.stgt import STGT
    from stgraph.runtime import lean_malloc, tune_malloc
    if spec.get("lean"):
        lean_malloc()
    else:  # "heap_only": every block kept in the heap, the retaining allocator before MMAP_THRESHOLD
        tune_malloc(None) if spec.get("heap_only") else tune_malloc()
    torch.manual_seed(0)
    N, B = spec["nodes"], spec["batch"]
    ei, ew = build(N)

    class Graph:
        edge_index, edge_weight = ei, ew

    model = STGT(N, 2, 1, 12, 12, hidden=spec["hidden"], spatial_backend=spec["path"],
                 recompute=spec.get("recompute", False), **spec.get("params", {}))
    if spec.get("chunk_mb"):
        for mod in model.modules():
            if hasattr(mod, "chunk_bytes"):
                mod.chunk_bytes = int(spec["chunk_mb"]) << 20
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(B, 12, N, 2), torch.randn(B, 12, N, 1)
    tod = torch.rand(B, 12)
    cov = {"tod_in": tod, "dow_in": torch.zeros(B, 12, dtype=torch.long), "tod_out": tod,
           "dow_out": torch.zeros(B, 12, dtype=torch.long)}
    times = []
    if spec.get("inference"):
        model.eval()
        with torch.no_grad():
            for i in range(spec["steps"] + 1):
                t = time.perf_counter()
                model(x, Graph, cov)
                times.append(time.perf_counter() - t)
    else:
        for i in range(spec["steps"] + 1):
            t = time.perf_counter()
            loss = (model(x, Graph, cov) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
    return {"seconds": times[1:], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "edges": int(ei.size(1)), "parameters": sum(p.numel() for p in model.parameters())}


def estimate_gb(spec: dict) -> float:
    """Estimated peak (GB) of a spec, without building its graph's tensors twice in memory."""
    import torch  # noqa: F401

    from stgraph.models.stgt import STGT
    from stgraph.training.memory import estimate_train_memory
    ei, _ = build(spec["nodes"])
    m = STGT(spec["nodes"], 2, 1, 12, 12, hidden=spec["hidden"], spatial_backend=spec["path"],
             recompute=spec.get("recompute", False), **spec.get("params", {}))
    return (0.45 * 2**30 + estimate_train_memory(m, spec["batch"], int(ei.size(1)),
                                                 lean=spec.get("lean", False))) / 2**30


# ---------------------------------------------------------------------------------- the driver
def run_spec(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {p.returncode}: {tail[0][:200]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def interleave(specs: list[dict], rounds: int, timeout: float, log) -> dict:
    results: dict[str, list[dict]] = {key(s): [] for s in specs}
    for r in range(rounds):
        order = specs if r % 2 == 0 else list(reversed(specs))
        for s in order:
            res = run_spec(s, timeout)
            results[key(s)].append(res)
            msg = res.get("error") or (f"{statistics.median(res['seconds']):.3f} s/step, "
                                       f"{res['peak_rss_mb']:.0f} MB")
            log(f"  round {r + 1}: {s['label']}: {msg}")
    return results


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error", "not run") if runs else "not run"}
    return {"seconds": statistics.median([t for r in ok for t in r["seconds"]]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ok), "edges": ok[0]["edges"],
            "parameters": ok[0]["parameters"], "runs": len(ok)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=2, help="timed steps per process (after one warm-up)")
    p.add_argument("--shape", default="stgt", help="shipped stgt set-up whose parameters the model takes")
    p.add_argument("--hidden", type=int, help="width (default: the shape's)")
    p.add_argument("--max-gb", type=float, default=14.0, help="rows estimated above this are not run")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    p.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p.add_argument("--skip-extras", action="store_true", help="only the scaling table")
    p.add_argument("--dry-run", action="store_true", help="print the rows and their estimates, run nothing")
    p.add_argument("--out", default=str(OUT / "attention_scaling"))
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    log = lambda m: print(m, flush=True)  # noqa: E731
    t_start = time.time()
    params = shape_params(args.shape)
    args.hidden = args.hidden or params.pop("hidden")
    params.pop("hidden", None)
    sizes = [int(v) for v in args.sizes.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    rows, specs = [], []
    for N in sizes:
        for B in batches:
            for path in PATHS:
                spec = {"nodes": N, "batch": B, "path": path, "hidden": args.hidden, "params": params,
                        "steps": args.steps if N <= 1000 else 1, "label": f"N={N} B={B} {path}"}
                est = estimate_gb(spec)
                # the new path falls back as `stgraph train` does: lean allocator, then recompute
                for extra in ({"lean": True}, {"lean": True, "recompute": True}):
                    if path != "sparse" or est <= args.max_gb:
                        break
                    spec = {**spec, **extra, "label": f"N={N} B={B} sparse+" + "+".join(
                        {"lean": "lean", "recompute": "rc"}[k] for k in extra)}
                    est = estimate_gb(spec)
                rows.append((spec, est))
                if est <= args.max_gb:
                    specs.append(spec)
    extras = []
    if not args.skip_extras:
        # the headline: 8,600 sensors, batch 8, width 64 (recompute on: see the table for why)
        extras.append({"nodes": 8600, "batch": 8, "path": "sparse", "hidden": 64, "steps": 1, "params": params,
                       "label": "N=8600 B=8 D=64 sparse"})
        # chunk budget of the sparse path
        for mb in (4, 16, 64):
            extras.append({"nodes": 207, "batch": 32, "path": "sparse", "hidden": args.hidden, "params": params,
                           "steps": args.steps, "label": f"chunk {mb} MiB", "chunk_mb": mb})
        # CPU inference: sparse vs dense vs flex (unfused on CPU)
        for N, B in ((207, 32), (1000, 8)):
            for path in ("sparse", "dense", "flex"):
                extras.append({"nodes": N, "batch": B, "path": path, "hidden": args.hidden, "params": params,
                               "steps": args.steps, "inference": True, "label": f"infer N={N} B={B} {path}"})
        # small graphs, training: where dense beats sparse on CPU
        for N in (30, 60, 120):
            for path in ("sparse", "dense"):
                extras.append({"nodes": N, "batch": 32, "path": path, "hidden": args.hidden, "params": params,
                               "steps": args.steps, "label": f"small N={N} {path}"})
    log(f"{len(specs)} scaling runs x {args.rounds} rounds, {len(extras)} extra runs")
    if args.dry_run:
        for spec, est in rows:
            log(f"  {spec['label']}: estimated {est:.1f} GB{'' if spec in specs else ' (not run)'}")
        for e in extras:
            log(f"  extra {e['label']}: estimated {estimate_gb(e):.1f} GB")
        return 0
    results = interleave([s for s in specs if s["nodes"] < 8600], args.rounds, args.timeout, log)
    results.update(interleave([s for s in specs if s["nodes"] >= 8600], 1, args.timeout, log))
    extra_results = {}
    for e in extras:
        extra_results[e["label"]] = summarise(interleave([e], 1 if e["nodes"] >= 8600 else args.rounds,
                                                         args.timeout, log)[key(e)])

    table = []
    for spec, est in rows:
        s = summarise(results.get(key(spec), [])) if spec in specs else {"error": "estimated"}
        table.append({"nodes": spec["nodes"], "batch": spec["batch"], "path": spec["label"].split()[-1],
                      "estimate_gb": round(est, 2), **s})
    payload = {"shape": args.shape, "params": params, "hidden": args.hidden, "rounds": args.rounds, "steps": args.steps, "max_gb": args.max_gb,
               "table": table, "extras": extra_results, "threads": __import__("torch").get_num_threads(),
               "minutes": round((time.time() - t_start) / 60, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    from stgraph.files import atomic_write
    atomic_write(args.out + ".json", json.dumps(payload, indent=1))
    write_markdown(payload, Path(args.out + ".md"), " ".join(sys.argv[1:]))
    plot(payload, Path(args.out + ".png"))
    log(f"wrote {args.out}.md / .json / .png ({payload['minutes']} min)")
    return 0


def fmt_row(r: dict) -> tuple[str, str]:
    if "seconds" in r:
        return f"{r['seconds']:.2f}", f"{r['peak_rss_mb'] / 1024:.2f}"
    if r.get("error") == "estimated":
        return "-", f"{r['estimate_gb']:.1f} est."
    return f"failed ({r.get('error')})", f"{r['estimate_gb']:.1f} est."


def write_markdown(payload: dict, path: Path, argv: str) -> None:
    lines = ["# stgt: one training step per spatial-attention path, by network size", "",
             f"Command: `python benchmarks/bench_attention.py {argv}`".rstrip(), "",
             f"CPU, {payload['threads']} threads, shape `{payload.get('shape', 'stgt-classic')}` "
             f"({payload.get('params', {})}), width {payload['hidden']}, 12 steps in / 12 out. Seconds: median of {payload['steps']} timed steps x {payload['rounds']} "
             f"interleaved processes (after a warm-up step). Memory: peak RSS of the process (GB), torch and "
             f"the graph included. `est.`: not run, estimated above {payload['max_gb']:.0f} GB. `+lean`: the "
             f"allocator that gives memory back (`stgraph.runtime.lean_malloc`); `+rc`: activation recompute "
             f"per block (what `stgraph train` switches to when a run fits no other way). Total "
             f"{payload['minutes']} min.", "",
             "| sensors | edges | batch | path | s / step | peak GB |", "|---|---|---|---|---|---|"]
    for r in payload["table"]:
        sec, mem = fmt_row(r)
        lines.append(f"| {r['nodes']} | {r.get('edges', '')} | {r['batch']} | {r['path']} | {sec} | {mem} |")
    ratios = []
    for r in payload["table"]:
        if r["path"].startswith("sparse") and "seconds" in r:
            for o in payload["table"]:
                if (o["nodes"], o["batch"]) == (r["nodes"], r["batch"]) and o["path"] == "gather" and "seconds" in o:
                    ratios.append(f"N={r['nodes']} B={r['batch']}: gather/sparse time {o['seconds'] / r['seconds']:.2f}x, "
                                  f"memory {o['peak_rss_mb'] / r['peak_rss_mb']:.2f}x")
    if ratios:
        lines += ["", "Side by side (same run): " + "; ".join(ratios) + "."]
    if payload["extras"]:
        lines += ["", "## Other measurements (same run)", "", "| case | s / step | peak GB |", "|---|---|---|"]
        for label, r in payload["extras"].items():
            sec, mem = (f"{r['seconds']:.3f}", f"{r['peak_rss_mb'] / 1024:.2f}") if "seconds" in r else \
                (f"failed ({r.get('error')})", "-")
            lines.append(f"| {label} | {sec} | {mem} |")
    from stgraph.files import atomic_write
    atomic_write(path, "\n".join(lines) + "\n")


def plot(payload: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"gather": "o--", "dense": "s:", "sparse": "^-"}
    for B in sorted({r["batch"] for r in payload["table"]}):
        for path_name in ("gather", "dense", "sparse"):
            rows = [r for r in payload["table"] if r["batch"] == B and r["path"].split("+")[0] == path_name]
            if not rows:
                continue
            xs = [r["nodes"] for r in rows]
            t = [r.get("seconds") for r in rows]
            m = [r["peak_rss_mb"] / 1024 if "peak_rss_mb" in r else r["estimate_gb"] for r in rows]
            lab = f"{path_name}, batch {B}"
            axes[0].plot([x for x, v in zip(xs, t) if v], [v for v in t if v], styles[path_name], label=lab)
            line, = axes[1].plot(xs, m, styles[path_name], label=lab)
            est = [(x, v) for x, v, r in zip(xs, m, rows) if "peak_rss_mb" not in r]
            if est:
                axes[1].plot(*zip(*est), "x", color=line.get_color(), markersize=9)
    axes[0].set(xscale="log", yscale="log", xlabel="sensors", ylabel="seconds per training step",
                title="time of one step")
    axes[1].set(xscale="log", yscale="log", xlabel="sensors", ylabel="peak memory (GB)",
                title="peak memory (x: estimated, not run)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    from stgraph.files import atomic_path
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


if __name__ == "__main__":
    sys.exit(main())
