"""``stgraph`` command line.

Every command's failure prints one line on stderr (``error: ...``) and exits
non-zero; ``--debug`` shows the traceback. ``--json`` prints exactly one JSON
object on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import StgraphError, one_line


NULL_HELP = ("which readings are missing: nan (or none) = empty cells / NaN only, zeros are readings; 0 = zeros "
             "are missing too (the METR-LA / PEMS-BAY convention); or another number. Default: the file's own "
             "convention (0 for the METR-LA / PEMS-BAY HDF5 layout and named datasets, nan for CSV, plain HDF5 "
             "and .npz). The same as --set data.null_value=VALUE")


def _argparse_type(parse, text: str):
    """``parse(text)`` with a :class:`~stgraph.errors.ConfigError` as an argparse error (one line, exit status 2)."""
    from ..errors import ConfigError

    try:
        return parse(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def null_value_arg(text: str):
    """argparse type of ``--null-value``: :func:`stgraph.io.series.parse_null_value`, refused values are
    argparse errors (one line, exit status 2)."""
    from ..io.series import parse_null_value

    return _argparse_type(parse_null_value, text)


def budget_arg(text: str) -> float:
    """argparse type of ``--budget`` (``stgraph train``): :func:`stgraph.config.parse_budget`, minutes."""
    from ..config import parse_budget

    return _argparse_type(lambda t: parse_budget(t, None), text)


def budgets_arg(text: str) -> list[float]:
    """argparse type of ``--budget`` (``stgraph bench``): :func:`stgraph.config.parse_budgets`, minutes."""
    from ..config import parse_budgets

    return _argparse_type(lambda t: parse_budgets(t, None), text)


BUDGET_HELP = ("training budget in CPU time of the process (time.process_time: training steps and validation "
               "passes), e.g. 10m, 90s, 1.5h or 10 (minutes)")


def add_null_value(p) -> None:
    """``--null-value {nan,none,0,<number>}`` on a command that reads a series."""
    p.add_argument("--null-value", type=null_value_arg, default=None, metavar="{nan,none,0,NUMBER}", help=NULL_HELP)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="inspect, generate and download traffic series")
    s = p.add_subparsers(dest="action", required=True)
    info = s.add_parser("info", help="steps, sensors, channels, start, end, interval, missing ratio")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    add_null_value(info)
    info.add_argument("--start", default=None, help="first timestamp for files without timestamps (npz)")
    info.add_argument("--freq", default=None, help="interval for files without timestamps, e.g. 5min")
    syn = s.add_parser("synth", help="write the synthetic road network (METR-LA's HDF5 layout) or the synthetic "
                                     "counts network (hourly boardings, CSV + node-link graph)")
    syn.add_argument("--out", required=True)
    syn.add_argument("--kind", choices=["speeds", "counts"], default="speeds",
                     help="speeds: 5-minute speeds, METR-LA layout (default); counts: hourly boardings at stops "
                          "with real zeros and daily / weekly profiles, counts.csv + graph.json (distances in metres)")
    syn.add_argument("--sensors", type=int, default=207)
    syn.add_argument("--interval", choices=["hour", "day"], default="hour",
                     help="counts: hour (hourly boardings, default) or day (daily counts per region, e.g. daily new "
                          "cases: one row a day, a weekly rhythm, zeros in small regions)")
    syn.add_argument("--days", type=int, default=None, help="days to simulate (default 7 for speeds, 56 for counts)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--start", default=None, help="first day (default 2012-03-01 for speeds, Monday 2012-03-05 "
                                                   "for counts)")
    syn.add_argument("--rain", action="store_true", help="speeds: rain episodes slowing traffic network-wide, and "
                                                         "rain.csv, a covariate file (--covariates)")
    syn.add_argument("--incidents", action="store_true", help="speeds: incidents.csv, per-sensor incident flags (a "
                                                              "covariate file) for the simulated incidents")
    syn.add_argument("--json", action="store_true")
    dl = s.add_parser("download", help="download a named dataset into the cache")
    dl.add_argument("name")
    dl.add_argument("--root", default=None)
    dl.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                    help="pin the checksum you trust for a file the manifest cannot verify (repeatable)")
    s.add_parser("list", help="named datasets with a manifest")


CRS_HELP = ("coordinate system: degrees (latitude/longitude, default), projected (metres, Euclidean "
            "distances), or EPSG:<code> to convert to degrees with pyproj (pip install 'stgraph[geo]')")


def _add_graph(sub) -> None:
    p = sub.add_parser("graph", help="build and inspect sensor road graphs")
    s = p.add_subparsers(dest="action", required=True)
    b = s.add_parser("build", help="build a graph and save it (.json node-link, .graphml, .pkl adj)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--adj", help="DCRNN adj_mx.pkl")
    src.add_argument("--distances", help="CSV from,to,cost (thresholded Gaussian kernel)")
    src.add_argument("--locations", help="CSV sensor_id,latitude,longitude (k-nearest / radius)")
    src.add_argument("--edges", help="edge list CSV source,target[,weight]")
    src.add_argument("--graph", help="an existing graph file (node-link JSON, GraphML, pickle) to restrict to "
                                     "--sensors, declare --weights / --crs for, or convert")
    b.add_argument("--sensors", help="keep exactly these sensors, in this order (every builder): a series file "
                                     "(HDF5, .npz, CSV with a row per time step), or a text file of ids, comma "
                                     "separated on one line or one per line")
    b.add_argument("--weights", choices=["similarity", "distance"], default=None,
                   help="what the edge weights of --edges/--graph are: similarity (larger = closer; scaled into "
                        "[0, 1] if above 1) or distance (turned into exp(-(d/sigma)^2)). Undeclared weights above 1 "
                        "are read as distances, with a warning")
    b.add_argument("--crs", default="degrees", help="with --locations (or --graph): " + CRS_HELP)
    b.add_argument("--sigma", type=float, default=None)
    b.add_argument("--threshold", type=float, default=0.1)
    b.add_argument("--kernel", default="gaussian", choices=["gaussian", "inverse", "binary"])
    b.add_argument("--k", type=int, default=None, help="k nearest neighbours (with --locations)")
    b.add_argument("--radius-km", type=float, default=None, help="radius in km (with --locations)")
    b.add_argument("--out", required=True)
    i = s.add_parser("info", help="nodes, edges, components, degree stats")
    i.add_argument("path")
    i.add_argument("--sensors", help="sensor order, needed for a distance CSV")
    i.add_argument("--json", action="store_true")


def _add_runs(sub) -> None:
    t = sub.add_parser("train", help="train a model into a run directory")
    t.add_argument("--data", help="series file (HDF5, npz, CSV)")
    t.add_argument("--graph", help="graph file (adj pickle, distance CSV, JSON, GraphML)")
    t.add_argument("--dataset", help="named dataset instead of --data/--graph")
    t.add_argument("--covariates", action="append", default=None, metavar="FILE",
                   help="covariate file (repeatable): weather, incidents, static sensor features, events, or "
                        "graph:ATTR[,ATTR...]; only models that take them (stgt). The same as data.covariates")
    t.add_argument("--model", default=None, help="registry name or package.module:Class (default stgt)")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--config", help="YAML config file")
    t.add_argument("--epochs", type=int)
    t.add_argument("--budget", type=budget_arg, default=None, metavar="DURATION",
                   help=BUDGET_HELP + "; the run stops after the epoch that crosses it (--set train.budget_stop=step: "
                        "at that step), or at --epochs, whichever comes first. The same as train.budget_minutes")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device")
    t.add_argument("--probabilistic", action="store_true", default=None)
    t.add_argument("--distribution", choices=["normal", "lognormal"], default=None,
                   help="predictive distribution of the probabilistic head (implies --probabilistic): normal "
                        "(default), or lognormal for counts and other non-negative targets (censored at 0: "
                        "bands and quantiles never go below zero)")
    add_null_value(t)
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set model.params.hidden=32 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a different run already in --out")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--devices", type=int, default=None, metavar="K",
                   help="train data parallel in K processes on this machine: runs `torchrun --standalone "
                        "--nproc-per-node K -m stgraph train ...` (one GPU each, or K CPU processes with gloo); "
                        "train.batch_size stays the global batch")

    e = sub.add_parser("evaluate", help="MAE/RMSE/MAPE per horizon step and on average")
    e.add_argument("run_dir")
    e.add_argument("--steps", default=None, help="comma-separated horizon steps to report, e.g. 1,2,4 (default: "
                                                 "every step up to 12, or 3,6,12 for 12-step 5-minute data)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", action="store_true")
    e.add_argument("--model", default=None, help="import path of the run's user model (package.module:Class)")

    pr = sub.add_parser("predict", help="write the forecast of every sensor (CSV or HDF5)")
    pr.add_argument("run_dir")
    pr.add_argument("--data", default=None, help="series to forecast from (default: the training file)")
    pr.add_argument("--at", default=None, help="forecast from this timestamp (last input step); default the last")
    pr.add_argument("--out", required=True, help=".csv or .h5")
    pr.add_argument("--model", default=None, help="import path of the run's user model (package.module:Class)")
    from ..runtime import AMP_CHOICES
    pr.add_argument("--amp", default="off", choices=AMP_CHOICES,
                    help="precision: off = float32 (default); bf16 = bfloat16 autocast, about 2x faster on CPUs with "
                         "AVX512-BF16/AMX (see benchmarks/results/inference.md for its cost in accuracy); auto = bf16 "
                         "on CUDA only")
    pr.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's, one per core)")

    pl = sub.add_parser("plot", help="forecast vs truth, error map, attention heat maps")
    pl.add_argument("run_dir")
    pl.add_argument("--sensor", default=None, help="sensor id (default: the one with the median error)")
    pl.add_argument("--locations", default=None, help="CSV of sensor coordinates for the error map")
    pl.add_argument("--crs", default="degrees", help="of --locations: " + CRS_HELP)
    pl.add_argument("--out", required=True, help="PNG file")
    pl.add_argument("--model", default=None, help="import path of the run's user model (package.module:Class)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit status 2."""

    def error(self, message):  # noqa: D401 - argparse hook
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="stgraph", description="Spatio-temporal graph forecasting on traffic sensors")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    _add_data(sub)
    _add_graph(sub)
    _add_runs(sub)
    from .bench import add_parser as add_bench
    add_bench(sub)
    from .federated import add_parser as add_federated
    add_federated(sub)
    from .online import add_parser as add_online
    add_online(sub)
    return p


def emit(obj, as_json: bool) -> None:
    """Print ``obj`` as one JSON object or as aligned ``key: value`` lines."""
    if as_json:
        sys.stdout.write(json.dumps(obj) + "\n")
        return
    width = max((len(str(k)) for k in obj), default=0)
    for k, v in obj.items():
        print(f"{str(k).ljust(width)}  {v}")


def main(argv=None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.argv = [a for a in argv if a != "--debug"]  # `train --devices K` relaunches the command under torchrun
    import warnings
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    try:
        from ..runtime import tune_malloc
        from . import commands
        tune_malloc()
        return int(commands.dispatch(args) or 0)
    except BrokenPipeError:  # `stgraph ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (StgraphError, OSError, ValueError, KeyError, ImportError, RuntimeError) as e:
        if debug or args.debug:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the last resort: never a traceback without --debug
        if debug or args.debug:
            raise
        print(f"error: stgraph {_inputs(args)} failed: {type(e).__name__}: {one_line(e, with_type=False)}; "
              f"this is an unexpected failure: rerun with --debug to see where, and report it", file=sys.stderr)
        return 2


def _inputs(args) -> str:
    """``train --data x.h5 --graph g.pkl --out runs/a``: the command and the files it was given."""
    words = [str(args.command)] + ([str(args.action)] if getattr(args, "action", None) else [])
    for name in ("run_dir", "path", "name"):
        if getattr(args, name, None):
            words.append(str(getattr(args, name)))
    for name in ("data", "graph", "dataset", "config", "model", "out"):
        v = getattr(args, name, None)
        if v:
            words.append(f"--{name} {v}")
    return " ".join(words)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
