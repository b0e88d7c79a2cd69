"""Training throughput, time per epoch and peak memory of ``stgt`` with each spatial-attention backend.

Trains ``stgt`` on the real METR-LA week (``../shared/data/metr-la-week``, 207 sensors, 12 in /
12 out, split 0.7/0.1/0.2) with the same seed, batch size and width for each backend, side by
side in one run. Each training run is its own process (so its peak memory is its own); the
backends take turns over ``--rounds`` rounds in the order sparse, dense, dense, sparse, ... so
that a machine getting slower or faster during the run weighs on both alike. Reports per backend
the median over all its epochs of windows per second and seconds per epoch (training only;
validation excluded), the largest peak resident memory of its runs (and the peak CUDA memory on
a GPU), and the sparse/dense ratios.

Usage: ``python benchmarks/bench_stgt_backends.py [--rounds 2 --epochs 1 --hidden 32 --batch-size 32]``
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2, help="training runs per backend, taken in turns")
    p.add_argument("--epochs", type=int, default=1, help="epochs of each training run")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args()

    from stgraph.shared_data import shared_file

    week = shared_file("metr-la-week")
    if week is None:
        print("error: ../shared/data/metr-la-week not found beside the project", file=sys.stderr)
        return 2
    order = [b for r in range(args.rounds) for b in (("sparse", "dense") if r % 2 == 0 else ("dense", "sparse"))]
    rows = {"sparse": [], "dense": []}
    summaries = {"sparse": [], "dense": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k, backend in enumerate(order):
            run = Path(tmp) / f"{k}-{backend}"
            cmd = [sys.executable, "-m", "stgraph.cli.main", "train", "--data", str(week / "metr-la-week.h5"),
                   "--graph", str(week / "adj_mx.pkl"), "--model", "stgt", "--out", str(run),
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", "0",
                   "--device", args.device, "--no-progress",
                   "--set", f"model.params.hidden={args.hidden}", "--set", f"model.params.spatial_backend={backend}",
                   "--set", "train.patience=0"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            rows[backend] += list(csv.DictReader((run / "metrics.csv").open()))
            summaries[backend].append(json.loads((run / "train_summary.json").read_text()))
    results = {}
    for backend in ("sparse", "dense"):
        runs, epochs = summaries[backend], rows[backend]
        cuda = [r["peak_cuda_mb"] for r in runs if r.get("peak_cuda_mb") is not None]
        results[backend] = {
            "windows_per_s": statistics.median(float(r["windows_per_s"]) for r in epochs),
            "epoch_seconds": statistics.median(float(r["epoch_seconds"]) for r in epochs),
            "epoch_seconds_each": [float(r["epoch_seconds"]) for r in epochs],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "peak_cuda_mb": max(cuda) if cuda else None,
            "val_mae_last_epoch": float(epochs[-1]["val_mae"]), "device": runs[0]["device"],
            "parameters": runs[0]["parameters"], "train_windows": runs[0]["train_windows"]}
    print(f"stgt on metr-la-week (207 sensors, {results['sparse']['train_windows']} training windows), "
          f"hidden {args.hidden}, batch {args.batch_size}, {args.rounds} run(s) x {args.epochs} epoch(s) per "
          f"backend in the order {', '.join(order)}, device {results['sparse']['device']}")
    print(f"{'backend':>8} {'windows/s':>10} {'s/epoch':>9} {'peak RSS MB':>12} {'peak CUDA MB':>13} {'val MAE':>8}  each epoch s")
    for b, r in results.items():
        cuda = f"{r['peak_cuda_mb']:.0f}" if r["peak_cuda_mb"] else "-"
        print(f"{b:>8} {r['windows_per_s']:>10.1f} {r['epoch_seconds']:>9.1f} {r['peak_rss_mb']:>12.0f} "
              f"{cuda:>13} {r['val_mae_last_epoch']:>8.3f}  {' '.join(f'{x:.1f}' for x in r['epoch_seconds_each'])}")
    s, d = results["sparse"], results["dense"]
    print(f"sparse/dense: throughput {s['windows_per_s'] / d['windows_per_s']:.2f}x, "
          f"peak RSS {s['peak_rss_mb'] / d['peak_rss_mb']:.2f}x")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
