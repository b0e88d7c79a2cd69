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
    from ..synth import write_synthetic

    paths = write_synthetic(args.out, num_sensors=args.sensors, days=args.days, seed=args.seed, start=args.start)
    paths = {k: str(v) for k, v in paths.items()}
    if args.json:
        emit(paths, True)
    else:
        print(f"wrote a synthetic road network of {args.sensors} sensors x {args.days} days (seed {args.seed}):")
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
    """Sensor ids from a series file or a text file of ids."""
    if spec is None:
        return None
    p = Path(spec)
    if not p.is_file():
        raise MissingFileError(f"--sensors '{spec}' not found; pass a series file or a text file of sensor ids")
    head = p.open("rb").read(8)
    if head.startswith(b"\x89HDF") or head.startswith(b"PK"):
        from ..io import read_series
        return read_series(p).sensor_ids
    text = p.read_text().replace("\n", ",")
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise ConfigError(f"--sensors '{spec}' holds no sensor ids")
    return ids


def graph_build(args) -> int:
    from .. import graph as G

    ids = _sensor_order(args.sensors)
    if args.adj:
        g = G.from_adj_pickle(args.adj)
    elif args.distances:
        if ids is None:
            raise ConfigError("--distances needs --sensors (the sensor order: a series file or a list of ids)")
        g = G.from_distances(args.distances, ids, sigma=args.sigma, threshold=args.threshold, kernel=args.kernel)
    elif args.locations:
        lid, lat, lon = G.read_locations(args.locations)
        if args.k is None and args.radius_km is None:
            raise ConfigError("--locations needs --k N (nearest neighbours) or --radius-km R")
        g = G.from_coordinates(lid, lat, lon, k=args.k, radius_km=args.radius_km, sigma=args.sigma)
    else:
        g = G.from_edge_list(args.edges)
    G.write_graph(g, args.out)
    info = G.graph_info(g)
    print(f"wrote {args.out}: {info['nodes']} nodes, {info['edges']} edges, {info['components']} component(s)")
    return 0


def graph_info(args) -> int:
    from .. import graph as G

    g = G.read_graph(args.path, sensor_ids=_sensor_order(args.sensors))
    emit(G.graph_info(g), args.json)
    return 0


# ------------------------------------------------------------------------------------------ runs
def _dotted(mapping, prefix: str = "") -> set[str]:
    out = set()
    for k, v in (mapping or {}).items() if isinstance(mapping, dict) else ():
        key = f"{prefix}{k}"
        out.add(key)
        if isinstance(v, dict) and key != "model.params":
            out |= _dotted(v, key + ".")
        elif isinstance(v, dict):
            out |= {f"{key}.{p}" for p in v}
    return out


def given_settings(args) -> set[str]:
    """Dotted config keys the command line set (--config file, named flags, --set)."""
    from ..config import load_yaml

    given = set()
    if args.config:
        given |= _dotted(load_yaml(config_path(args.config), what="config file"))
    for flag, key in (("data", "data.path"), ("graph", "data.graph"), ("dataset", "data.dataset"),
                      ("model", "model.name"), ("probabilistic", "model.probabilistic"), ("epochs", "train.epochs"),
                      ("batch_size", "train.batch_size"), ("lr", "train.lr"), ("seed", "train.seed"),
                      ("device", "train.device")):
        if getattr(args, flag, None) is not None:
            given.add(key)
    if args.no_progress:
        given.add("train.progress")
    for item in args.set:
        given.add(item.split("=", 1)[0].strip())
    return given


def config_path(spec: str) -> Path:
    """``--config`` value -> file: a path, or the name of a shipped config (``stgt``, ``stgt-large``,
    ``dcrnn``, ...: ``stgraph/configs/<name>.yaml``)."""
    from ..config import shipped_config

    p = Path(spec)
    if p.is_file():
        return p
    shipped = shipped_config(spec)
    if shipped is not None and "/" not in spec and not spec.endswith((".yaml", ".yml")):
        return shipped
    return p  # load_config names the missing file


def build_config(args):
    """The model's shipped defaults (``stgraph/configs/<model>.yaml``) <- --config YAML <- named
    flags <- --set overrides. One source of defaults for ``train`` and ``bench``."""
    from ..config import RunConfig, apply_override, load_config, shipped_config

    user = load_config(config_path(args.config)) if args.config else None
    name = args.model or (user.model.name if user is not None else RunConfig().model.name)
    shipped = shipped_config(name)
    cfg = load_config(shipped) if shipped is not None else RunConfig()
    if user is not None:
        cfg = load_config(config_path(args.config), cfg)
    if args.data:
        cfg.data.path = args.data
    if args.graph:
        cfg.data.graph = args.graph
    if args.dataset:
        cfg.data.dataset = args.dataset
    if args.model:
        cfg.model.name = args.model
    if args.probabilistic:
        cfg.model.probabilistic = True
    for flag, attr in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("seed", "seed"),
                       ("device", "device")):
        v = getattr(args, flag)
        if v is not None:
            setattr(cfg.train, attr, v)
    if args.no_progress:
        cfg.train.progress = False
    for item in args.set:
        apply_override(cfg, item)
    return cfg.validate()


def train(args) -> int:
    from ..training.run import train as train_run

    cfg = build_config(args)
    if args.devices is not None and args.devices != 1:
        return _launch_devices(args)
    trainer = train_run(cfg, args.out, resume=args.resume, overwrite=args.overwrite,
                        given=given_settings(args) if args.resume else None)
    st = trainer.state
    if not trainer.dist.is_main:  # the other data-parallel processes: rank 0 reports
        return 0
    if not trainer.trainable:
        print(f"fitted {cfg.model.name} (nothing to train); run directory {args.out}")
    else:
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
    from ..files import atomic_write, run_lock
    from ..training.run import load_run

    with run_lock(args.run_dir):
        trainer = load_run(args.run_dir, model=args.model)
        result = trainer.evaluate(args.split)
        result["split"] = args.split
        atomic_write(Path(args.run_dir) / f"evaluation_{args.split}.json", json.dumps(result, indent=1))
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    print(format_table(result, trainer.data))
    return 0


def format_table(result: dict, data=None) -> str:
    """Plain-text table of a metrics dict (horizons and average)."""
    step = None
    if data is not None and getattr(data, "interval_minutes", None):
        step = data.interval_minutes
    keys = [k for k in ("mae", "rmse", "mape", "coverage90", "crps") if k in result["average"]]
    head = f"{'horizon':>14} " + " ".join(f"{k.upper():>10}" for k in keys)
    lines = [head, "-" * len(head)]
    for h, vals in result["horizons"].items():
        label = f"{h} ({int(h) * step:g} min)" if step else h
        lines.append(f"{label:>14} " + " ".join(f"{vals[k]:>10.4f}" for k in keys))
    lines.append(f"{'average':>14} " + " ".join(f"{result['average'][k]:>10.4f}" for k in keys))
    return "\n".join(lines)


def predict(args) -> int:
    from ..forecast import check_forecast_path, forecast_at, write_forecast
    from ..training.run import load_run

    check_forecast_path(args.out)  # before anything is read or created
    _refuse_output_that_is_an_input(args.out, args.run_dir, args.data)
    trainer = load_run(args.run_dir, model=args.model)
    series = None
    if args.data:
        from ..io import read_series
        d = trainer.run_config.data
        series = read_series(args.data, null_value=d.null_value, start=d.start, freq=d.freq)
    fc = forecast_at(trainer, args.at, series=series)
    write_forecast(fc, args.out)
    print(f"wrote the forecast of {len(fc.sensor_ids)} sensors x {len(fc.timestamps)} steps from "
          f"{fc.issued_at} to {args.out}")
    return 0


def _refuse_output_that_is_an_input(out: str, run_dir: str, data: str | None) -> None:
    """``--out`` must not be the run's data or graph, ``--data``, or a file inside the run directory."""
    import os

    from ..config import load_run_config
    from ..errors import RunDirError

    target = Path(os.path.abspath(out))
    inputs = {"--data": data}
    cfg_path = Path(run_dir) / "config.yaml"
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

    paths = plot_run(args.run_dir, args.out, sensor=args.sensor, locations=args.locations, model=args.model)
    for p in paths:
        print(f"wrote {p}")
    return 0
