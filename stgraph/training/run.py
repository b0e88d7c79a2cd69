"""A run directory: prepare data and graph from a config, train, reload, evaluate.

Layout of ``RUN_DIR``::

    config.yaml            the resolved RunConfig
    run.json               sensor ids, sizes, model name, parameter count, fingerprint
    metrics.csv            one row per epoch
    checkpoints/last.pt    latest state (resume from here)
    checkpoints/best.pt    best validation MAE
    evaluation.json        written by ``stgraph evaluate``
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, config_from_dict, load_run_config
from ..errors import ConfigError, RunDirError
from ..models.registry import build_model, count_parameters, get_model_class
from ..io.series import null_convention
from ..files import atomic_write, check_no_links, fingerprint, run_lock, wrap_os_error
from . import distributed
from .checkpoint import load_checkpoint
from .memory import check_training_memory
from .trainer import Trainer, resolve_device, seed_everything


@dataclass
class Prepared:
    """Everything a model needs, derived from a :class:`RunConfig`."""

    series: object          # stgraph.io.Series
    nx_graph: object        # networkx.DiGraph or None
    graph: object           # torch_geometric.data.Data
    data: object            # stgraph.data.ForecastData


def graph_fingerprint(graph) -> str:
    """16 hex digits identifying a PyG graph (edges, weights, node count)."""
    return fingerprint(graph.edge_index.cpu().numpy(), graph.edge_weight.cpu().numpy().astype(np.float32),
                       str(int(graph.num_nodes)))


def empty_graph(num_nodes: int):
    """A graph without edges, for series that come with no road graph."""
    from torch_geometric.data import Data
    return Data(edge_index=torch.zeros(2, 0, dtype=torch.long), edge_weight=torch.zeros(0), num_nodes=num_nodes)


def load_series_and_graph(cfg: RunConfig, data_path: str | None = None):
    """Read the series and the road graph named by ``cfg.data`` (``data_path`` overrides the series file)."""
    from ..graph import read_graph, to_pyg
    from ..io import read_series

    d = cfg.data
    nx_graph = None
    if d.dataset and data_path is None:
        from ..datasets import load
        ds = load(d.dataset, root=d.root)
        series, nx_graph = ds.series, ds.graph
    else:
        path = data_path or d.path
        if not path:
            raise ConfigError("data.path is not set: pass --data FILE (or --dataset NAME)")
        series = read_series(path, null_value=d.null_value, start=d.start, freq=d.freq,
                             **(dict(lazy=True, cache_bytes=d.cache_mb << 20) if d.lazy else {}))
        if d.graph:
            nx_graph = read_graph(d.graph, sensor_ids=series.sensor_ids)
    graph = to_pyg(nx_graph, series.sensor_ids) if nx_graph is not None else empty_graph(series.num_nodes)
    return series, nx_graph, graph


def prepare(cfg: RunConfig, data_path: str | None = None) -> Prepared:
    """Read files and cut windows as ``cfg.data`` says."""
    from ..data import ForecastData

    series, nx_graph, graph = load_series_and_graph(cfg, data_path)
    d = cfg.data
    data = ForecastData.from_series(series, input_len=d.input_len, horizon=d.horizon, stride=d.stride,
                                    split=tuple(d.split), target=d.target)
    return Prepared(series, nx_graph, graph, data)


def model_sizes(data, probabilistic: bool) -> dict:
    return dict(num_nodes=data.num_nodes, in_channels=data.in_channels, out_channels=data.out_channels,
                input_len=data.input_len, horizon=data.horizon, steps_per_day=data.steps_per_day,
                target_channels=target_positions(data), probabilistic=probabilistic)


def target_positions(data) -> tuple | None:
    """Where each target channel sits among the model's input channels (``None`` if one is not an input)."""
    if not all(c in data.input_channels for c in data.target_channels):
        return None
    return tuple(data.input_channels.index(c) for c in data.target_channels)


def make_model(cfg: RunConfig, data) -> torch.nn.Module:
    return build_model(cfg.model.name, model_sizes(data, cfg.model.probabilistic), cfg.model.params)


def _config_diff(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, old value, new value)`` of every field that differs."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b and not (a != a and b != b):  # NaN (data.null_value) equals NaN here
            out.append((f"{prefix}{k}", a, b))
    return out


#: settings a resumed run may change: they decide when it stops, not what it computes
MAY_CHANGE_ON_RESUME = ("train.epochs", "train.patience")
#: how to run, not what: a resumed run takes these from the command line without a word
RUNTIME_SETTINGS = ("train.progress", "train.device", "train.threads", "train.workers", "data.lazy", "data.cache_mb")
#: file locations: a resumed run accepts a new location when the content is the same (fingerprints)
PATH_SETTINGS = ("data.path", "data.graph", "data.root")


def _absolute(cfg: RunConfig) -> RunConfig:
    """Store file locations as absolute paths, so the run works from any working directory."""
    for name in ("path", "graph", "root"):
        v = getattr(cfg.data, name)
        if v:
            setattr(cfg.data, name, os.path.abspath(os.path.expanduser(str(v))))
    return cfg


#: model.params the data chose when the run started (:func:`choose_defaults`), if the user gave none
CHOSEN_PARAMS = ("residual",)


def _with_chosen(saved: dict, new: dict) -> dict:
    """``new`` with the run's data-chosen model.params where ``new`` leaves them unset."""
    params = dict(new["model"]["params"])
    for k in CHOSEN_PARAMS:
        if k in saved["model"]["params"] and k not in params:
            params[k] = saved["model"]["params"][k]
    return {**new, "model": {**new["model"], "params": params}}


def _check_run_dir(out: Path, cfg: RunConfig, overwrite: bool) -> None:
    saved = out / "config.yaml"
    if saved.exists() and not overwrite:
        try:
            old = load_run_config(saved).to_dict()
        except RunDirError:
            old = None
        if old is None:
            what = "a damaged run (its config.yaml cannot be read)"
        else:
            diff = _config_diff(old, _with_chosen(old, _absolute(config_from_dict(cfg.to_dict())).to_dict()))
            what = ("a run with the same config" if not diff else
                    "a different run (" + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in diff[:3])
                    + ("; ..." if len(diff) > 3 else "") + ")")
        raise RunDirError(f"run directory '{out}' already holds {what}; pass --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out")


def _given(diff_key: str, given) -> bool:
    return given is None or any(diff_key == g or diff_key.startswith(g + ".") or g.startswith(diff_key + ".")
                                for g in given)


def _resume_config(out: Path, cfg: RunConfig, given, log) -> RunConfig:
    """The run's saved config, with the settings a resume may change taken from ``cfg``.

    ``given``: dotted keys the user set (``None``: every field of ``cfg`` counts). A given setting
    that differs from the run and may not change is an error listing each difference."""
    if not (out / "checkpoints" / "last.pt").is_file():
        raise RunDirError(f"cannot resume: '{out}/checkpoints/last.pt' does not exist; start without --resume")
    saved = load_run_config(out / "config.yaml")
    new = _absolute(config_from_dict(cfg.to_dict()))
    diffs = [d for d in _config_diff(saved.to_dict(), _with_chosen(saved.to_dict(), new.to_dict()))
             if _given(d[0], given)]
    refused = [d for d in diffs if d[0] not in MAY_CHANGE_ON_RESUME + RUNTIME_SETTINGS + PATH_SETTINGS]
    if refused:
        what = "; ".join(f"{k}: {a!r} in the run, {b!r} given" for k, a, b in refused[:6])
        raise RunDirError(
            f"cannot resume '{out}' with other settings ({what}{'; ...' if len(refused) > 6 else ''}); only "
            f"{' and '.join(MAY_CHANGE_ON_RESUME)} may change on --resume. Drop those options to continue the run "
            f"as it was, or start a new run (another --out, or --overwrite)")
    for key, old, value in diffs:
        section, name = key.split(".", 1)
        setattr(getattr(saved, section), name, value)
        if key in MAY_CHANGE_ON_RESUME:
            log(f"resume: {key} = {value!r} (the run had {old!r})")
        elif key in PATH_SETTINGS:
            log(f"resume: {key} = '{value}' (the run had '{old}'); accepted only if its content is the same")
    return saved.validate()


def _fingerprint_diff(old: dict, new: dict, cfg: RunConfig) -> str:
    parts = []
    if old.get("data") != new.get("data"):
        parts.append(f"the data ({cfg.data.path or cfg.data.dataset}: fingerprint {new.get('data')}, the run's "
                     f"{old.get('data')})")
    if old.get("graph") != new.get("graph"):
        parts.append(f"the graph ({cfg.data.graph or cfg.data.dataset or 'none'}: fingerprint {new.get('graph')}, "
                     f"the run's {old.get('graph')})")
    return " and ".join(parts)


def _start_run_dir(out: Path, cfg: RunConfig, info: dict) -> None:
    """Write config.yaml and run.json into a new folder beside ``out`` and rename it into place;
    an old run there is swapped out and deleted only then (never through a link)."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out '{out}' is a file; expected a run directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.yaml").exists():
        # a folder stgraph did not make a run of (or a start that was killed early): use it as it is
        cfg.to_yaml(out / "config.yaml")
        atomic_write(out / "run.json", json.dumps(info, indent=1))
        return
    tag = f"{os.getpid()}-{int(time.time() * 1000)}"
    stage = out.parent / f".{out.name}.new-{tag}"
    stage.mkdir()
    try:
        cfg.to_yaml(stage / "config.yaml")
        atomic_write(stage / "run.json", json.dumps(info, indent=1))
        if out.exists():
            old = out.parent / f".{out.name}.old-{tag}"
            os.rename(out, old)
            os.rename(stage, out)
            shutil.rmtree(old)  # never follows links (and the run held none: check_no_links)
        else:
            os.rename(stage, out)
    except OSError as e:
        raise wrap_os_error(e, out, "create the run directory") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def train(cfg: RunConfig, out: str | Path | None, *, resume: bool = False, overwrite: bool = False,
          given=None, log=print) -> Trainer:
    """Train ``cfg`` into run directory ``out``; returns the finished :class:`Trainer`.

    Everything is checked (config, files, model) before the run directory changes: a failed start
    leaves it as it was. ``overwrite`` replaces an old run by renaming a new folder into place.
    ``resume`` continues the run in ``out``; ``given`` names the settings the caller set (``None``:
    all of ``cfg``): those that differ from the run must be ones a resume may change
    (:data:`MAY_CHANGE_ON_RESUME`), and the data and graph must have the run's fingerprints.
    The run directory is locked (:func:`stgraph.files.run_lock`) while this runs.

    Under ``torchrun`` every process calls this; they join the process group
    (:func:`stgraph.training.distributed.session`) and train data parallel. Rank 0 alone checks,
    locks and writes the run directory and prints; the others only read it (``resume``).
    """
    cfg.validate()
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one")
    with distributed.session(cfg.train.device) as dist:
        if not dist.is_main:  # rank 0 speaks for all: the others print no log and no warning
            log = _quiet
            import warnings
            warnings.simplefilter("ignore")
        if out is None:
            return _train(cfg, None, resume=False, fresh=False, log=log)
        out = Path(out)
        with run_lock(out) if dist.is_main else nullcontext():
            if dist.is_main:
                check_no_links(out)
            if resume:
                cfg = _resume_config(out, cfg, given, log)
            elif dist.is_main:
                _check_run_dir(out, cfg, overwrite)
            return _train(_absolute(cfg), out, resume=resume, fresh=not resume, log=log)


def _quiet(*args, **kwargs) -> None:
    """The ``log`` of a process other than rank 0: it prints nothing."""


def _train(cfg: RunConfig, out: Path | None, *, resume: bool, fresh: bool, log) -> Trainer:
    get_model_class(cfg.model.name)  # an unknown model fails before any file is read
    seed_everything(cfg.train.seed)
    prep = prepare(cfg)
    s = prep.series
    log(f"{s.source}: {null_convention(s.zero_ratio, s.null_value, s.null_origin)}")
    if fresh or out is None:
        choose_defaults(cfg, prep.data, log)
    seed_everything(cfg.train.seed)
    model = make_model(cfg, prep.data)
    dist = distributed.current()
    check_training_memory(model, batch_size=dist.per_rank_batch(cfg.train.batch_size),
                          num_edges=int(prep.graph.edge_index.size(1)),
                          device=resolve_device(distributed.device_for(cfg.train.device)), log=log,
                          enabled=cfg.train.memory_check)
    fingerprint = {"data": prep.data.fingerprint(), "graph": graph_fingerprint(prep.graph)}
    writes = out is not None and dist.is_main
    if out is not None:
        if resume:
            ck = load_checkpoint(out / "checkpoints" / "last.pt")
            if ck.get("fingerprint") and ck["fingerprint"] != fingerprint:
                raise RunDirError(f"cannot resume '{out}': {_fingerprint_diff(ck['fingerprint'], fingerprint, cfg)} "
                                  f"differ from what the run started with; pass the original files, or start a new "
                                  f"run (another --out, or --overwrite)")
        info = {"model": cfg.model.name, "parameters": count_parameters(model),
                "sensor_ids": list(prep.series.sensor_ids), "channels": list(prep.series.channels),
                "target_channels": list(prep.data.target_channels), "fingerprint": fingerprint,
                "source": os.path.abspath(str(prep.series.source))}
        if fresh and writes:
            _start_run_dir(out, cfg, info)
        elif writes:
            cfg.to_yaml(out / "config.yaml")
            atomic_write(out / "run.json", json.dumps(info, indent=1))
    trainer = Trainer(model, prep.data, prep.graph, cfg.train, out,
                      extra_state={"config": cfg.to_dict(), "fingerprint": fingerprint},
                      distribution=cfg.model.distribution)
    trainer.prepared = prep
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if writes:
        summary = {"model": cfg.model.name, "parameters": count_parameters(model),
                   "epochs": trainer.state["epoch"], "best_epoch": trainer.state["best_epoch"],
                   "best_val_mae": trainer.state["best_val"] if math.isfinite(trainer.state["best_val"]) else None,
                   "train_windows": int(prep.data.split_starts("train").numel()),
                   "train_seconds": round(time.perf_counter() - t0, 3), "resumed": bool(resume),
                   "device": str(trainer.device), "processes": dist.world, **peak_memory(trainer.device)}
        atomic_write(out / "train_summary.json", json.dumps(summary, indent=1))
    return trainer


def choose_defaults(cfg: RunConfig, data, log=print) -> RunConfig:
    """Settings the data decide, written into ``cfg`` (so ``config.yaml`` records them): stgt's
    ``model.params.residual`` when not given is ``'blend'`` (last value and seasonal average, learned)
    where the seasonal average beats last value on the validation windows, else ``'last'``
    (:func:`stgraph.models.seasonal.choose_residual`)."""
    if cfg.model.name != "stgt" or "residual" in cfg.model.params or target_positions(data) is None:
        return cfg
    from ..models.seasonal import choose_residual

    choice, last_mae, ha_mae = choose_residual(data)
    cfg.model.params = {**cfg.model.params, "residual": choice}
    log(f"stgt residual: {choice} (validation MAE over all steps: last value {last_mae:.4g}, seasonal average "
        f"{ha_mae:.4g}; --set model.params.residual=last|blend chooses)")
    return cfg


def peak_memory(device) -> dict:
    """Peak resident memory of this process (MiB) and, on CUDA, peak allocated device memory (MiB)."""
    import resource
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.device(device).type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


#: config fields a checkpoint may hold a different value of than config.yaml (a resume changed them,
#: or they only say how to run)
_MAY_DIFFER = MAY_CHANGE_ON_RESUME + RUNTIME_SETTINGS


def _check_config_matches(cfg: RunConfig, ckpt: dict, cfg_path: Path, ckpt_path: Path) -> None:
    """config.yaml must agree with the config the checkpoint was trained with."""
    stored = ckpt.get("config")
    if not isinstance(stored, dict):
        return
    try:
        stored_cfg = config_from_dict(stored).to_dict()
    except ConfigError as e:
        raise RunDirError(f"checkpoint '{ckpt_path}' holds an unreadable config ({e}); it is damaged") from None
    diff = [d for d in _config_diff(stored_cfg, cfg.to_dict()) if d[0] not in _MAY_DIFFER]
    if diff:
        what = "; ".join(f"{k}: {b!r} in config.yaml, {a!r} in the checkpoint" for k, a, b in diff[:4])
        raise RunDirError(f"run file '{cfg_path}' disagrees with the checkpoint '{ckpt_path}' ({what}"
                          f"{'; ...' if len(diff) > 4 else ''}); the run directory was edited or mixed up. "
                          f"Restore config.yaml or train again")


def _model_class_for(cfg: RunConfig, model: str | None, run_dir: Path):
    """The model class of a run: a registry name from the run, or an import path from the caller only."""
    from ..models.registry import available_models

    name = cfg.model.name
    if name.lower() in available_models():
        if model is not None and model.lower() != name.lower():
            raise ConfigError(f"--model {model}: the run in '{run_dir}' was trained with model '{name}'")
        return get_model_class(name)
    if model is None:
        raise RunDirError(f"the run in '{run_dir}' uses the user model '{name}', which is imported by path; stgraph "
                          f"never imports a module named in a run file. Pass --model {name} to import it")
    if model != name:
        raise ConfigError(f"--model {model}: the run in '{run_dir}' was trained with model '{name}'; pass that")
    return get_model_class(model)


def load_run(run_dir: str | Path, *, data_path: str | None = None, checkpoint: str = "best.pt",
             device: str | None = None, model: str | None = None) -> Trainer:
    """Rebuild the trainer of a finished run (data re-read from the config, weights from ``checkpoint``).

    With ``data_path`` the series comes from another file with the same sensors
    (for ``predict``); the scaler stays the one fitted at training time. ``model`` is the
    import path of a user model (``pkg.mod:Class``): the run's own files never choose a module
    to import. config.yaml must agree with the checkpoint, and the data (unless ``data_path``)
    and graph must have the fingerprints the run was trained on.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"'{run_dir}' is not a run directory (no config.yaml); train first with "
                          f"stgraph train ... --out {run_dir}")
    check_no_links(run_dir)
    cfg = load_run_config(run_dir / "config.yaml")
    ckpt_path = run_dir / "checkpoints" / checkpoint
    if not ckpt_path.is_file():
        ckpt_path = run_dir / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    _check_config_matches(cfg, ckpt, run_dir / "config.yaml", ckpt_path)
    _model_class_for(cfg, model, run_dir)
    if device:
        cfg.train.device = device
    prep = prepare(cfg, data_path)
    stored = ckpt.get("fingerprint") or {}
    if data_path is None and stored.get("data") not in (None, prep.data.fingerprint()):
        raise RunDirError(f"the data file {cfg.data.path or cfg.data.dataset} changed since '{run_dir}' was trained "
                          f"(fingerprint {prep.data.fingerprint()}, the run's {stored.get('data')}); retrain, or "
                          f"pass the original file")
    if stored.get("graph") not in (None, graph_fingerprint(prep.graph)):
        raise RunDirError(f"the graph {cfg.data.graph or cfg.data.dataset or '(none)'} changed since '{run_dir}' was "
                          f"trained (fingerprint {graph_fingerprint(prep.graph)}, the run's {stored.get('graph')}); "
                          f"its metrics would not belong to the run. Restore the original graph file, or retrain")
    if ckpt.get("scaler"):
        prep.data.set_scaler_state(ckpt["scaler"])
    net = make_model(cfg, prep.data)
    net.load_state_dict(ckpt["model"])
    trainer = Trainer(net, prep.data, prep.graph, cfg.train, None, distribution=cfg.model.distribution)
    trainer.prepared = prep
    trainer.run_config = cfg
    last = run_dir / "checkpoints" / "last.pt"
    trainer.run_progress = dict((ckpt if ckpt_path == last or not last.is_file()
                                 else load_checkpoint(last, map_location="cpu")).get("trainer") or {})
    trainer.run_dir_path = run_dir
    return trainer


def config_from_run(run_dir: str | Path) -> RunConfig:
    return load_run_config(Path(run_dir) / "config.yaml")


__all__ = ["Prepared", "prepare", "train", "load_run", "make_model", "model_sizes", "RunDirError",
           "config_from_dict", "config_from_run", "graph_fingerprint"]
