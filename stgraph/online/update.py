"""Continue a trained run on new data: ``update_run(run_dir, data_path, out)`` (``stgraph update``).

The update is a new run directory (the old one is never touched) whose model starts from the old
run's best weights and is trained with the one :class:`~stgraph.training.trainer.Trainer`:

* on the **newest weeks** of the new file's training split (``weeks``; all of it when shorter),
* at a **small learning rate** (the run's ``train.lr`` times ``lr_scale``, no warm-up) for a few epochs,
* with a **replay buffer**: a share ``replay`` of every batch is drawn from the old run's training
  windows, against forgetting (the old file is re-read; its sensors are put in the new order, a sensor
  it lacks is null there and so out of the loss): the trainer's batch source
  (:class:`~stgraph.online.replay.ReplayBatches`),
* **keeping the scaler** (the run's training statistics, not refitted) and matching **sensors by id**:
  a sensor of the new file the run knew keeps its embedding rows, a new sensor gets freshly initialised
  ones, a sensor the new file lacks is dropped (every tensor with a sensor axis,
  :func:`stgraph.training.axes.sensor_axes`, is remapped: see :func:`remap_nodes`).

``run.json`` of the update records its **lineage**: the run it came from, the data it saw (path and
fingerprint), the sensors added and dropped, and the parent's own lineage. The run directory is written by
the one run writer (:mod:`stgraph.training.writer`). Messages go to ``logging.getLogger(__name__)``.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, RunDirError
from ..files import atomic_write, check_no_links, read_json, run_lock

log = logging.getLogger(__name__)


def _carry(old: torch.Tensor, fresh: torch.Tensor, axes: list[int], kept_old: list[int],
           kept_new: list[int]) -> torch.Tensor:
    """``fresh`` with the rows of the kept sensors copied from ``old`` along every sensor axis in ``axes``."""
    t = fresh.clone()
    idx_new = torch.tensor(kept_new, dtype=torch.long)
    idx_old = torch.tensor(kept_old, dtype=torch.long)
    if len(axes) == 1:
        return t.index_copy_(axes[0], idx_new, old.index_select(axes[0], idx_old).to(t.dtype))
    src = old
    for d in axes:
        src = src.index_select(d, idx_old)
    grids = torch.meshgrid(*[idx_new if d in axes else torch.arange(t.shape[d]) for d in range(t.dim())],
                           indexing="ij")
    return t.index_put_(grids, src.to(t.dtype))


def remap_nodes(old_state: dict, new_model: torch.nn.Module, old_ids: list[str], new_ids: list[str],
                axes: dict[str, list[int]]) -> dict:
    """``old_state`` (a state dict over ``old_ids`` sensors) as a state dict for ``new_model`` (over ``new_ids``).

    ``axes``: each key's sensor axes (:func:`stgraph.training.axes.sensor_axes` of the model). Along them,
    rows of sensors in both runs are copied by id and rows of new sensors keep ``new_model``'s fresh
    initialisation; a tensor without a sensor axis is copied as it is.

    Raises:
        ConfigError: a tensor that cannot be mapped (its shape differs beyond its sensor axes).
    """
    new_state = new_model.state_dict()
    pos_old = {s: i for i, s in enumerate(old_ids)}
    kept_new = [i for i, s in enumerate(new_ids) if s in pos_old]
    kept_old = [pos_old[new_ids[i]] for i in kept_new]
    same = old_ids == new_ids
    out = {}
    for key, fresh in new_state.items():
        old = old_state.get(key)
        if old is None:
            out[key] = fresh
            continue
        dims = [] if same else list(axes.get(key, ()))
        others = [d for d in range(fresh.dim()) if d not in dims]
        if old.dim() != fresh.dim() or any(old.shape[d] != fresh.shape[d] for d in others) or \
                any(old.shape[d] != len(old_ids) or fresh.shape[d] != len(new_ids) for d in dims):
            raise ConfigError(f"cannot carry '{key}' over: shape {tuple(old.shape)} in the run, "
                              f"{tuple(fresh.shape)} in the updated model")
        out[key] = _carry(old, fresh, dims, kept_old, kept_new) if dims else old.clone()
    return out


def _old_on_new_sensors(series, new_ids: list[str]):
    """The run's series with its sensors in ``new_ids`` order; a sensor it lacks is null throughout."""
    from ..io.series import Series

    pos = {s: i for i, s in enumerate(series.sensor_ids)}
    v = np.full((series.num_steps, len(new_ids), series.num_channels), series.null_value, dtype=np.float32)
    have = [i for i, s in enumerate(new_ids) if s in pos]
    v[:, have] = series.values[:, [pos[new_ids[i]] for i in have]]
    return Series(v, series.timestamps, new_ids, series.channels, series.null_value, source=series.source,
                  null_origin=series.null_origin)


def _warn_partial_week(model, data, data_path) -> None:
    """Closed-form parts (stgt's seasonal residual) are refitted on the new file's training rows by the trainer;
    warn when those rows miss a day of the week (that day's seasonal average then falls back to other days)."""
    if getattr(model, "seasonal", None) is None:
        return
    from ..data.split import training_rows
    from ..errors import StgraphWarning

    lo, hi = training_rows(data.split, data.windows.span)
    days = sorted(set(data.dow[lo:hi].cpu().tolist()))
    if len(days) < 7:
        import warnings
        names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        warnings.warn(StgraphWarning(
            f"{data_path}: the update's training rows cover only {[names[d] for d in days]}; the run's seasonal "
            f"residual is refitted on them, so the other days' seasonal average falls back to these days. Pass at "
            f"least a week of new data"), stacklevel=4)


def _default_out(run_dir: Path) -> Path:
    k = 1
    while (run_dir.parent / f"{run_dir.name}-update{k}").exists():
        k += 1
    return run_dir.parent / f"{run_dir.name}-update{k}"


def _check_arguments(run_dir: Path, out, replay: float, lr_scale: float, epochs: int, weeks: float) -> Path:
    """The update's run directory (``out`` or the default), after checking the arguments."""
    from ..training.layout import RunFiles

    if not RunFiles(run_dir).config.is_file():
        raise RunDirError(f"'{run_dir}' is not a run directory (no config.yaml); train a run first")
    if not 0 <= replay < 1:
        raise ConfigError(f"replay = {replay}: expected a share of each batch in [0, 1)")
    if not (lr_scale > 0 and epochs >= 1 and weeks >= 0):
        raise ConfigError(f"lr_scale = {lr_scale}, epochs = {epochs}, weeks = {weeks}: expected lr_scale > 0, "
                          f"epochs >= 1, weeks >= 0")
    check_no_links(run_dir)
    out = Path(out) if out is not None else _default_out(run_dir)
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"out = '{out}' already exists; an update writes a new run directory: choose "
                          f"another")
    return out


def _old_data(old_cfg, new_ids: list[str], ck: dict):
    """The run's own training data with its sensors in the new order (what replay draws from)."""
    from ..data import ForecastData
    from ..training.prepare import dynamic_graph_data, load_series_and_graph

    old_series, _, graph = load_series_and_graph(old_cfg)
    d = old_cfg.data
    old_on_new = _old_on_new_sensors(old_series, new_ids)
    # a graph that changes over time: its periods on the old steps, sensors in the new order
    dynamic = None if getattr(graph, "dynamic", None) is None else dynamic_graph_data(d, old_on_new).dynamic
    covariates = None
    if d.covariates:
        from ..data.reports import read_sources
        covariates = read_sources(d.covariates, old_on_new, None, None, d)
    old_data = ForecastData.from_series(old_on_new, input_len=d.input_len, horizon=d.horizon, stride=d.stride,
                                        split=tuple(d.split), split_gap=d.split_gap, target=d.target,
                                        covariates=covariates, dynamic_graph=dynamic,
                                        covariate_stats=ck.get("covariates"))
    if ck.get("scaler"):
        old_data.set_scaler_state(ck["scaler"])
    return old_data


def _lineage_step(run_dir: Path, data_path, fingerprint: dict, ck_path: Path, old_ids, new_ids) -> dict:
    added = [s for s in new_ids if s not in set(old_ids)]
    dropped = [s for s in old_ids if s not in set(new_ids)]
    return {"run": str(run_dir.resolve()), "data": os.path.abspath(str(data_path)),
            "data_fingerprint": fingerprint["data"], "checkpoint": str(ck_path.name),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "added_sensors": added, "dropped_sensors": dropped}


def update_run(run_dir, data_path, out=None, *, graph: str | None = None, weeks: float = 2.0,
               lr_scale: float = 0.1, epochs: int = 3, replay: float = 0.25, seed: int | None = None,
               progress: bool = True):
    """Continue the run in ``run_dir`` on ``data_path`` into a new run directory ``out`` (module docstring).

    Args:
        run_dir: a finished run (``stgraph train``).
        data_path: the new series file: the run's interval and channels, at least one of its sensors, readings
            that do not end before the run's.
        out: the new run directory (default ``RUN_DIR-updateK``, the first free ``K``).
        graph: the road graph of the new sensors (default: the run's graph file).
        weeks: train on the windows of the newest ``weeks`` weeks of the new training split (0: all).
        lr_scale: learning rate = the run's ``train.lr`` times this.
        epochs: passes over those windows.
        replay: share of each batch replayed from the run's own training windows (0: none).
        seed: the update's seed (default: the run's).
        progress: show a progress bar.

    Returns:
        ``(trainer, summary)``: the finished :class:`~stgraph.training.trainer.Trainer` and the dict
        written to ``out/update.json``.

    Raises:
        RunDirError / ConfigError: not a run, ``out`` exists, a tensor cannot be carried over.
        SeriesError: the new data do not fit the run (:func:`stgraph.data.fit.check_fits`): another interval or
            other channels, no sensor in common, or readings that end before the run's.
    """
    from ..config import load_run_config, with_fields
    from ..training.checkpoint import load_checkpoint
    from ..training.layout import RunFiles
    from ..training.resume import absolute_paths
    from ..training.trainer import seed_everything

    run_dir = Path(run_dir)
    out = _check_arguments(run_dir, out, replay, lr_scale, epochs, weeks)
    files = RunFiles(run_dir)
    old_cfg = load_run_config(files.config)
    ck_path = files.best  # the lineage names best.pt, even where a run without one is continued from last.pt
    ck = load_checkpoint(ck_path if ck_path.is_file() else files.last)
    old_info = read_json(files.info, what="run file", error=RunDirError)
    cfg = with_fields(old_cfg, {
        "data.path": str(data_path), "data.dataset": None, **({"data.graph": graph} if graph is not None else {}),
        "train.lr": old_cfg.train.lr * lr_scale, "train.epochs": int(epochs), "train.warmup_epochs": 0,
        "train.patience": 0, "train.max_batches": 0, "train.progress": progress,
        **({"train.seed": int(seed)} if seed is not None else {})})
    cfg = absolute_paths(cfg).validate()
    seed_everything(cfg.train.seed)
    return _update(run_dir, data_path, out, cfg, old_cfg, ck, ck_path, old_info, weeks, replay)


def _update(run_dir: Path, data_path, out: Path, cfg, old_cfg, ck: dict, ck_path: Path, old_info: dict,
            weeks: float, replay: float):
    """The update itself, from the new config on (:func:`update_run`)."""
    from ..data.fit import check_fits
    from ..runtime import configure_process
    from ..training.axes import sensor_axes
    from ..training.checks import report_gates
    from ..training.fit_check import run_trained_on
    from ..training.forecaster import Forecaster
    from ..training.layout import RunFiles
    from ..training.prepare import make_model, model_sizes, prepare
    from ..training.trainer import Trainer
    from ..training.writer import RunRecord, RunWriter
    from .replay import ReplayBatches

    trained = run_trained_on(run_dir, old_cfg, old_info)
    prep = prepare(cfg, covariate_stats=ck.get("covariates"),
                   fits=lambda series: check_fits(series, trained, sensors="common", newer=True))
    old_ids, new_ids = [str(s) for s in old_info["sensor_ids"]], list(prep.series.sensor_ids)
    if ck.get("scaler"):
        prep.data.set_scaler_state(ck["scaler"])
    old_data = _old_data(old_cfg, new_ids, ck) if replay > 0 else None
    model = make_model(cfg, prep.data)
    axes = sensor_axes(cfg.model.name, model_sizes(prep.data, cfg.model.probabilistic), cfg.model.params)
    model.load_state_dict(remap_nodes(ck["model"], model, old_ids, new_ids, axes))
    batches = ReplayBatches(prep.data, old_data, weeks, replay)
    _warn_partial_week(model, prep.data, data_path)
    record = RunRecord.of(cfg, prep)
    step = _lineage_step(run_dir, data_path, record.fingerprint, ck_path, old_ids, new_ids)
    info = record.info(model, prep, lineage=[step] + list(old_info.get("lineage", [])))
    with run_lock(out):
        writer = RunWriter(out, record)
        writer.start(info)
        forecaster = Forecaster(model, prep.data, prep.graph, cfg.train, cfg.model.distribution, cfg.data.nonnegative)
        configure_process(forecaster.device, cfg.train.threads)
        trainer = Trainer(forecaster, cfg.train, batches=batches, writer=writer)
        t0 = time.perf_counter()
        trainer.fit()
        trainer.restore_best()  # the best validation epoch's weights, as the updated run reopens with
        seconds = time.perf_counter() - t0
        summary = {"from_run": step["run"], "data": step["data"], "added_sensors": step["added_sensors"],
                   "dropped_sensors": step["dropped_sensors"], "update_windows": int(batches.update_starts.numel()),
                   "replay_share": replay if old_data is not None else 0.0, "epochs": cfg.train.epochs,
                   "lr": cfg.train.lr, "seconds": round(seconds, 3), "best_val_mae": trainer.state["best_val"]}
        atomic_write(RunFiles(out).update, json.dumps(summary, indent=1))
        if prep.data.exogenous is not None:
            report_gates(forecaster, out)
    log.info(f"updated {run_dir} on {data_path}: {summary['update_windows']} new windows, replay "
             f"{summary['replay_share']}, {cfg.train.epochs} epoch(s) at lr {cfg.train.lr:.2e} in {seconds:.1f} s; "
             f"sensors added {len(step['added_sensors'])}, dropped {len(step['dropped_sensors'])}; run directory {out}")
    return trainer, summary
