"""What each ``stgraph`` command does; argument parsing lives in :mod:`stgraph.cli.main`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError, MissingFileError
from .main import emit


def dispatch(args) -> int:
    if args.command == "data":
        return {"info": data_info, "synth": data_synth, "download": data_download, "list": data_list}[args.action](args)
    if args.command == "graph":
        return {"build": graph_build, "info": graph_info}[args.action](args)
    if args.command == "federated":
        from .federated import run as federated_run
        return federated_run(args)
    if args.command in ("update", "drift"):
        from .online import run as online_run
        return online_run(args)
    if args.command == "bench":
        from .bench import run as bench_run
        return bench_run(args)
    return {"train": train, "evaluate": evaluate, "predict": predict, "plot": plot}[args.command](args)


# ------------------------------------------------------------------------------------------ data
def data_info(args) -> int:
    from ..io import read_series

    s = read_series(args.path, null_value=args.null_value, start=args.start, freq=args.freq)
    info = s.summary()
    info["path"] = str(args.path)
    emit(info, args.json)
    return 0


def data_synth(args) -> int:
    from ..synth import write_synthetic, write_synthetic_counts

    interval = getattr(args, "interval", "hour")
    if interval != "hour" and getattr(args, "kind", "speeds") != "counts":
        raise ConfigError("--interval day is for --kind counts (speeds are 5-minute readings)")
    if getattr(args, "kind", "speeds") == "counts":
        days = args.days or 56
        paths = write_synthetic_counts(args.out, num_sensors=args.sensors, days=days, seed=args.seed,
                                       start=args.start or "2012-03-05", interval=interval)
        what = (f"a synthetic counts network ({'hourly boardings' if interval == 'hour' else 'daily counts'}) of "
                f"{args.sensors} {'stops' if interval == 'hour' else 'regions'} x {days} days")
    elif getattr(args, "rain", False) or getattr(args, "incidents", False):
        from ..synth.events import write_events
        days = args.days or 7
        paths = write_events(args.out, num_sensors=args.sensors, days=days, seed=args.seed,
                             start=args.start or "2012-03-01", rain=args.rain, incidents=args.incidents)
        what = (f"a synthetic road network of {args.sensors} sensors x {days} days with "
                + " and ".join(w for w, on in (("rain", args.rain), ("incident flags", args.incidents)) if on))
    else:
        days = args.days or 7
        paths = write_synthetic(args.out, num_sensors=args.sensors, days=days, seed=args.seed,
                                start=args.start or "2012-03-01")
        what = f"a synthetic road network of {args.sensors} sensors x {days} days"
    paths = {k: str(v) for k, v in paths.items()}
    if args.json:
        emit(paths, True)
    else:
        print(f"wrote {what} (seed {args.seed}):")
        emit(paths, False)
    return 0


def data_download(args) -> int:
    from ..datasets import fetch

    pins = {}
    for item in args.sha256:
        name, sep, hexd = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--sha256 {item!r}: expected FILE=HEX, e.g. --sha256 adj_mx.pkl=<64 hex digits>")
        pins[name.strip()] = hexd.strip()
    paths = fetch(args.name, root=args.root, sha256=pins)
    for role, p in (paths.items() if isinstance(paths, dict) else enumerate(paths)):
        print(f"{role}: {p}")
    return 0


def data_list(args) -> int:
    from ..datasets import get_manifest, list_datasets

    for name in list_datasets():
        m = get_manifest(name)
        print(f"{name:14s} {m.sensors:>6} sensors  {m.interval:>6}  {m.description}")
    return 0


# ------------------------------------------------------------------------------------------ graph
def _sensor_order(spec: str | None) -> list[str] | None:
    """Sensor ids from a series file (HDF5, .npz, or a CSV with a row per time step) or a text file
    of ids (comma separated on one line, or one id per line)."""
    if spec is None:
        return None
    from ..io import read_series
    from ..io.read import sniff_format

    p = Path(spec)
    if not p.is_file():
        raise MissingFileError(f"--sensors '{spec}' not found; pass a series file or a text file of sensor ids")
    if sniff_format(p) != "csv":
        return read_series(p).sensor_ids
    lines = [ln for ln in p.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if len(lines) > 1 and any("," in ln for ln in lines):
        return read_series(p).sensor_ids  # a header and rows of readings: a series
    ids = [t.strip() for ln in lines for t in ln.split(",") if t.strip()]
    if not ids:
        raise ConfigError(f"--sensors '{spec}' holds no sensor ids")
    return ids


def graph_build(args) -> int:
    from .. import graph as G

    ids = _sensor_order(args.sensors)
    if args.weights and not (args.edges or args.graph):
        raise ConfigError(f"--weights {args.weights} declares the weights of --edges or --graph; the other builders "
                          f"make similarities themselves (a kernel of distances)")
    crs = G.parse_crs(args.crs)
    if crs != "degrees" and not (args.locations or args.graph):
        raise ConfigError(f"--crs {args.crs} applies to coordinates, read with --locations (or --graph)")
    if args.adj:
        g = G.from_adj_pickle(args.adj)
    elif args.distances:
        if ids is None:
            raise ConfigError("--distances needs --sensors (the sensor order: a series file or a list of ids)")
        g = G.from_distances(args.distances, ids, sigma=args.sigma, threshold=args.threshold, kernel=args.kernel)
    elif args.locations:
        lid, lat, lon = G.read_locations(args.locations, crs)
        if args.k is None and args.radius_km is None:
            raise ConfigError("--locations needs --k N (nearest neighbours) or --radius-km R")
        if ids is not None:  # only the series' sensors, in its order
            pos = {s: i for i, s in enumerate(lid)}
            lack = [s for s in ids if s not in pos]
            if lack:
                raise ConfigError(f"--locations '{args.locations}' has no row for {len(lack)} sensor(s) of --sensors "
                                  f"'{args.sensors}': {lack[:20]}; expected a location for every sensor")
            rows = [pos[s] for s in ids]
            lid, lat, lon = ids, lat[rows], lon[rows]
        g = G.from_coordinates(lid, lat, lon, k=args.k, radius_km=args.radius_km, sigma=args.sigma,
                               crs="projected" if crs == "projected" else "degrees")
    elif args.edges:
        g = G.from_edge_list(args.edges, sensor_ids=ids)
    else:
        g = G.read_graph(args.graph, crs=None if crs == "degrees" else crs)
    if args.weights:
        g.graph["weight_meaning"] = args.weights
    dropped = []
    if ids is not None:
        g, dropped = G.for_sensors(g, ids)
    G.write_graph(g, args.out)
    info = G.graph_info(g)
    print(f"wrote {args.out}: {info['nodes']} nodes, {info['edges']} edges, {info['components']} component(s); "
          f"weights {info['weights']}: {info['weight_meaning']}"
          + (f"; dropped {len(dropped)} sensor(s) not in --sensors, e.g. {dropped[:5]}" if dropped else ""))
    return 0


def graph_info(args) -> int:
    from .. import graph as G

    g = G.read_graph(args.path, sensor_ids=_sensor_order(args.sensors))
    emit(G.graph_info(g), args.json)
    return 0


# ------------------------------------------------------------------------------------------ runs
#: command-line flag -> the config field it sets
FLAG_FIELDS = (("data", "data.path"), ("graph", "data.graph"), ("dataset", "data.dataset"),
               ("probabilistic", "model.probabilistic"), ("null_value", "data.null_value"),
               ("epochs", "train.epochs"), ("batch_size", "train.batch_size"), ("lr", "train.lr"),
               ("seed", "train.seed"), ("device", "train.device"), ("covariates", "data.covariates"),
               ("distribution", "model.distribution"), ("budget", "train.budget_minutes"))


def flag_settings(args) -> dict:
    """The config fields the named flags set (``--data``, ``--epochs``, ``--no-progress``, ...), typed.
    A file flag counts when it is not empty, ``--probabilistic`` when given, a value flag when not ``None``."""
    out = {}
    for flag, key in FLAG_FIELDS:
        v = getattr(args, flag, None)
        if (v if flag in ("data", "graph", "dataset", "probabilistic", "covariates") else v is not None):
            out[key] = list(v) if flag == "covariates" else v
    if out.get("model.distribution"):  # a distribution is a probabilistic head
        out["model.probabilistic"] = True
    if args.no_progress:
        out["train.progress"] = False
    return out


def given_settings(args) -> set[str]:
    """Dotted config keys the command line set (--config file, named flags, --set). A flag counts as given
    when it has a value (``--probabilistic`` always does: true or false)."""
    from ..config import given_keys

    flags = {key for flag, key in FLAG_FIELDS if getattr(args, flag, None) is not None}
    return given_keys(args.model, args.config, flag_settings(args), args.set) | flags


def config_path(spec: str) -> Path:
    """``--config`` value -> file (:func:`stgraph.config.config_file`)."""
    from ..config import config_file

    return config_file(spec)


def build_config(args):
    """The model's shipped defaults (``stgraph/configs/<model>.yaml``) <- --config YAML <- named
    flags <- --set overrides (:func:`stgraph.config.compose_config`)."""
    from ..config import compose_config

    return compose_config(args.model, args.config, flag_settings(args), args.set)


def train(args) -> int:
    from ..training.run import train as train_run

    cfg = build_config(args)
    if args.devices is not None and args.devices != 1:
        return _launch_devices(args)
    run = train_run(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                    given=given_settings(args) if args.resume else None)
    st = run.state
    if not run.dist.is_main:  # the other data-parallel processes: rank 0 reports
        return 0
    if not run.trainable:
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
    from ..files import run_lock
    from ..metrics import parse_steps
    from ..training.run import Run

    with run_lock(args.run_dir):
        run = Run.open(args.run_dir, model=args.model)
        steps = parse_steps(args.steps, run.data.horizon) if args.steps else None
        result = run.evaluate(args.split, horizons=steps)
        result["split"] = args.split
        notice = run.notice()
        if notice:
            result["notice"] = notice
        result["null_convention"] = run.null_convention()
        run.write_evaluation(result, args.split)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    if notice:
        print(f"note: {notice}")
    print(f"null convention: {result['null_convention']}")
    print(format_table(result, run.data))
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
    from ..forecast import check_forecast_path, forecast_at, write_forecast
    from ..training.run import Run

    check_forecast_path(args.out)  # before anything is read or created
    _refuse_output_that_is_an_input(args.out, args.run_dir, args.data)
    if args.threads is not None:
        if args.threads < 1:
            from ..errors import ConfigError
            raise ConfigError(f"--threads {args.threads}: expected an integer >= 1")
        import torch
        torch.set_num_threads(args.threads)
    run = Run.open(args.run_dir, model=args.model)
    series = None
    if args.data:
        from ..io import read_series
        d = run.config.data
        series = read_series(args.data, null_value=d.null_value, start=d.start, freq=d.freq)
    fc = forecast_at(run, args.at, series=series, amp=args.amp)
    write_forecast(fc, args.out)
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
                     crs=args.crs)
    for p in paths:
        print(f"wrote {p}")
    return 0
