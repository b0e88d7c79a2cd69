"""``stgraph train``, ``evaluate``, ``predict`` and ``plot``: a run directory from training to pictures.

Thin handlers over the public API (:mod:`stgraph.api`): ``train`` -> :func:`stgraph.train`, ``evaluate`` /
``predict`` -> :func:`stgraph.open_run`. Each training flag is a keyword argument of :func:`stgraph.train`
(:data:`stgraph.api.TRAIN_FIELDS`): its type and the default in its help come from
:class:`~stgraph.config.RunConfig`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..api import TRAIN_FIELDS
from ..errors import ConfigError
from .common import BUDGET_HELP, CRS_HELP, MODEL_PATH_HELP, NULL_FLAG, budget_arg, in_flags
from .fields import Flag, add_flags, given


def _flag(name: str, help: str = "", **kw) -> Flag:
    """The flag of :func:`stgraph.train`'s keyword argument ``name`` (the field of :data:`TRAIN_FIELDS`)."""
    return Flag(TRAIN_FIELDS[name], help, name=name, **kw)


_SHIPPED = "(default: the model's shipped config, else {default})"

#: how an edge-table --graph is read (stgraph.graph.edges); federated spells --aggregate --graph-aggregate (and
#: the Python API graph_aggregate=: federated's aggregate= is the server's)
GRAPH_TABLE_FLAGS = (
    _flag("weight_column", "edge-table --graph: the column holding the weight (needs --weights); an edge table with "
                           "other columns than source,target,weight,distance is refused without it. "
                           "data.graph_weight_column", options={"metavar": "COLUMN"}),
    _flag("weights", "what the --graph weights mean: similarity, distance or flow (log1p-scaled). data.graph_weights",
          options={"choices": ["similarity", "distance", "flow"]}),
    _flag("graph_aggregate", "edge-table --graph: combine rows repeating a pair (one per day, ...) by sum, mean, max "
                             "or last; a repeated pair is an error without it. data.graph_aggregate",
          flag="--aggregate", options={"choices": ["sum", "mean", "max", "last"]}),
)

#: the flags naming files, before --model / --out / --config
FILE_FLAGS = (
    _flag("data", "series file (HDF5, npz, CSV)"),
    _flag("graph", "graph file (adj pickle, distance CSV, JSON, GraphML)"),
    _flag("dataset", "named dataset instead of --data/--graph"),
    *GRAPH_TABLE_FLAGS,
    _flag("covariates", "covariate file (repeatable): weather, incidents, static sensor features, events, or "
                        "graph:ATTR[,ATTR...]; FILE:observed (held at the last input step) or FILE:forecast "
                        "(known ahead) declares whether its future is known, else the kind's default; or a .yaml "
                        "listing them; only models that take them (stgt). The same as data.covariates",
          options={"metavar": "FILE"}),
    _flag("text_encoder", "text reports: a sentence-transformers model folder on disk embedding each distinct "
                          "report text once (default: hashed word and character n-grams trained with the model; "
                          "needs pip install 'stgraph[text]'). The same as data.text_encoder",
          options={"metavar": "PATH"}),
    _flag("skip_bad_rows", "text reports: skip and count bad rows (no time, unknown sensor, place outside the "
                           "network, empty text) instead of refusing the file. The same as data.skip_bad_rows"),
)

#: the flags setting values of the run's config
VALUE_FLAGS = (
    _flag("epochs", "training epochs " + _SHIPPED),
    _flag("budget", BUDGET_HELP + "; the run stops after the epoch that crosses it (--set train.budget_stop=step: at "
                                  "that step), or at --epochs, whichever comes first. The same as "
                                  "train.budget_minutes",
          options={"type": budget_arg, "metavar": "DURATION"}),
    _flag("batch_size", "training batch " + _SHIPPED),
    _flag("lr", "learning rate " + _SHIPPED),
    _flag("seed", "seed of every random draw " + _SHIPPED),
    _flag("device", "cpu, cuda, cuda:1 or auto " + _SHIPPED),
    _flag("split_gap", "steps left unused between train, validation and test, the windows reaching into them "
                       "dropped, so no target of one split is an input or target of the next (default {default}: "
                       "none, the published protocol; see README 'Short series'). data.split_gap",
          options={"metavar": "STEPS"}),
    _flag("probabilistic", "a probabilistic head: forecast mean and spread (90%% bands, CRPS)"),
    _flag("distribution", "predictive distribution of the probabilistic head (implies --probabilistic): normal "
                          "(default), or lognormal for counts and other non-negative targets (censored at 0: "
                          "bands and quantiles never go below zero), or mixture: K Normals (model.params.components, "
                          "default 2) for two-peaked targets such as congestion edges, or lognormal-mixture: K "
                          "censored log-normals for two-regime counts",
          options={"choices": ["normal", "lognormal", "mixture", "lognormal-mixture"]}),  # = distributions.DISTRIBUTIONS
    NULL_FLAG,
)

PROGRESS_FLAG = _flag("progress", "no progress bar", flag="--no-progress", negate=True)

TRAIN_FLAGS = FILE_FLAGS + VALUE_FLAGS + (PROGRESS_FLAG,)


def _add_train(sub) -> None:
    from ..config import RunConfig

    t = sub.add_parser("train", help="train a model into a run directory")
    add_flags(t, RunConfig, FILE_FLAGS)
    t.add_argument("--model", default=None, help="registry name or package.module:Class (default stgt)")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--config", help="YAML config file, or a shipped set-up (stgt-classic, stgt-large)")
    add_flags(t, RunConfig, VALUE_FLAGS)
    t.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set model.params.hidden=32 (repeatable)")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a different run already in --out")
    t.add_argument("--force", action="store_true",
                   help="also delete files in --out that stgraph did not write (without it they are an error)")
    add_flags(t, RunConfig, [PROGRESS_FLAG])
    t.add_argument("--devices", type=int, default=None, metavar="K",
                   help="train data parallel in K processes on this machine: runs `torchrun --standalone "
                        "--nproc-per-node K -m stgraph train ...` (one GPU each, or K CPU processes with gloo); "
                        "train.batch_size stays the global batch")


def add_parser(sub) -> None:
    """``stgraph train``, ``evaluate``, ``predict``, ``plot``."""
    _add_train(sub)
    e = sub.add_parser("evaluate", help="MAE/RMSE/MAPE per horizon step and on average")
    e.add_argument("run_dir")
    e.add_argument("--steps", default=None, help="comma-separated horizon steps to report, e.g. 1,2,4 (default: "
                                                 "every step up to a horizon of 4, else the first, middle and last "
                                                 "and 3, 6, 12 where they exist; 3,6,12 for 12-step 5-minute data)")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--data", default=None, help="evaluate on this series instead of the training file (the run's "
                                                "interval, sensors and channels; the result is not recorded in the "
                                                "run directory)")
    e.add_argument("--json", action="store_true")
    e.add_argument("--model", default=None, help=MODEL_PATH_HELP)
    _add_by_flags(e)

    pr = sub.add_parser("predict", help="write the forecast of every sensor (CSV or HDF5)")
    pr.add_argument("run_dir")
    pr.add_argument("--data", default=None, help="series to forecast from (default: the training file)")
    pr.add_argument("--at", default=None, help="forecast from this timestamp (last input step); default the last")
    pr.add_argument("--out", required=True, help=".csv or .h5")
    pr.add_argument("--force", action="store_true", help="replace a file at --out that stgraph did not write")
    pr.add_argument("--model", default=None, help=MODEL_PATH_HELP)
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
    pl.add_argument("--steps", default=None, help="comma-separated horizon steps of the forecast panels, e.g. 1,4 "
                                                  "(default: every step up to a horizon of 4, else the first, middle "
                                                  "and last and 3, 6, 12 where they exist)")
    pl.add_argument("--model", default=None, help=MODEL_PATH_HELP)


def _add_by_flags(e) -> None:
    """``stgraph evaluate --by regime|sensor|hour`` and the regime thresholds (:mod:`stgraph.regimes`)."""
    from ..regimes import GROUPINGS, RegimeConfig

    d = RegimeConfig()
    e.add_argument("--by", default=None, choices=list(GROUPINGS),
                   help="also share, MAE, RMSE (coverage, CRPS) per group and step: regime = free flow / congested "
                        "/ transition from the data, sensor, or hour of day of the target")
    e.add_argument("--free-flow-quantile", type=float, default=d.free_flow_quantile,
                   help="--by regime: a sensor's free-flow speed is this quantile of its training readings "
                        "(default %(default)s)")
    e.add_argument("--congested-fraction", type=float, default=d.congested_fraction,
                   help="--by regime: congested below this fraction of the free-flow speed (default %(default)s)")
    e.add_argument("--regime-threshold", type=float, default=None, metavar="VALUE",
                   help="--by regime: one threshold in data units for every sensor instead (required for counts "
                        "and other non-speed targets)")
    e.add_argument("--plot", default=None, metavar="PNG",
                   help="with --by: a picture of MAE and 90%% coverage by group and horizon")
    e.add_argument("--calibration", default=None, metavar="PNG",
                   help="probabilistic runs: a picture of the PIT histogram and the reliability diagram (observed "
                        "vs nominal coverage of the central 10%% .. 90%% bands), and the coverage table")


def run(args) -> int:
    return {"train": train, "evaluate": evaluate, "predict": predict, "plot": plot}[args.command](args)


def build_config(args):
    """The run config of ``stgraph train``'s flags (:func:`stgraph.api.run_config`): the model's shipped
    defaults <- --config <- named flags <- --set."""
    from ..api import run_config

    return run_config(model=args.model, config=args.config, overrides=args.set, **given(args, TRAIN_FLAGS))


def train(args) -> int:
    from ..api import train as train_run

    if args.devices is not None and args.devices != 1:
        build_config(args)  # a wrong setting fails here, once, before any process starts
        return _launch_devices(args)
    run = train_run(model=args.model, config=args.config, overrides=args.set, out=args.out, resume=args.resume,
                    overwrite=args.overwrite, force=args.force, **given(args, TRAIN_FLAGS))
    st, cfg = run.state, run.config
    if not run.forecaster.dist.is_main:  # the other data-parallel processes: rank 0 reports
        return 0
    if not run.forecaster.trainable:
        print(f"fitted {cfg.model.name} (nothing to train); run directory {args.out}")
    else:
        if st.get("early_stopped"):
            print(f"early stopping: validation MAE did not improve for train.patience = {cfg.train.patience} "
                  f"epochs, so training stopped after epoch {st['epoch']} of {cfg.train.epochs} "
                  f"(--set train.patience=0 turns it off)")
        if st.get("budget_stopped"):
            print(f"budget: {st['cpu_seconds'] / 60:.2f} of {cfg.train.budget_minutes:g} CPU minutes used, so "
                  f"training stopped after epoch {st['epoch']} (train.budget_stop = {cfg.train.budget_stop})")
        print(f"finished: {st['epoch']} epoch(s), best validation MAE {st['best_val']:.4f} at epoch "
              f"{st['best_epoch']}; run directory {args.out}")
    return 0


def _launch_devices(args) -> int:
    """``stgraph train --devices K``: the same command in K processes under torchrun (the settings were
    checked here first, so a wrong option fails once, before any process starts)."""
    from ..errors import StgraphError
    from ..training.distributed import launch

    rc = launch(args.devices, args.argv)
    if rc != 0:
        raise StgraphError(f"training in {args.devices} processes under torchrun failed (exit status {rc}); the "
                           f"processes' messages are above. Continue the run with --resume once it is fixed")
    return 0


def evaluate(args) -> int:
    from ..api import evaluate as evaluate_run
    from ..api import open_run
    from ..files import run_lock

    from ..regimes import RegimeConfig

    regimes = RegimeConfig(args.free_flow_quantile, args.congested_fraction, args.regime_threshold).validate()
    if args.plot and not args.by:
        raise ConfigError("--plot draws the figures by group: add --by regime, sensor or hour")
    with run_lock(args.run_dir, read_only=True):
        run = open_run(args.run_dir, model=args.model, data=args.data)
        result = evaluate_run(run, args.split, steps=args.steps, by=args.by, regimes=regimes,
                              calibration=bool(args.calibration))
    if args.calibration:
        from ..plot import plot_calibration
        print(f"wrote {plot_calibration(result['calibration'], args.calibration)}",
              file=sys.stderr if args.json else sys.stdout)
    if args.plot:
        from ..plot import plot_groups
        print(f"wrote {plot_groups(result['by'], args.plot)}", file=sys.stderr if args.json else sys.stdout)
    notice = result.get("notice")
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    if notice:
        print(f"note: {in_flags(notice)}")
    print(f"null convention: {result['null_convention']}")
    n = run.data.split.sizes()
    print(f"windows: {n['train']} train, {n['val']} validation, {n['test']} test (input {run.data.input_len} + "
          f"horizon {run.data.horizon} steps each); scored: {result['windows']} {args.split}")
    print(format_table(result, run.data))
    if args.by:
        from ..regimes import format_groups
        print(format_groups(result["by"], run.data))
    if args.calibration:
        cal = result["calibration"]
        print("coverage of the central band: " + "  ".join(
            f"{100 * r['nominal']:.0f}% -> {100 * r['observed']:.1f}%" for r in cal["reliability"]))
    return 0


def format_table(result: dict, data=None) -> str:
    """Plain-text table of a metrics dict (horizons and average), horizons labelled in the data's own time
    unit (``3 (3 h)``, ``1 (1 week)``); MAPE left out with a note where it means nothing."""
    from ..io.series import horizon_text

    step = getattr(data, "interval_minutes", None) if data is not None else None
    keys = [k for k in ("mae", "rmse", "mape", "coverage90", "crps") if k in result["average"]]
    if result.get("mape_note"):
        keys.remove("mape")
    head = f"{'horizon':>16} " + " ".join(f"{k.upper():>10}" for k in keys)
    lines = [head, "-" * len(head)]
    for h, vals in result["horizons"].items():
        label = f"{h} ({horizon_text(int(h), step)})" if step else h
        lines.append(f"{label:>16} " + " ".join(f"{vals[k]:>10.4f}" for k in keys))
    lines.append(f"{'average':>16} " + " ".join(f"{result['average'][k]:>10.4f}" for k in keys))
    if result.get("mape_note"):
        lines.append(result["mape_note"])
    return "\n".join(lines)


def predict(args) -> int:
    from ..api import open_run
    from ..forecast import check_forecast_path, forecast_at, write_forecast

    _refuse_output_that_is_an_input(args.out, args.run_dir, args.data)  # even with --force
    check_forecast_path(args.out, args.force)  # before anything is read or created
    if args.threads is not None:
        from ..limits import check_threads
        check_threads(args.threads, "--threads")
        import torch
        torch.set_num_threads(args.threads)
    run = open_run(args.run_dir, model=args.model)
    series = None
    if args.data:
        from ..io import read_series
        d = run.config.data
        series = read_series(args.data, null_value=d.null_value, start=d.start, freq=d.freq)
    fc = forecast_at(run, args.at, series=series, amp=args.amp)
    write_forecast(fc, args.out, force=args.force)
    from ..io.series import iso
    print(f"wrote the forecast of {len(fc.sensor_ids)} sensors x {len(fc.timestamps)} steps from "
          f"{iso(fc.issued_at)} to {args.out}")
    return 0


def _refuse_output_that_is_an_input(out: str, run_dir: str, data: str | None) -> None:
    """``--out`` must not be the run's data or graph, ``--data``, or a file inside the run directory."""
    import os

    from ..config import load_run_config
    from ..errors import RunDirError
    from ..training.layout import RunFiles

    target = Path(os.path.abspath(out))
    inputs = {"--data": data}
    cfg_path = RunFiles(run_dir).config
    if cfg_path.is_file():
        cfg = load_run_config(cfg_path)
        inputs.update({"the run's data.path": cfg.data.path, "the run's data.graph": cfg.data.graph})
    for what, p in inputs.items():
        if not p:
            continue
        p = Path(os.path.abspath(p))
        same = p == target or (p.exists() and target.exists() and os.path.samefile(p, target))
        if same:
            raise ConfigError(f"--out '{out}' is {what} ('{p}'), an input of this forecast; refusing to overwrite "
                              f"it. Choose another output file")
    run = Path(os.path.abspath(run_dir))
    if run == target or run in target.parents:
        raise RunDirError(f"--out '{out}' lies inside the run directory '{run_dir}'; write the forecast elsewhere "
                          f"(stgraph keeps a run directory to its own files)")


def plot(args) -> int:
    from ..plot import plot_run

    paths = plot_run(args.run_dir, args.out, sensor=args.sensor, locations=args.locations, model=args.model,
                     crs=args.crs, steps=args.steps)
    for p in paths:
        print(f"wrote {p}")
    return 0
