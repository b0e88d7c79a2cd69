"""``make demo``: the whole job on the embedded synthetic road network.

1. generate a synthetic road network in METR-LA's HDF5 layout (+ adj pickle, distances, locations);
2. describe the data and the graph;
3. train the flagship ``stgt`` model for a few minutes on CPU, and the last-value baseline beside it;
4. evaluate both at 15, 30 and 60 minutes;
5. plot the forecast against the truth, the error map and the attention maps.

Run ``python -m stgraph.demo --out demo``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo")
    p.add_argument("--sensors", type=int, default=50)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-only", action="store_true", help="stop after generating and describing the data")
    args = p.parse_args(argv)
    out = Path(args.out)
    t0 = time.perf_counter()

    from .cli.main import main as cli

    def step(title: str, *cmd: str) -> None:
        print(f"\n== {title}\n$ stgraph {' '.join(cmd)}", flush=True)
        rc = cli(list(cmd))
        if rc:
            raise SystemExit(rc)

    data_dir = out / "data"
    step("generate the synthetic road network", "data", "synth", "--out", str(data_dir),
         "--sensors", str(args.sensors), "--days", str(args.days), "--seed", str(args.seed))
    h5 = data_dir / "synthetic.h5"
    adj = data_dir / "adj_mx.pkl"
    step("describe the series", "data", "info", str(h5))
    step("describe the graph", "graph", "info", str(adj))
    if args.data_only:
        print(f"\ndata written to {data_dir} in {time.perf_counter() - t0:.1f} s")
        return 0

    run = out / "runs" / "stgt"
    base = out / "runs" / "last"
    common = ["--data", str(h5), "--graph", str(adj), "--seed", str(args.seed), "--overwrite"]
    step("train the last-value baseline", "train", *common, "--model", "last", "--out", str(base), "--no-progress")
    step("train the flagship stgt model (probabilistic)", "train", *common, "--model", "stgt", "--probabilistic",
         "--epochs", str(args.epochs), "--out", str(run), "--set", "model.params.hidden=32",
         "--set", "train.patience=0")
    step("evaluate the last-value baseline", "evaluate", str(base))
    step("evaluate stgt", "evaluate", str(run))
    # outputs go beside the run directory: stgraph keeps a run directory to its own files
    forecast = out / "forecast.csv"
    plots = out / "plots"
    step("forecast the next hour for every sensor", "predict", str(run), "--out", str(forecast))
    step("plot", "plot", str(run), "--locations", str(data_dir / "graph_sensor_locations.csv"),
         "--out", str(plots / "forecast.png"))

    from .training.layout import RunFiles

    ours = json.loads(RunFiles(run).evaluation("test").read_text())
    last = json.loads(RunFiles(base).evaluation("test").read_text())
    print("\n== summary (test split, masked MAE)")
    print(f"{'horizon':>8} {'last value':>11} {'stgt':>8}")
    for h in ours["horizons"]:
        print(f"{h:>8} {last['horizons'][h]['mae']:>11.3f} {ours['horizons'][h]['mae']:>8.3f}")
    print(f"{'average':>8} {last['average']['mae']:>11.3f} {ours['average']['mae']:>8.3f}")
    print(f"\nrun directory: {run}  ({', '.join(p.name for p in RunFiles(run).written() if p.parent == run)}, checkpoints/)")
    print(f"forecast:      {forecast}")
    print(f"pictures:      {plots}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
