"""Memory and speed of stgraph's data path against materialised windows.

Makes METR-LA-sized synthetic data (34,272 steps x 207 sensors x 1 channel,
float32, uniform 0..70 mph with about 5% zeros as nulls) and measures, each in
a fresh child process so the peak is clean:

* ``raw``     the float32 array alone;
* ``stgraph`` the array, its ``Series``, ``ForecastData.from_series`` and one
              shuffled epoch over the train loader (batch 64);
* ``dcrnn``   every window materialised the way DCRNN's ``generate_training_data.py``
              does it (a float64 ``[T, N, 2]`` array with a time-of-day channel,
              a Python list of per-window copies, then ``np.stack`` into
              ``x [S, 12, N, 2]`` and ``y [S, 12, N, 2]``); our own equivalent code.

Peak memory is the child's ``ru_maxrss``. Every child first imports the same
modules and runs the stgraph path once on a tiny series (so library code pages
are already resident); ``added`` is the peak minus the peak after that
preamble, i.e. what the full-size data work itself costs, and its ``x raw``
divides it by the raw array's ``added``. ``peak RSS`` and its ``x raw`` are the
whole process (interpreter and torch included). Loader speed is batches per second over the train split, the median
of ``--epochs`` shuffled epochs.

Usage: ``python benchmarks/bench_data.py [--steps 34272 --nodes 207 --repeats 3 --epochs 5]``
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODES = ("raw", "stgraph", "dcrnn")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=34_272, help="time steps T (METR-LA: 34272)")
    p.add_argument("--nodes", type=int, default=207, help="sensors N (METR-LA: 207)")
    p.add_argument("--null-frac", type=float, default=0.05, help="fraction of readings set to 0 (null)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=5, help="shuffled epochs timed for the loader speed")
    p.add_argument("--repeats", type=int, default=3, help="child processes per mode (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a shared machine)")
    p.add_argument("--skip-dcrnn", action="store_true", help="skip the materialised-windows child (~5.5 GB)")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_values(steps: int, nodes: int, null_frac: float, seed: int = 0):
    """``[T, N, 1]`` float32 speeds, filled in row blocks so no full-size temporary exists."""
    import numpy as np
    rng = np.random.default_rng(seed)
    v = np.empty((steps, nodes, 1), dtype=np.float32)
    for a in range(0, steps, 2048):
        blk = v[a:a + 2048]
        rng.random(out=blk, dtype=np.float32)
        blk *= 70.0
        blk[rng.random(blk.shape, dtype=np.float32) < null_frac] = 0.0
    return v


def child(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from stgraph.data import ForecastData
    from stgraph.io.series import Series

    torch.set_num_threads(args.threads)
    warm_up(args)
    base = rss_mb()
    values = make_values(args.steps, args.nodes, args.null_frac)
    out: dict = {"mode": args.child, "raw_mb": values.nbytes / 2**20}
    if args.child == "stgraph":
        ts = np.datetime64("2012-03-01T00:00", "ns") + np.arange(args.steps) * np.timedelta64(5, "m")
        series = Series(values, ts, [str(i) for i in range(args.nodes)], ["speed"], 0.0)
        t0 = time.perf_counter()
        data = ForecastData.from_series(series, input_len=12, horizon=12)
        out["build_s"] = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(0)
        loader = data.loader("train", args.batch_size, shuffle=True, generator=gen)
        speeds = []
        for _ in range(max(1, args.epochs)):
            t0 = time.perf_counter()
            n = sum(1 for _ in loader)
            speeds.append(n / (time.perf_counter() - t0))
        out.update(batches_per_s=statistics.median(speeds), batches=len(loader), windows=data.split.sizes())
    elif args.child == "dcrnn":
        out["windows"] = materialise_like_dcrnn(values, input_len=12, horizon=12)
    out.update(base_mb=base, peak_mb=rss_mb())
    return out


def warm_up(args: argparse.Namespace) -> None:
    """Run the stgraph path once on a tiny series so library code pages are resident before ``base``."""
    import numpy as np
    import torch

    from stgraph.data import ForecastData
    from stgraph.io.series import Series

    steps = 600
    ts = np.datetime64("2012-03-01T00:00", "ns") + np.arange(steps) * np.timedelta64(5, "m")
    series = Series(make_values(steps, args.nodes, args.null_frac, seed=1), ts,
                    [str(i) for i in range(args.nodes)], ["speed"], 0.0)
    data = ForecastData.from_series(series)
    for _ in data.loader("train", args.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)):
        pass


def materialise_like_dcrnn(values, input_len: int, horizon: int) -> int:
    """All windows as arrays, the DCRNN way: float64 data with a time-of-day channel, list, stack."""
    import numpy as np
    steps, nodes, _ = values.shape
    day_frac = (np.arange(steps) % 288) / 288.0                      # float64 time of day
    tod = np.broadcast_to(day_frac[:, None, None], (steps, nodes, 1))
    data = np.concatenate([values, tod], axis=-1)                    # float64 [T, N, 2]
    past = np.arange(-input_len + 1, 1)
    future = np.arange(1, horizon + 1)
    xs, ys = [], []
    for t in range(input_len - 1, steps - horizon):
        xs.append(data[t + past])
        ys.append(data[t + future])
    x, y = np.stack(xs), np.stack(ys)                                # [S, 12, N, 2] each
    assert x.shape == y.shape
    return int(x.shape[0])


def run_child(mode: str, argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, *argv, "--child", mode]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child '{mode}' failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    passed = sys.argv[1:] if argv is None else list(argv)
    modes = [m for m in MODES if not (m == "dcrnn" and args.skip_dcrnn)]
    runs = {m: [run_child(m, passed) for _ in range(args.repeats)] for m in modes}

    def med(mode, key):
        return statistics.median(r[key] for r in runs[mode])

    raw_peak = med("raw", "peak_mb")
    raw_added = statistics.median(r["peak_mb"] - r["base_mb"] for r in runs["raw"])
    print(f"data: {args.steps} x {args.nodes} x 1 float32 = {runs['raw'][0]['raw_mb']:.1f} MB, "
          f"{args.null_frac:.0%} nulls; medians of {args.repeats} child processes; torch threads {args.threads}")
    print(f"{'mode':<10}{'peak RSS MB':>13}{'x raw':>8}{'added MB':>11}{'x raw':>8}")
    for m in modes:
        added = statistics.median(r["peak_mb"] - r["base_mb"] for r in runs[m])
        peak = med(m, "peak_mb")
        print(f"{m:<10}{peak:>13.1f}{peak / raw_peak:>8.2f}{added:>11.1f}{added / raw_added:>8.2f}")
    st = runs["stgraph"]
    print(f"stgraph windows per split: {st[0]['windows']}; ForecastData build "
          f"{statistics.median(r['build_s'] for r in st):.2f} s")
    print(f"stgraph train loader: batch {args.batch_size}, shuffle, {st[0]['batches']} batches/epoch: "
          f"{statistics.median(r['batches_per_s'] for r in st):.0f} batches/s "
          f"(median of {args.epochs} epochs, median over {args.repeats} processes)")
    if "dcrnn" in runs:
        print(f"dcrnn materialised windows: {runs['dcrnn'][0]['windows']} (x and y float64 [S, 12, N, 2])")


if __name__ == "__main__":
    main()
