"""Continue a trained run on new data: ``stgraph update RUN_DIR --data NEW_PATH [--out NEW_RUN]``.

The update is a new run directory (the old one is never touched) whose model starts from the old
run's best weights and is trained with the one :class:`~stgraph.training.trainer.Trainer`:

* on the **newest weeks** of the new file's training split (``weeks``; all of it when shorter),
* at a **small learning rate** (the run's ``train.lr`` times ``lr_scale``, no warm-up) for a few epochs,
* with a **replay buffer**: a share ``replay`` of every batch is drawn from the old run's training
  windows, against forgetting (the old file is re-read; its sensors are put in the new order, a sensor
  it lacks is null there and so out of the loss),
* **keeping the scaler** (the run's training statistics, not refitted) and matching **sensors by id**:
  a sensor of the new file the run knew keeps its embedding rows, a new sensor gets freshly initialised
  ones, a sensor the new file lacks is dropped (every node-indexed tensor is remapped: see
  :func:`remap_nodes`).

``run.json`` of the update records its **lineage**: the run it came from, the data it saw (path and
fingerprint), the sensors added and dropped, and the parent's own lineage.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, RunDirError
from ..files import atomic_write, check_no_links, read_json, run_lock


def remap_nodes(old_state: dict, new_model: torch.nn.Module, old_ids: list[str], new_ids: list[str]) -> dict:
    """``old_state`` (a state dict over ``old_ids`` sensors) as a state dict for ``new_model`` (over ``new_ids``).

    A tensor whose shape matches the new model's is copied, except along a sensor axis; a sensor axis is
    the first axis of size ``len(old_ids)`` whose counterpart in the new model has size ``len(new_ids)``
    (all other axes equal). Along it, rows of sensors in both runs are copied by id; rows of new sensors
    keep ``new_model``'s fresh initialisation.

    Raises:
        ConfigError: a tensor that cannot be mapped (its shape differs beyond the sensor axis).
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
        axis = None
        if not same and old.dim() == fresh.dim():
            for d in range(old.dim()):
                others = [a == b for j, (a, b) in enumerate(zip(old.shape, fresh.shape)) if j != d]
                if old.shape[d] == len(old_ids) and fresh.shape[d] == len(new_ids) and all(others):
                    if "node" in key or old.shape != fresh.shape or d == 0:
                        axis = d
                        break
        if axis is None:
            if old.shape != fresh.shape:
                raise ConfigError(f"cannot carry '{key}' over: shape {tuple(old.shape)} in the run, "
                                  f"{tuple(fresh.shape)} in the updated model")
            out[key] = old.clone()
            continue
        t = fresh.clone()
        idx_new = torch.tensor(kept_new, dtype=torch.long)
        idx_old = torch.tensor(kept_old, dtype=torch.long)
        t.index_copy_(axis, idx_new, old.index_select(axis, idx_old).to(t.dtype))
        out[key] = t
    return out


class ReplayLoader:
    """Batches of the new data's newest training windows mixed with replayed windows of the old data.

    Each batch of ``batch_size`` holds ``batch_size - k`` new windows (in a shuffled pass over
    ``new_starts``) and ``k = round(replay * batch_size)`` old windows drawn at random from
    ``old_starts`` of ``old`` (one gather each, concatenated). Yields :class:`~stgraph.data.dataset.Batch`.
    """

    def __init__(self, new, new_starts: torch.Tensor, old, old_starts: torch.Tensor | None, batch_size: int,
                 replay: float, generator: torch.Generator | None, drop_last: bool = True):
        self.new, self.old = new, old
        self.new_starts, self.old_starts = new_starts, old_starts
        self.k = 0 if old_starts is None or old_starts.numel() == 0 else int(round(replay * batch_size))
        self.b = max(1, batch_size - self.k)
        self.generator = generator
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = int(self.new_starts.numel())
        return n // self.b if self.drop_last else -(-n // self.b)

    def __iter__(self):
        from ..data.dataset import Batch
        from dataclasses import fields

        order = self.new_starts[torch.randperm(self.new_starts.numel(), generator=self.generator)]
        for i in range(len(self)):
            batch = self.new.batch(order[i * self.b:(i + 1) * self.b])
            if self.k:
                pick = torch.randint(0, self.old_starts.numel(), (self.k,), generator=self.generator)
                old = self.old.batch(self.old_starts[pick])
                batch = Batch(*(None if getattr(batch, f.name) is None else
                                torch.cat([getattr(batch, f.name), getattr(old, f.name)])
                                for f in fields(batch)))
            yield batch


class UpdateData:
    """The new :class:`~stgraph.data.ForecastData` whose shuffled ``'train'`` loader (the training passes)
    is a :class:`ReplayLoader` over its newest training windows; everything else is the new data's."""

    def __init__(self, new, old, weeks: float, replay: float):
        self._new, self._old = new, old
        self.replay = float(replay)
        starts = new.split_starts("train")
        ts = new.timestamps.astype("datetime64[ns]")
        if weeks and len(starts):
            last = ts[int(starts[-1])]
            first = last - np.timedelta64(int(weeks * 7 * 86400), "s")
            keep = ts[starts.cpu().numpy()] >= first
            starts = starts[torch.from_numpy(keep).to(starts.device)]
        self.update_starts = starts
        self.old_starts = None if old is None else old.split_starts("train")

    def __getattr__(self, name):
        return getattr(self._new, name)

    def loader(self, split_name: str, batch_size: int, shuffle: bool = False, drop_last: bool = False,
               generator: torch.Generator | None = None, **kwargs):
        if split_name != "train" or not shuffle:  # closed-form fits read the new training windows in order
            return self._new.loader(split_name, batch_size, shuffle=shuffle, drop_last=drop_last,
                                    generator=generator, **kwargs)
        return ReplayLoader(self._new, self.update_starts, self._old, self.old_starts, batch_size, self.replay,
                            generator, drop_last=drop_last)


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
            f"least a week of new data"), stacklevel=3)


def _default_out(run_dir: Path) -> Path:
    k = 1
    while (run_dir.parent / f"{run_dir.name}-update{k}").exists():
        k += 1
    return run_dir.parent / f"{run_dir.name}-update{k}"


def update_run(run_dir, data_path, out=None, *, graph: str | None = None, weeks: float = 2.0,
               lr_scale: float = 0.1, epochs: int = 3, replay: float = 0.25, seed: int | None = None,
               progress: bool = True, log=print):
    """Continue the run in ``run_dir`` on ``data_path`` into a new run directory ``out`` (module docstring).

    Args:
        run_dir: a finished run (``stgraph train``).
        data_path: the new series file (its channels must be the run's).
        out: the new run directory (default ``RUN_DIR-updateK``, the first free ``K``).
        graph: the road graph of the new sensors (default: the run's graph file).
        weeks: train on the windows of the newest ``weeks`` weeks of the new training split (0: all).
        lr_scale: learning rate = the run's ``train.lr`` times this.
        epochs: passes over those windows.
        replay: share of each batch replayed from the run's own training windows (0: none).
        seed: the update's seed (default: the run's).

    Returns:
        ``(trainer, summary)``: the finished :class:`~stgraph.training.trainer.Trainer` and the dict
        written to ``out/update.json``.

    Raises:
        RunDirError / ConfigError: not a run, ``out`` exists, channels differ, a tensor cannot be carried over.
    """
    from ..training.checkpoint import load_checkpoint
    from ..training.run import (_absolute, _start_run_dir, graph_fingerprint, load_series_and_graph, make_model,
                                prepare, report_gates)
    from ..training.layout import RunFiles
    from ..training.trainer import Trainer, seed_everything
    from ..config import load_run_config, with_fields
    from ..data import ForecastData
    from ..models.registry import count_parameters

    run_dir = Path(run_dir)
    files = RunFiles(run_dir)
    if not files.config.is_file():
        raise RunDirError(f"'{run_dir}' is not a run directory (no config.yaml); train first with stgraph train")
    if not 0 <= replay < 1:
        raise ConfigError(f"--replay = {replay}: expected a share of each batch in [0, 1)")
    if not (lr_scale > 0 and epochs >= 1 and weeks >= 0):
        raise ConfigError(f"--lr-scale {lr_scale}, --epochs {epochs}, --weeks {weeks}: expected lr-scale > 0, "
                          f"epochs >= 1, weeks >= 0")
    check_no_links(run_dir)
    out = Path(out) if out is not None else _default_out(run_dir)
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"--out '{out}' already exists; an update writes a new run directory: choose another")
    old_cfg = load_run_config(files.config)
    ck_path = files.best
    ck = load_checkpoint(ck_path if ck_path.is_file() else files.last)
    old_info = read_json(files.info, what="run file", error=RunDirError)
    old_ids = [str(s) for s in old_info["sensor_ids"]]

    cfg = with_fields(old_cfg, {
        "data.path": str(data_path), "data.dataset": None, **({"data.graph": graph} if graph is not None else {}),
        "train.lr": old_cfg.train.lr * lr_scale, "train.epochs": int(epochs), "train.warmup_epochs": 0,
        "train.patience": 0, "train.max_batches": 0, "train.progress": progress,
        **({"train.seed": int(seed)} if seed is not None else {})})
    cfg = _absolute(cfg).validate()
    seed_everything(cfg.train.seed)
    prep = prepare(cfg, covariate_stats=ck.get("covariates"))
    new_ids = list(prep.series.sensor_ids)
    if list(prep.series.channels) != list(old_info["channels"]):
        raise ConfigError(f"{data_path}: channels {prep.series.channels}, the run's {old_info['channels']}; an update "
                          f"needs the same channels")
    if ck.get("scaler"):
        prep.data.set_scaler_state(ck["scaler"])
    old_data = None
    if replay > 0:
        old_series, _, _ = load_series_and_graph(old_cfg)
        d = old_cfg.data
        old_on_new = _old_on_new_sensors(old_series, new_ids)
        covariates = None
        if d.covariates:
            from ..io.covariates import read_covariates
            covariates = read_covariates(d.covariates, old_on_new, None, d.covariate_tolerance)
        old_data = ForecastData.from_series(old_on_new, input_len=d.input_len, horizon=d.horizon, stride=d.stride,
                                            split=tuple(d.split), target=d.target, covariates=covariates,
                                            covariate_stats=ck.get("covariates"))
        if ck.get("scaler"):
            old_data.set_scaler_state(ck["scaler"])
    model = make_model(cfg, prep.data)
    model.load_state_dict(remap_nodes(ck["model"], model, old_ids, new_ids))
    data = UpdateData(prep.data, old_data, weeks, replay)
    _warn_partial_week(model, prep.data, data_path)
    fingerprint = {"data": prep.data.fingerprint(), "graph": graph_fingerprint(prep.graph)}
    added = [s for s in new_ids if s not in set(old_ids)]
    dropped = [s for s in old_ids if s not in set(new_ids)]
    step = {"run": str(run_dir.resolve()), "data": os.path.abspath(str(data_path)),
            "data_fingerprint": fingerprint["data"], "checkpoint": str(ck_path.name),
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "added_sensors": added, "dropped_sensors": dropped}
    info = {"model": cfg.model.name, "parameters": count_parameters(model), "sensor_ids": new_ids,
            "channels": list(prep.series.channels), "target_channels": list(prep.data.target_channels),
            "fingerprint": fingerprint, "source": os.path.abspath(str(prep.series.source)),
            "lineage": [step] + list(old_info.get("lineage", []))}
    extra = {"config": cfg.to_dict(), "fingerprint": fingerprint}
    if prep.data.exogenous is not None:
        extra["covariates"] = prep.data.exogenous.state_dict()
    with run_lock(out):
        _start_run_dir(out, cfg, info)
        trainer = Trainer(model, data, prep.graph, cfg.train, out, extra_state=extra)
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
        summary = {"from_run": step["run"], "data": step["data"], "added_sensors": added,
                   "dropped_sensors": dropped, "update_windows": int(data.update_starts.numel()),
                   "replay_share": replay if old_data is not None else 0.0, "epochs": int(epochs),
                   "lr": cfg.train.lr, "seconds": round(seconds, 3), "best_val_mae": trainer.state["best_val"]}
        atomic_write(RunFiles(out).update, json.dumps(summary, indent=1))
        if prep.data.exogenous is not None:
            report_gates(trainer, out, log)
    log(f"updated {run_dir} on {data_path}: {summary['update_windows']} new windows, replay {summary['replay_share']}, "
        f"{epochs} epoch(s) at lr {cfg.train.lr:.2e} in {seconds:.1f} s; sensors added {len(added)}, dropped "
        f"{len(dropped)}; run directory {out}")
    return trainer, summary
