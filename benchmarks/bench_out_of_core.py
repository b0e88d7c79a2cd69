"""Peak memory and windows/s of a series read lazily from its HDF5 file vs loaded into memory.

Writes (once, in row blocks, never whole in memory) a synthetic LargeST-sized series in stgraph's
plain HDF5 layout: ``--sensors`` (8,600) x ``--days`` (365) of 5-minute float32 readings (a daily
profile per sensor plus noise, ~3.6 GB for the defaults), chunked ``--chunk-rows`` steps along time.
Then, each in a fresh child process so the peak is clean, for ``lazy`` and ``loaded``:

* ``prepare``: ``read_series`` + ``ForecastData.from_series`` (12 in, 12 out, split 0.7/0.1/0.2):
  the value checks, fingerprint, dead-sensor scan and scaler fit (streaming passes when lazy);
* ``windows/s``: ``--batches`` shuffled training batches of ``--batch-size`` windows gathered
  (``x [B, 12, N, 1]`` scaled, ``y [B, 12, N, 1]``), the data path alone, no model;
* ``peak RSS``: the child's ``VmHWM``; ``added``: the peak minus the resident size after imports
  (what the data costs).

Usage: ``python benchmarks/bench_out_of_core.py [--sensors 8600 --days 365 --cache-mb 256]
[--file big.h5] [--out benchmarks/results/out_of_core.md]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
import numpy as np, torch
from stgraph.data import ForecastData
from stgraph.io import read_series

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
path, mode, cache_mb, batches, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
torch.zeros(1) + 1
base = status("VmRSS")
t0 = time.perf_counter()
series = read_series(path, lazy=mode == "lazy", cache_bytes=cache_mb << 20)
data = ForecastData.from_series(series)
prepare = time.perf_counter() - t0
g = torch.Generator().manual_seed(0)
n, t0 = 0, time.perf_counter()
for i, batch in enumerate(data.loader("train", batch_size, shuffle=True, generator=g)):
    n += batch.x.shape[0]
    if i + 1 == batches:
        break
seconds = time.perf_counter() - t0
stats = series.values.stats() if mode == "lazy" else {}
print(json.dumps({"prepare_s": prepare, "windows": n, "windows_per_s": n / seconds, "peak": status("VmHWM"),
                  "added": status("VmHWM") - base, "base": base, "array": int(np.prod(series.shape)) * 4,
                  "shape": list(series.shape), "cache": stats}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sensors", type=int, default=8600)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--chunk-rows", type=int, default=12, help="HDF5 chunk along time of the generated file")
    p.add_argument("--cache-mb", type=int, default=256, help="data.cache_mb of the lazy read")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--file", default=None, help="the series file (generated when absent); default beside --out")
    p.add_argument("--modes", default="lazy,loaded")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "out_of_core.md"))
    return p.parse_args(argv)


def generate(path: Path, sensors: int, days: int, chunk_rows: int) -> None:
    """A daily speed profile per sensor (free flow 55-70 mph, rush-hour dips) plus noise, 5% nulls."""
    import numpy as np

    from stgraph.io import write_series_blocks

    T = days * 288
    rng = np.random.default_rng(0)
    free = rng.uniform(55, 70, sensors).astype(np.float32)
    dip = rng.uniform(5, 30, sensors).astype(np.float32)
    ts = np.datetime64("2019-01-01T00:00") + np.arange(T) * np.timedelta64(5, "m")

    def blocks(rows=288):
        for a in range(0, T, rows):
            t = (np.arange(a, min(T, a + rows)) % 288) / 288.0
            rush = np.exp(-((t - 0.33) / 0.04) ** 2) + np.exp(-((t - 0.73) / 0.05) ** 2)
            v = free - dip * rush[:, None].astype(np.float32)
            v = v + rng.normal(0, 2, v.shape).astype(np.float32)
            v[rng.random(v.shape) < 0.05] = 0.0
            yield v[:, :, None]
    write_series_blocks(path, ts, [str(400000 + i) for i in range(sensors)], ["speed"], blocks(),
                        chunk_rows=chunk_rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    path = Path(args.file) if args.file else out.parent / f"out_of_core_{args.sensors}x{args.days}d.h5"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.sensors, args.days, args.chunk_rows)
        print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t0:.0f} s")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")
    rows = {}
    for mode in args.modes.split(","):
        proc = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(args.cache_mb), str(args.batches),
                               str(args.batch_size)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        rows[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(mode, rows[mode])
    first = next(iter(rows.values()))
    T, N, C = first["shape"]
    gb = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    lines = [
        "# Out-of-core: a series read lazily from HDF5 vs loaded",
        "",
        f"Synthetic {N:,} sensors x {T:,} steps x {C} channel float32 ({gb(first['array'])}), stgraph's plain HDF5 "
        f"layout chunked {args.chunk_rows} steps along time; 12 in / 12 out windows, split 0.7/0.1/0.2; lazy "
        f"cache {args.cache_mb} MiB; {args.batches} shuffled training batches of {args.batch_size} windows "
        f"(the data path alone, no model); one process, 1 thread; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores.",
        "",
        "| mode | prepare (s) | windows/s | peak RSS | added by the data |",
        "|---|---|---|---|---|",
    ]
    for mode, r in rows.items():
        lines.append(f"| {mode} | {r['prepare_s']:.1f} | {r['windows_per_s']:.0f} | {gb(r['peak'])} | {gb(r['added'])} |")
    lines += ["", "`prepare` = `read_series` + `ForecastData.from_series` (value checks, fingerprint, dead-sensor scan, "
              "scaler fit: streaming passes over the file when lazy). `added` = peak RSS minus the resident size "
              "after imports.", ""]
    if rows.get("lazy", {}).get("cache"):
        c = rows["lazy"]["cache"]
        lines += [f"Lazy chunk cache: {c['chunk_reads']} chunk reads, {c['cache_hits']} hits, {c['chunk_rows']} rows "
                  f"a chunk.", ""]
    lines += ["Command:", "", "```bash",
              f"OMP_NUM_THREADS=1 python benchmarks/bench_out_of_core.py --sensors {args.sensors} --days {args.days} "
              f"--chunk-rows {args.chunk_rows} --cache-mb {args.cache_mb} --batches {args.batches} "
              f"--batch-size {args.batch_size}", "```", ""]
    from stgraph.files import atomic_write
    atomic_write(out, "\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
