"""Training throughput, time per epoch and peak memory of ``stgt`` with each spatial-attention backend.

Trains ``stgt`` on the real METR-LA week (``../shared/data/metr-la-week``, 207 sensors, 12 in /
12 out, split 0.7/0.1/0.2) for ``--epochs`` epochs per backend, each backend in its own process
(so its peak memory is its own), with the same seed, batch size and width, side by side in one
run. Reports per backend the median over epochs of windows per second and seconds per epoch
(training only; validation excluded), the peak resident memory of the process (and the peak CUDA
memory on a GPU), and the sparse/dense ratios.

Usage: ``python benchmarks/bench_stgt_backends.py [--epochs 2 --hidden 32 --batch-size 32]``
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
    p.add_argument("--epochs", type=int, default=2)
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
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sparse", "dense"):
            run = Path(tmp) / backend
            cmd = [sys.executable, "-m", "stgraph.cli.main", "train", "--data", str(week / "metr-la-week.h5"),
                   "--graph", str(week / "adj_mx.pkl"), "--model", "stgt", "--out", str(run),
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", "0",
                   "--device", args.device, "--no-progress",
                   "--set", f"model.params.hidden={args.hidden}", "--set", f"model.params.spatial_backend={backend}",
                   "--set", "train.patience=0"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            rows = list(csv.DictReader((run / "metrics.csv").open()))
            summary = json.loads((run / "train_summary.json").read_text())
            results[backend] = {
                "windows_per_s": statistics.median(float(r["windows_per_s"]) for r in rows),
                "epoch_seconds": statistics.median(float(r["epoch_seconds"]) for r in rows),
                "peak_rss_mb": summary["peak_rss_mb"], "peak_cuda_mb": summary.get("peak_cuda_mb"),
                "val_mae_last_epoch": float(rows[-1]["val_mae"]), "device": summary["device"],
                "parameters": summary["parameters"]}
    print(f"stgt on metr-la-week (207 sensors, 1395 training windows), hidden {args.hidden}, "
          f"batch {args.batch_size}, {args.epochs} epoch(s) per backend, device {results['sparse']['device']}")
    print(f"{'backend':>8} {'windows/s':>10} {'s/epoch':>9} {'peak RSS MB':>12} {'peak CUDA MB':>13} {'val MAE':>8}")
    for b, r in results.items():
        cuda = f"{r['peak_cuda_mb']:.0f}" if r["peak_cuda_mb"] else "-"
        print(f"{b:>8} {r['windows_per_s']:>10.1f} {r['epoch_seconds']:>9.1f} {r['peak_rss_mb']:>12.0f} "
              f"{cuda:>13} {r['val_mae_last_epoch']:>8.3f}")
    s, d = results["sparse"], results["dense"]
    print(f"sparse/dense: throughput {s['windows_per_s'] / d['windows_per_s']:.2f}x, "
          f"peak RSS {s['peak_rss_mb'] / d['peak_rss_mb']:.2f}x")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
