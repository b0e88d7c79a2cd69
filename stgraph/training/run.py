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

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, config_from_dict, load_config
from ..errors import ConfigError, StgraphError
from ..models.registry import build_model, count_parameters, get_model_class
from .checkpoint import load_checkpoint
from .trainer import Trainer, seed_everything


class RunDirError(StgraphError, ValueError):
    """A run directory is missing, incomplete or holds a different run."""


@dataclass
class Prepared:
    """Everything a model needs, derived from a :class:`RunConfig`."""

    series: object          # stgraph.io.Series
    nx_graph: object        # networkx.DiGraph or None
    graph: object           # torch_geometric.data.Data
    data: object            # stgraph.data.ForecastData


def graph_fingerprint(graph) -> str:
    h = hashlib.sha256()
    h.update(graph.edge_index.cpu().numpy().tobytes())
    h.update(graph.edge_weight.cpu().numpy().astype(np.float32).tobytes())
    h.update(str(int(graph.num_nodes)).encode())
    return h.hexdigest()[:16]


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
        series = read_series(path, null_value=d.null_value, start=d.start, freq=d.freq)
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
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


def _check_run_dir(out: Path, cfg: RunConfig, resume: bool, overwrite: bool) -> None:
    saved = out / "config.yaml"
    if resume:
        if not (out / "checkpoints" / "last.pt").is_file():
            raise RunDirError(f"cannot resume: '{out}/checkpoints/last.pt' does not exist; start without --resume")
        return
    if saved.exists() and not overwrite:
        old = load_config(saved)
        diff = _config_diff(old.to_dict(), cfg.to_dict())
        what = ("a run with the same config" if not diff else
                "a different run (" + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in diff[:3])
                + ("; ..." if len(diff) > 3 else "") + ")")
        raise RunDirError(f"run directory '{out}' already holds {what}; pass --resume to continue it, "
                          f"--overwrite to replace it, or choose another --out")
    if overwrite and out.exists():
        for name in ("metrics.csv", "evaluation.json", "run.json", "config.yaml"):
            (out / name).unlink(missing_ok=True)
        for p in (out / "checkpoints").glob("*.pt"):
            p.unlink()


def train(cfg: RunConfig, out: str | Path | None, *, resume: bool = False, overwrite: bool = False) -> Trainer:
    """Train ``cfg`` into run directory ``out``; returns the finished :class:`Trainer`."""
    cfg.validate()
    get_model_class(cfg.model.name)  # an unknown model fails before any file is read
    out = Path(out) if out is not None else None
    if out is not None:
        _check_run_dir(out, cfg, resume, overwrite)
        if resume:
            saved = load_config(out / "config.yaml")
            saved.train.epochs = cfg.train.epochs  # allow extending a run
            cfg = saved
    seed_everything(cfg.train.seed)
    prep = prepare(cfg)
    seed_everything(cfg.train.seed)
    model = make_model(cfg, prep.data)
    fingerprint = {"data": prep.data.fingerprint(), "graph": graph_fingerprint(prep.graph)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume:
            ck = load_checkpoint(out / "checkpoints" / "last.pt")
            if ck.get("fingerprint") and ck["fingerprint"] != fingerprint:
                raise RunDirError(f"cannot resume '{out}': the data or graph changed since the run started "
                                  f"(fingerprint {ck['fingerprint']} != {fingerprint})")
        cfg.to_yaml(out / "config.yaml")
        info = {"model": cfg.model.name, "parameters": count_parameters(model),
                "sensor_ids": list(prep.series.sensor_ids), "channels": list(prep.series.channels),
                "target_channels": list(prep.data.target_channels), "fingerprint": fingerprint,
                "source": str(prep.series.source)}
        (out / "run.json").write_text(json.dumps(info, indent=1))
    trainer = Trainer(model, prep.data, prep.graph, cfg.train, out,
                      extra_state={"config": cfg.to_dict(), "fingerprint": fingerprint})
    trainer.prepared = prep
    t0 = time.perf_counter()
    trainer.fit(resume=resume)
    if out is not None:
        summary = {"model": cfg.model.name, "parameters": count_parameters(model),
                   "epochs": trainer.state["epoch"], "best_epoch": trainer.state["best_epoch"],
                   "best_val_mae": trainer.state["best_val"] if math.isfinite(trainer.state["best_val"]) else None,
                   "train_windows": int(prep.data.split_starts("train").numel()),
                   "train_seconds": round(time.perf_counter() - t0, 3), "resumed": bool(resume),
                   "device": str(trainer.device), **peak_memory(trainer.device)}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return trainer


def peak_memory(device) -> dict:
    """Peak resident memory of this process (MiB) and, on CUDA, peak allocated device memory (MiB)."""
    import resource
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.device(device).type == "cuda":
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def load_run(run_dir: str | Path, *, data_path: str | None = None, checkpoint: str = "best.pt",
             device: str | None = None) -> Trainer:
    """Rebuild the trainer of a finished run (data re-read from the config, weights from ``checkpoint``).

    With ``data_path`` the series comes from another file with the same sensors
    (for ``predict``); the scaler stays the one fitted at training time.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"'{run_dir}' is not a run directory (no config.yaml); train first with "
                          f"stgraph train ... --out {run_dir}")
    cfg = load_config(run_dir / "config.yaml")
    if device:
        cfg.train.device = device
    ckpt_path = run_dir / "checkpoints" / checkpoint
    if not ckpt_path.is_file():
        ckpt_path = run_dir / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(ckpt_path)
    prep = prepare(cfg, data_path)
    if data_path is None and ckpt.get("fingerprint", {}).get("data") not in (None, prep.data.fingerprint()):
        raise RunDirError(f"the data file {cfg.data.path or cfg.data.dataset} changed since '{run_dir}' was trained "
                          f"(fingerprint differs); retrain, or pass the original file")
    if ckpt.get("scaler"):
        prep.data.set_scaler_state(ckpt["scaler"])
    model = make_model(cfg, prep.data)
    model.load_state_dict(ckpt["model"])
    trainer = Trainer(model, prep.data, prep.graph, cfg.train, None)
    trainer.prepared = prep
    trainer.run_config = cfg
    return trainer


def config_from_run(run_dir: str | Path) -> RunConfig:
    return load_config(Path(run_dir) / "config.yaml")


__all__ = ["Prepared", "prepare", "train", "load_run", "make_model", "model_sizes", "RunDirError",
           "config_from_dict", "config_from_run", "graph_fingerprint"]
