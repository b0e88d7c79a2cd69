"""Every check a lent GPU machine should run for the attention paths, in one call (see ../shared/GPU.md).

1. Parity on the device, float32 and bf16: ``sparse`` (memory-efficient edge attention), ``dense``
   (SDPA) and ``flex`` (FlexAttention, compiled on CUDA) against the plain ``gather`` path, outputs
   and (where the path has a backward there) gradients, on a small messy graph.
2. ``stgt`` training step per path at METR-LA size (207 sensors) and 8,600 synthetic sensors:
   seconds a step (median) and peak device memory (``torch.cuda.max_memory_allocated``).

Runs on CPU too (``--device cpu``, small sizes) so it is tested before device time is spent.
Writes one JSON to ``--out`` (on the GPU machine: ``$OUT/gpu_check.json``).

Usage: ``PYTHONPATH=. python3 benchmarks/gpu_check.py --device cuda --out $OUT/gpu_check.json``
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parity(device: torch.device, dtype: torch.dtype) -> dict:
    from stgraph.nn import GraphAttention
    g = torch.Generator().manual_seed(0)
    N = 300
    ei = torch.randint(0, N, (2, 1500), generator=g)
    ei = torch.cat([ei, ei[:, :40], torch.tensor([[5], [5]])], dim=1)  # duplicates and a self loop
    ew = torch.rand(ei.size(1), generator=g)
    x0 = torch.randn(2, 3, N, 32, generator=g)
    ref = GraphAttention(32, 4, backend="gather").to(device)
    with torch.no_grad():
        ref.edge_scale.uniform_(-2, 2)
        ref.loop_bias.uniform_(-1, 1)
    out = {}
    x = x0.to(device).requires_grad_(True)
    y_ref = ref(x, ei.to(device), ew.to(device))
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, *ref.parameters()])
    for path in ("sparse", "dense", "flex"):
        layer = GraphAttention(32, 4, backend=path).to(device)
        layer.load_state_dict(ref.state_dict())
        xx = x0.to(device).requires_grad_(True)
        try:
            with warnings.catch_warnings(), torch.autocast(device.type, dtype=dtype,
                                                           enabled=dtype != torch.float32):
                warnings.simplefilter("ignore")
                y = layer(xx, ei.to(device), ew.to(device))
            grads = torch.autograd.grad(y.float().square().sum(), [xx, *layer.parameters()])
            out[path] = {"ran": layer.last_backend,
                         "max_abs_out": float((y.detach().float() - y_ref.detach()).abs().max()),
                         "max_abs_grad": max(float((a - b).abs().max()) for a, b in zip(grads, g_ref))}
        except Exception as e:  # a path that cannot run here is reported, not fatal
            out[path] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    return out


def step_time(device: torch.device, N: int, B: int, path: str, hidden: int, steps: int) -> dict:
    from stgraph.models.stgt import STGT
    from stgraph.synth import make_road_network
    from stgraph.graph import to_pyg
    net = make_road_network(N, seed=0)
    data = to_pyg(net, list(net.nodes))

    class Graph:
        edge_index, edge_weight = data.edge_index.to(device), data.edge_weight.float().to(device)

    torch.manual_seed(0)
    model = STGT(N, 2, 1, 12, 12, hidden=hidden, spatial_backend=path).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(B, 12, N, 2, device=device), torch.randn(B, 12, N, 1, device=device)
    tod = torch.rand(B, 12, device=device)
    z = torch.zeros(B, 12, dtype=torch.long, device=device)
    cov = {"tod_in": tod, "dow_in": z, "tod_out": tod, "dow_out": z}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pred = model(x, Graph, cov)
        loss = (pred.float() - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t)
    res = {"seconds": statistics.median(times[1:]), "windows_per_s": B / statistics.median(times[1:]),
           "ran": model.encoder[0].spatial.last_backend}
    if device.type == "cuda":
        res["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--sizes", default=None, help="sensors, comma-separated (default 207,8600 on CUDA, 207 on CPU)")
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in (args.sizes or ("207,8600" if device.type == "cuda" else "207")).split(",")]
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "parity": {}, "steps": []}
    for name, dt in (("float32", torch.float32), ("bf16", torch.bfloat16)):
        report["parity"][name] = parity(device, dt)
        print(name, json.dumps(report["parity"][name]), flush=True)
    for N in sizes:
        for B in (8, 32):
            for path in ("auto", "sparse", "dense", "flex"):
                try:
                    r = step_time(device, N, B, path, 64, args.steps)
                except Exception as e:
                    r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                report["steps"].append({"nodes": N, "batch": B, "path": path, **r})
                print(json.dumps(report["steps"][-1]), flush=True)
    from stgraph.files import atomic_write
    atomic_write(args.out, json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
