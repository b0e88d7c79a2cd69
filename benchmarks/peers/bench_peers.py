"""stgraph against torch-spatiotemporal (tsl) and PyTorch Geometric Temporal, side by side.

``make bench-peers`` (or ``python benchmarks/peers/bench_peers.py [--quick]``). Each
measurement runs in a fresh child process, stgraph's in stgraph's venv and the peers' in
``.venv-peers`` (made by ``setup_peers.sh`` when absent); the two sides alternate
(interleaved repeats, the order swapped every repeat) and the tables give medians and
the ratio stgraph / peer. Same data for both sides: a synthetic METR-LA-size series
(34,272 steps x 207 sensors, simulated by :func:`stgraph.synth.simulate_speeds` on the
real METR-LA road graph, written once as a pandas-layout HDF5 file under
``.stgraph-cache/bench-peers/``) and the METR-LA graph (``metr-la-week/adj_mx.pkl``
found by :mod:`stgraph.shared_data`).

Figures:

* ``import``: seconds to import the package in a fresh interpreter (stgraph: ``import
  stgraph``; tsl: ``import tsl`` with torch_geometric, as it needs it), and to import what a
  training script uses (stgraph: ``.data``, ``.models``, ``.training``; tsl: ``.data``, ``.nn.models``);
* ``data``: from the HDF5 file to the first training batch (batch 64): seconds and the
  memory it adds (peak RSS minus the RSS before it), against the raw float32 array; each side
  first runs the same path on a 2-day file, so one-time costs (lazy imports, library code paged
  in) are not counted as data;
  then the train loader's batches/s over ``--loader-batches`` shuffled batches;
* ``train``: per architecture, windows/s of a training step (forward, MAE on z-scored
  targets, backward, Adam) at batch 32, 1 thread, fp32, on random z-scored windows of the
  real shapes, wall clock and per CPU-second (robust to other processes), peak RSS of the
  process, parameters of each side;
* ``infer``: eval mode under ``torch.inference_mode``: latency of one batch of 32 and of one
  window (the latest hour, all 207 sensors), median of ``--infer-reps`` calls.

Peers: torch_sparse / torch_scatter are replaced by stand-ins (``shims/``, see its README),
tsl runs with ``PYTORCH_JIT=0``. Results: ``benchmarks/results/performance.md`` and
``peers.json`` beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / ".stgraph-cache" / "bench-peers" / "metr-la-size.h5"
WARM = DATA.with_name("metr-la-2days.h5")  # its first 576 steps, to warm the data path up
N_STEPS, N_DAYS = 34_272, 119

# (row name, stgraph model + params, peer package, peer model + params, note)
PAIRS = [
    ("Graph WaveNet", ("gwnet", {}), "tsl", ("GraphWaveNetModel", {}), ""),
    ("DCRNN", ("dcrnn", {}), "tsl", ("DCRNNModel", {"hidden_size": 75, "n_layers": 2, "ff_size": 256}),
     "tsl's DCRNNModel: DCGRU encoder + MLP readout (no recurrent decoder); stgraph: the paper's seq2seq"),
    ("STID", ("stid", {}), "tsl", ("STIDModel", {"n_exog_emb": [288, 7]}), ""),
    ("A3T-GCN vs DCRNN (small)", ("dcrnn", {"hidden": 32, "num_layers": 1}), "pgt", ("A3TGCN2", {"hidden": 72}),
     "PyG-Temporal's A3TGCN2 (+ linear head to 12 steps) against the nearest stgraph model, a 1-layer DCRNN"),
    ("STGCN", ("stgcn", {}), "pgt", ("STConv", {"hidden": 64, "out": 76}),
     "PyG-Temporal's STConv (gated temporal conv, ChebConv K=3, temporal conv, batch norm) x 2 + a linear head on "
     "the last 4 steps, speed only as input on both sides; stgraph: the paper's STGCN"),
    ("GConvGRU vs DCRNN (small)", ("dcrnn", {"hidden": 32, "num_layers": 1}), "pgt", ("GConvGRU", {"hidden": 58, "K": 3}),
     "PyG-Temporal's GConvGRU (Chebyshev K=3) run over the 12 input steps on the batch as one disjoint graph "
     "(B x N nodes, its unbatched API), + a linear head to 12 steps, against a 1-layer DCRNN"),
]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ----------------------------------------------------------------------------- children
def graph_tensors():
    """``(sensor_ids, edge_index [2, E], edge_weight [E])`` of the METR-LA graph (numpy, both sides)."""
    import pickle

    import numpy as np
    sys.path.insert(0, str(ROOT))
    from stgraph.shared_data import shared_file
    path = shared_file("metr-la-week", "adj_mx.pkl")
    if path is None:
        raise SystemExit("METR-LA graph not found (metr-la-week/adj_mx.pkl): set STGRAPH_SHARED_DATA")
    with open(path, "rb") as fh:  # the benchmark's own trusted file; stgraph's side reads it with its reader
        ids, _, w = pickle.load(fh, encoding="latin1")
    w = np.asarray(w, dtype=np.float32)
    np.fill_diagonal(w, 0.0)
    src, dst = np.nonzero(w)
    return [str(i) for i in ids], np.stack([src, dst]), w[src, dst]


def child_import(side: str) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    if side == "stgraph":
        import stgraph  # noqa: F401
    else:
        sys.path.insert(0, str(HERE))
        import peers_env
        peers_env.activate()
        import tsl  # noqa: F401
    t1 = time.perf_counter()
    if side == "stgraph":  # what a training script needs (stgraph imports torch lazily)
        import stgraph.data  # noqa: F401
        import stgraph.models  # noqa: F401
        import stgraph.training  # noqa: F401
    else:
        import tsl.data  # noqa: F401
        import tsl.nn.models  # noqa: F401
    t2, c2 = time.perf_counter(), time.process_time()
    if side != "stgraph":
        import torch_geometric_temporal  # noqa: F401
    return {"import_s": t1 - t0, "import_full_s": t2 - t0, "import_full_cpu_s": c2 - c0,
            "pgt_extra_s": time.perf_counter() - t2 if side != "stgraph" else None}


def child_data(side: str, args) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(1)
    if side == "stgraph":
        from stgraph.data import ForecastData
        from stgraph.graph import read_graph, to_pyg
        from stgraph.io import read_series
        from stgraph.shared_data import shared_file
    else:
        sys.path.insert(0, str(HERE))
        import peers_env
        peers_env.activate()
        import pandas as pd
        from tsl.data import SpatioTemporalDataModule, SpatioTemporalDataset
        from tsl.data.datamodule.splitters import TemporalSplitter
        from tsl.data.preprocessing import StandardScaler
        _, ei, ew = graph_tensors()
    if side == "stgraph":  # the graph is read before the measured part, as tsl's (graph_tensors above)
        g = read_graph(shared_file("metr-la-week", "adj_mx.pkl"))
        graph = to_pyg(g, list(g.nodes))  # noqa: F841 (kept alive, like tsl's edge arrays)

    def first_batch(path):
        """The side's data path: file -> windows, split, scaler -> the train loader and its first batch."""
        if side == "stgraph":
            series = read_series(path)
            data = ForecastData.from_series(series, input_len=12, horizon=12)
            loader = data.loader("train", 64, shuffle=True, generator=torch.Generator().manual_seed(0))
        else:
            df = pd.read_hdf(path)
            tod = ((df.index - df.index.normalize()).total_seconds().to_numpy() / 86400.0).astype(np.float32)
            ds = SpatioTemporalDataset(target=df, mask=df.to_numpy() != 0, connectivity=(ei, ew),
                                       covariates={"u": tod[:, None]}, window=12, horizon=12)
            dm = SpatioTemporalDataModule(ds, scalers={"target": StandardScaler(axis=(0, 1))},
                                          splitter=TemporalSplitter(val_len=0.1, test_len=0.2), batch_size=64,
                                          workers=0)
            dm.setup()
            loader = dm.train_dataloader(shuffle=True)
        return loader, next(iter(loader))

    # the same path once on a 2-day file first, so that the figures below hold the data, not what any
    # first call costs once per process (lazy imports, library code paged in, allocator set-up)
    first_batch(WARM)
    base_cur, t0 = current_mb(), time.perf_counter()
    loader, first = first_batch(DATA)
    x = first.x
    prep_s = time.perf_counter() - t0
    added = rss_mb() - base_cur
    t0, n = time.perf_counter(), 0
    while n < args.loader_batches:
        for _ in loader:
            n += 1
            if n >= args.loader_batches:
                break
    bps = n / (time.perf_counter() - t0)
    return {"prep_s": prep_s, "added_mb": added, "raw_mb": N_STEPS * 207 * 4 / 2**20, "peak_mb": rss_mb(),
            "batches_per_s": bps, "x_shape": list(x.shape), "batches": len(loader)}


class _PGTHead:  # built lazily (torch imported in the child only)
    pass


def build_model(side: str, pair_idx: int):
    """``(model, forward(x [B,12,N,1], tod [B,12]) -> [B,12,N,1])``."""
    import torch
    name, (sg_name, sg_params), peer_pkg, (p_name, p_params), _ = PAIRS[pair_idx]
    sensor_ids, ei, ew = graph_tensors()
    n = len(sensor_ids)
    ei_t, ew_t = torch.as_tensor(ei, dtype=torch.long), torch.as_tensor(ew)
    if side == "stgraph":
        from torch_geometric.data import Data

        from stgraph.models.registry import build_model as sg_build
        sizes = dict(num_nodes=n, in_channels=1, out_channels=1, input_len=12, horizon=12, steps_per_day=288,
                     target_channels=(0,), probabilistic=False)
        model = sg_build(sg_name, sizes, sg_params)
        graph = Data(edge_index=ei_t, edge_weight=ew_t, num_nodes=n)
        dow = torch.zeros(1, 12, dtype=torch.long)

        def fwd(x, tod):
            b = x.size(0)
            cov = {"tod_in": tod, "dow_in": dow.expand(b, 12), "tod_out": (tod + 12 / 288) % 1.0,
                   "dow_out": dow.expand(b, 12)}
            return model(x, graph, cov)
        return model, fwd
    sys.path.insert(0, str(HERE))
    import peers_env
    peers_env.activate()
    if peer_pkg == "tsl":
        import tsl.nn.models as M
        cls = getattr(M, p_name)
        if p_name == "STIDModel":
            model = cls(input_size=1, n_nodes=n, window=12, horizon=12, output_size=1, **p_params)
            def stid_fwd(x, tod):  # time-of-day slot and day of week (0 here, as on stgraph's side)
                slot = (tod * 288).round().long() % 288
                return model(x, u=torch.stack([slot, torch.zeros_like(slot)], -1))
            return model, stid_fwd
        kw = dict(input_size=1, output_size=1, horizon=12, exog_size=1, **p_params)
        if p_name == "GraphWaveNetModel":
            kw["n_nodes"] = n
        model = cls(**kw)
        return model, lambda x, tod: model(x, ei_t, ew_t, u=tod[..., None])
    if p_name == "STConv":
        return _pgt_stgcn(n, ei_t, ew_t, **p_params)
    if p_name == "GConvGRU":
        return _pgt_gconvgru(n, ei_t, ew_t, **p_params)
    from torch_geometric_temporal.nn.recurrent import A3TGCN2
    hidden = p_params["hidden"]

    class A3T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = A3TGCN2(in_channels=2, out_channels=hidden, periods=12, batch_size=32)
            self.head = torch.nn.Linear(hidden, 12)

        def forward(self, x, tod):  # [B, 12, N, 1] -> PGT's [B, N, F, T]
            b, t, nn_, _ = x.shape
            z = torch.cat([x, tod[:, :, None, None].expand(b, t, nn_, 1)], -1).permute(0, 2, 3, 1)
            h = torch.relu(self.cell(z, ei_t, ew_t))  # [B, N, hidden]
            return self.head(h).permute(0, 2, 1)[..., None]
    model = A3T()
    return model, model


def _pgt_stgcn(n: int, ei, ew, hidden: int, out: int):
    """Two PyG-Temporal ``STConv`` blocks (12 -> 8 -> 4 steps) and a linear map of the last 4 steps to 12."""
    import torch
    from torch_geometric_temporal.nn.attention import STConv

    class STGCN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = STConv(n, 1, hidden, out, 3, 3)
            self.b2 = STConv(n, out, hidden, out, 3, 3)
            self.head = torch.nn.Linear(4 * out, 12)

        def forward(self, x, tod):  # [B, 12, N, 1] -> [B, 12, N, 1]; speed only, as stgraph's STGCN
            h = self.b2(self.b1(x, ei, ew), ei, ew)  # [B, 4, N, out]
            b = h.size(0)
            return self.head(h.permute(0, 2, 1, 3).reshape(b, n, -1)).permute(0, 2, 1)[..., None]
    model = STGCN()
    return model, model


def _pgt_gconvgru(n: int, ei, ew, hidden: int, K: int):
    """PyG-Temporal's ``GConvGRU`` over the 12 input steps (speed + time of day) on the batch's disjoint
    union graph, its last state mapped to 12 steps by a linear head."""
    import torch
    from torch_geometric_temporal.nn.recurrent import GConvGRU

    class Recurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = GConvGRU(2, hidden, K)
            self.head = torch.nn.Linear(hidden, 12)
            self._graphs = {}

        def graph(self, b):  # B copies of the graph, node ids offset by N (built once per batch size)
            if b not in self._graphs:
                off = (torch.arange(b) * n).repeat_interleave(ei.size(1))
                self._graphs[b] = (ei.repeat(1, b) + off, ew.repeat(b))
            return self._graphs[b]

        def forward(self, x, tod):  # [B, 12, N, 1] -> [B, 12, N, 1]
            b, t, _, _ = x.shape
            z = torch.cat([x, tod[:, :, None, None].expand(b, t, n, 1)], -1)
            gi, gw = self.graph(b)
            h = None
            for step in range(t):
                h = self.cell(z[:, step].reshape(b * n, 2), gi, gw, h)
            return self.head(torch.relu(h)).reshape(b, n, 12).permute(0, 2, 1)[..., None]
    model = Recurrent()
    return model, model


def child_train(side: str, args) -> dict:
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if side == "stgraph":
        from stgraph.runtime import tune_malloc
        tune_malloc()  # what stgraph's trainer does on CPU
    model, fwd = build_model(side, args.pair)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    g = torch.Generator().manual_seed(0)
    b = 32
    x = torch.randn(b, 12, 207, 1, generator=g)
    y = torch.randn(b, 12, 207, 1, generator=g)
    tod = ((torch.randint(0, 288, (b, 1), generator=g) + torch.arange(12)) % 288).float() / 288.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = (fwd(x, tod) - y).abs().mean()
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(args.train_steps):
        step()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = rss_mb()
    model.eval()
    lat_b, lat_1 = [], []
    with torch.inference_mode():
        for _ in range(2):
            fwd(x, tod), fwd(x[-1:], tod[-1:])
        for _ in range(args.infer_reps):
            t = time.perf_counter()
            fwd(x, tod)
            lat_b.append(time.perf_counter() - t)
            t = time.perf_counter()
            fwd(x[-1:], tod[-1:])
            lat_1.append(time.perf_counter() - t)
    return {"params": params, "train_wps": b * args.train_steps / wall, "train_wps_cpu": b * args.train_steps / cpu,
            "peak_mb": peak, "infer_batch_ms": 1e3 * statistics.median(lat_b),
            "infer_window_ms": 1e3 * statistics.median(lat_1)}


# ----------------------------------------------------------------------------- parent
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few-minute smoke run (1 repeat, few steps)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--train-steps", type=int, default=4)
    p.add_argument("--infer-reps", type=int, default=3)
    p.add_argument("--loader-batches", type=int, default=300)
    p.add_argument("--pairs", default=None, help="comma-separated row indices of PAIRS (default all)")
    p.add_argument("--stgraph-python", default=sys.executable)
    p.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--pair", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.repeats, a.warmup, a.train_steps, a.infer_reps, a.loader_batches = 1, 1, 2, 3, 100
    return a


def run_child(python: str, kind: str, side: str, args, pair: int | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    if side != "stgraph":
        env["PYTORCH_JIT"] = "0"
    cmd = [python, __file__, "--child", kind, "--side", side, "--warmup", str(args.warmup),
           "--train-steps", str(args.train_steps), "--infer-reps", str(args.infer_reps),
           "--loader-batches", str(args.loader_batches)]
    if pair is not None:
        cmd += ["--pair", str(pair)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    if done.returncode != 0:
        print(f"  {kind}/{side}{'' if pair is None else f'/{pair}'} failed:\n{done.stderr[-2500:]}", flush=True)
        return {"error": done.stderr[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ensure_inputs(args) -> None:
    if not Path(args.peers_python).exists():
        subprocess.run(["bash", str(HERE / "setup_peers.sh")], check=True, cwd=str(ROOT))
    if not DATA.exists():
        code = ("from stgraph.graph import read_graph; from stgraph.synth import simulate_speeds; "
                "from stgraph.io import write_series; from stgraph.shared_data import shared_file; "
                f"s = simulate_speeds(read_graph(shared_file('metr-la-week', 'adj_mx.pkl')), days={N_DAYS}, seed=0); "
                f"write_series(s, {str(DATA)!r}, layout='pandas')")
        DATA.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {DATA} (synthetic speeds, {N_STEPS} x 207)", flush=True)
        subprocess.run([args.stgraph_python, "-c", code], check=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))
    if not WARM.exists():
        code = ("from stgraph.io import read_series; from stgraph.io import write_series; "
                "from stgraph.io.series import Series; "
                f"s = read_series({str(DATA)!r}); "
                "s = Series(s.values[:576].copy(), s.timestamps[:576], s.sensor_ids, s.channels, s.null_value); "
                f"write_series(s, {str(WARM)!r}, layout='pandas')")
        subprocess.run([args.stgraph_python, "-c", code], check=True, cwd=str(ROOT),
                       env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"))


def versions(python: str, mods: list[str]) -> dict:
    code = ("import json, importlib.metadata as m; print(json.dumps({d: m.version(d) for d in "
            f"{mods!r}}}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-300:]}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        fn = {"import": lambda: child_import(args.side), "data": lambda: child_data(args.side, args),
              "train": lambda: child_train(args.side, args)}[args.child]
        print(json.dumps(fn()))
        return
    from tqdm import tqdm

    ensure_inputs(args)
    pairs = list(range(len(PAIRS))) if args.pairs is None else [int(i) for i in args.pairs.split(",")]
    py = {"stgraph": args.stgraph_python, "peer": args.peers_python}
    tasks = [("import", None), ("data", None)] + [("train", i) for i in pairs]
    res: dict = {}
    load_start, t_start = os.getloadavg(), time.time()
    bar = tqdm(total=args.repeats * len(tasks) * 2, desc="bench-peers", file=sys.stdout)
    for r in range(args.repeats):
        for kind, pair in tasks:
            sides = ("stgraph", "peer") if r % 2 == 0 else ("peer", "stgraph")
            for side in sides:
                out = run_child(py[side], kind, side, args, pair)
                res.setdefault((kind, pair), {}).setdefault(side, []).append(out)
                bar.update(1)
                write_raw(res, Path(args.out) / "peers.partial.json")  # nothing lost if the run stops
    bar.close()
    meta = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.processor() or 'cpu'}", "python": platform.python_version(),
            "stgraph_env": versions(py["stgraph"], ["torch", "torch-geometric", "numpy"]),
            "peers_env": versions(py["peer"], ["torch", "torch-geometric", "torch-spatiotemporal",
                                               "torch-geometric-temporal", "numpy", "pandas"]),
            "command": "python benchmarks/peers/bench_peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "load_start": load_start, "load_end": os.getloadavg(), "minutes": (time.time() - t_start) / 60,
            "repeats": args.repeats, "train_steps": args.train_steps, "warmup": args.warmup}
    write_results(res, meta, pairs, Path(args.out))


def write_raw(res: dict, path: Path, meta: dict | None = None) -> None:
    """Every child's output so far, as JSON (``kind:pair -> side -> [runs]``)."""
    sys.path.insert(0, str(ROOT))
    from stgraph.files import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"meta": meta, "results": {f"{k[0]}:{k[1]}": v for k, v in res.items()}},
                                  indent=1, default=str))


def _med(runs: list, key: str):
    vals = [r[key] for r in runs if "error" not in r and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def _fmt(v, spec: str) -> str:
    return "failed" if v is None else format(v, spec)


def _ratio(a, b) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def write_results(res: dict, meta: dict, pairs: list[int], out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from stgraph.files import atomic_write
    L = []
    imp, dat = res[("import", None)], res[("data", None)]
    si, pi = _med(imp["stgraph"], "import_s"), _med(imp["peer"], "import_s")
    sf, pf = _med(imp["stgraph"], "import_full_s"), _med(imp["peer"], "import_full_s")
    sc, pc = _med(imp["stgraph"], "import_full_cpu_s"), _med(imp["peer"], "import_full_cpu_s")
    L += ["## stgraph vs tsl / PyTorch Geometric Temporal (`make bench-peers`)", "",
          f"Command: `{meta['command']}`; {meta['repeats']} interleaved repeats, medians; "
          f"{meta['minutes']:.1f} min. Machine: {meta['machine']}, Python {meta['python']}.",
          f"stgraph env: {meta['stgraph_env']}; peers env (`.venv-peers`): {meta['peers_env']}.",
          f"`os.getloadavg()` at start {tuple(round(x, 2) for x in meta['load_start'])}, at end "
          f"{tuple(round(x, 2) for x in meta['load_end'])} on {os.cpu_count()} cores"
          + (": other work shared the cores, so wall-clock speeds are disturbed; windows per CPU-second and "
             "memory are the robust columns." if max(meta['load_start'][0], meta['load_end'][0]) > (os.cpu_count() or 1)
             else ": one benchmark child at a time on 1 thread; windows per CPU-second and memory are the robust "
                  "columns."),
          "Peers ran with stand-ins for torch_sparse / torch_scatter (`benchmarks/peers/shims/`, routed to "
          "`torch_geometric.utils.scatter` and native torch; their SparseTensor paths are not used) and "
          "`PYTORCH_JIT=0`.", "",
          "| figure | stgraph | peer | stgraph / peer | goal |", "|---|---|---|---|---|",
          f"| `import stgraph` / `import tsl` (s) | {_fmt(si, '.2f')} | {_fmt(pi, '.2f')} | {_ratio(si, pi)} | <= 0.5 |",
          f"| import data + models (+ training) modules (s), tsl | {_fmt(sf, '.2f')} | {_fmt(pf, '.2f')} | "
          f"{_ratio(sf, pf)} | <= 0.5 |",
          f"| the same, CPU seconds | {_fmt(sc, '.2f')} | {_fmt(pc, '.2f')} | {_ratio(sc, pc)} | <= 0.5 |",
          f"| data path: HDF5 -> first batch (s), tsl | {_fmt(_med(dat['stgraph'], 'prep_s'), '.2f')} | "
          f"{_fmt(_med(dat['peer'], 'prep_s'), '.2f')} | {_ratio(_med(dat['stgraph'], 'prep_s'), _med(dat['peer'], 'prep_s'))} | |",
          f"| data path: memory added (MB; raw array {_med(dat['stgraph'], 'raw_mb') or 0:.1f} MB) | "
          f"{_fmt(_med(dat['stgraph'], 'added_mb'), '.0f')} | {_fmt(_med(dat['peer'], 'added_mb'), '.0f')} | "
          f"{_ratio(_med(dat['stgraph'], 'added_mb'), _med(dat['peer'], 'added_mb'))} | stgraph <= 1.3x raw "
          f"({_ratio(_med(dat['stgraph'], 'added_mb'), _med(dat['stgraph'], 'raw_mb'))}x) |",
          f"| loader batches/s (batch 64, shuffled) | {_fmt(_med(dat['stgraph'], 'batches_per_s'), '.0f')} | "
          f"{_fmt(_med(dat['peer'], 'batches_per_s'), '.0f')} | "
          f"{_ratio(_med(dat['stgraph'], 'batches_per_s'), _med(dat['peer'], 'batches_per_s'))} | >= 1.5 |", ""]
    pgt = _med(imp["peer"], "pgt_extra_s")
    if pgt is not None:
        L += [f"PyG-Temporal's import after tsl's: {pgt:.2f} s more.", ""]
    L += ["Training: batch 32, 1 thread, fp32, forward + MAE + backward + Adam on random z-scored windows "
          f"({meta['warmup']} warm-up steps, {meta['train_steps']} timed); peak RSS of the process (stgraph with "
          "its trainer's malloc tuning). Inference: eval, `torch.inference_mode`, one batch of 32 and one "
          "window (latest hour, 207 sensors).", "",
          "| architecture | params stgraph / peer | windows/s stgraph / peer (ratio) | windows per CPU-s (ratio) | "
          "peak MB stgraph / peer (ratio) | 1 batch ms (ratio) | 1 window ms (ratio) |",
          "|---|---|---|---|---|---|---|"]
    notes = []
    for i in pairs:
        name, _, pkg, (pname, _), note = PAIRS[i]
        s, p = res[("train", i)]["stgraph"], res[("train", i)]["peer"]
        g = lambda runs, k: _med(runs, k)  # noqa: E731
        cell = lambda k, spec: (f"{_fmt(g(s, k), spec)} / {_fmt(g(p, k), spec)} "  # noqa: E731
                                f"({_ratio(g(s, k), g(p, k))})")
        L.append(f"| {name} ({'tsl' if pkg == 'tsl' else 'PyG-T'} {pname}) | {_fmt(g(s, 'params'), ',.0f')} / "
                 f"{_fmt(g(p, 'params'), ',.0f')} | {cell('train_wps', '.1f')} | {cell('train_wps_cpu', '.1f')} | "
                 f"{cell('peak_mb', '.0f')} | {cell('infer_batch_ms', '.1f')} | {cell('infer_window_ms', '.1f')} |")
        if note:
            notes.append(f"- {name}: {note}.")
    L += ["", *notes, ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "peers.md", "\n".join(L) + "\n")
    write_raw(res, out / "peers.json", meta)
    (out / "peers.partial.json").unlink(missing_ok=True)
    print("\n".join(L))


if __name__ == "__main__":
    main()
