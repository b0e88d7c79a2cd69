"""``make demo``: the whole job on the embedded synthetic road network, through the Python API.

1. generate a synthetic road network in METR-LA's HDF5 layout (+ adj pickle, distances, locations);
2. describe the data and the graph;
3. train the flagship ``stgt`` model for a few minutes on CPU, and the last-value baseline beside it
   (:func:`stgraph.train`);
4. evaluate both at 15, 30 and 60 minutes (:func:`stgraph.open_run`, :func:`stgraph.evaluate`), and stgt's
   error by traffic regime: free flow / congested / transition (``stgraph.evaluate(run, by="regime")``,
   :mod:`stgraph.regimes`);
5. forecast the next hour and plot the forecast against the truth, the error map and the attention maps.

Run ``python -m stgraph.demo --out demo``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _step(title: str, call: str) -> None:
    print(f"\n== {title}\n>>> {call}", flush=True)


def _show(mapping: dict) -> None:
    width = max((len(str(k)) for k in mapping), default=0)
    for k, v in mapping.items():
        print(f"{str(k).ljust(width)}  {v}")


def _data(out: Path, args) -> dict:
    from .graph import graph_info, read_graph
    from .io import read_series
    from .synth import write_synthetic

    data_dir = out / "data"
    _step("generate the synthetic road network",
          f"write_synthetic('{data_dir}', num_sensors={args.sensors}, days={args.days}, seed={args.seed})")
    files = write_synthetic(data_dir, num_sensors=args.sensors, days=args.days, seed=args.seed)
    _show({k: str(v) for k, v in files.items()})
    _step("describe the series", f"read_series('{files['data']}').summary()")
    _show(read_series(files["data"]).summary())
    _step("describe the graph", f"graph_info(read_graph('{files['adj']}'))")
    _show(graph_info(read_graph(files["adj"])))
    return files


def _train(out: Path, files: dict, args) -> tuple[Path, Path]:
    from . import api

    run, base = out / "runs" / "stgt", out / "runs" / "last"
    common = dict(data=files["data"], graph=files["adj"], seed=args.seed, overwrite=True)
    _step("train the last-value baseline", f"stgraph.train(data=..., graph=..., model='last', out='{base}')")
    api.train(model="last", out=base, progress=False, **common)
    _step("train the flagship stgt model (probabilistic)",
          f"stgraph.train(data=..., graph=..., model='stgt', probabilistic=True, epochs={args.epochs}, "
          f"out='{run}', overrides={{'model.params.hidden': 32, 'train.patience': 0}})")
    api.train(model="stgt", probabilistic=True, epochs=args.epochs, out=run,
              overrides={"model.params.hidden": 32, "train.patience": 0}, **common)
    return run, base


def _evaluate(run_dir: Path, title: str, by: str | None = None) -> dict:
    from . import api

    extra = f", by='{by}'" if by else ""
    _step(title, f"stgraph.evaluate(stgraph.open_run('{run_dir}'), 'test'{extra})")
    run = api.open_run(run_dir)
    result = api.evaluate(run, "test", by=by)
    for h, vals in result["horizons"].items():
        print(f"step {h:>3}: MAE {vals['mae']:.3f}  RMSE {vals['rmse']:.3f}")
    if by:
        from .regimes import format_groups

        _step(f"stgt's error by {by} (free flow / congested / transition)", "result['by']")
        print(format_groups(result["by"], run.data))
    return result


def _summary(last: dict, ours: dict) -> None:
    print("\n== summary (test split, masked MAE)")
    print(f"{'horizon':>8} {'last value':>11} {'stgt':>8}")
    for h in ours["horizons"]:
        print(f"{h:>8} {last['horizons'][h]['mae']:>11.3f} {ours['horizons'][h]['mae']:>8.3f}")
    print(f"{'average':>8} {last['average']['mae']:>11.3f} {ours['average']['mae']:>8.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo")
    p.add_argument("--sensors", type=int, default=50)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-only", action="store_true", help="stop after generating and describing the data")
    args = p.parse_args(argv)
    from .logs import show_messages

    with show_messages():
        return _demo(Path(args.out), args)


def _demo(out: Path, args) -> int:
    from . import api
    from .forecast import forecast_at, write_forecast
    from .plot import plot_run
    from .training.layout import RunFiles

    t0 = time.perf_counter()
    files = _data(out, args)
    if args.data_only:
        print(f"\ndata written to {out / 'data'} in {time.perf_counter() - t0:.1f} s")
        return 0
    run_dir, base = _train(out, files, args)
    last = _evaluate(base, "evaluate the last-value baseline")
    ours = _evaluate(run_dir, "evaluate stgt", by="regime")
    # outputs go beside the run directory: stgraph keeps a run directory to its own files
    forecast, plots = out / "forecast.csv", out / "plots"
    _step("forecast the next hour for every sensor", f"write_forecast(forecast_at(run), '{forecast}')")
    run = api.open_run(run_dir)
    write_forecast(forecast_at(run), forecast)
    _step("plot", f"plot_run(run, '{plots / 'forecast.png'}', locations='{files['locations']}')")
    for path in plot_run(run, plots / "forecast.png", locations=str(files["locations"])):
        print(f"wrote {path}")
    _summary(last, ours)
    written = ", ".join(p.name for p in RunFiles(run_dir).written() if p.parent == run_dir)
    print(f"\nrun directory: {run_dir}  ({written}, checkpoints/)")
    print(f"forecast:      {forecast}")
    print(f"pictures:      {plots}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
