"""The federation's folders: partition the data, write each client's folder, read a client folder back.

A client folder (``OUT/client_<i>``, :class:`~.layout.ClientFiles`) is an ordinary stgraph run directory
whose ``config.yaml`` points at the client's own files in ``data/`` (its sensors' series and the road
graph among them): ``stgraph evaluate / predict / plot`` work on it. Raw series never leave it; the
client sends only the *shared* weights (and scalar metrics). Its personalised weights
(:mod:`.personal`) stay in the folder's checkpoints.

Flower's simulation engine creates a client object per round on any worker, so the folder is the
client's memory: weights are read from ``checkpoints/last.pt`` at the start of each call and written
back at its end.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import networkx as nx
import numpy as np

from ..config import RunConfig, load_config, with_fields
from ..errors import ConfigError, RunDirError, StgraphWarning
from ..files import atomic_write
from ..training.prepare import Prepared, load_series_and_graph, prepare
from .config import FINETUNE_LR, FederatedConfig, save_federated
from .layout import ClientFiles, FederationFiles
from .partition import cut_edges, load_partition, write_partition


def client_sensors(labels: np.ndarray, sensor_ids: Sequence[str], client: int, graph: nx.DiGraph | None,
                   border_hops: int = 0) -> tuple[list[str], list[str]]:
    """``(own, border)`` sensor ids of ``client``.

    ``own`` are the sensors with ``labels == client`` (series order); ``border`` are
    foreign sensors within ``border_hops`` road hops (either direction) of them,
    which join the client's graph without data.
    """
    ids = [str(s) for s in sensor_ids]
    own = [s for s, c in zip(ids, labels) if c == client]
    if not border_hops or graph is None:
        return own, []
    und = graph.to_undirected(as_view=True)
    near = set()
    for s in own:
        near |= set(nx.single_source_shortest_path_length(und, s, cutoff=border_hops))
    mine = set(own)
    return own, [s for s in ids if s in near and s not in mine]


def _clear(files: ClientFiles) -> None:
    """Remove what an earlier federation left in the client folder (a new federation starts from scratch)."""
    stale_files, stale_folders = files.stale()
    for stale in stale_files:
        stale.unlink(missing_ok=True)
    for stale in stale_folders:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)


def set_aside(files: ClientFiles) -> None:
    """Move what an earlier federation left in the client folder (:meth:`~.layout.ClientFiles.stale`) into
    ``.previous/``, deleting nothing: :func:`restore_previous` puts it back if the new federation fails,
    :func:`discard_previous` removes it once the new one has finished. A ``.previous/`` left by a run that
    was killed holds the last finished state: it is restored first."""
    restore_previous(files.root)
    stale_files, stale_folders = files.stale()
    for stale in [*stale_files, *stale_folders]:
        if stale.exists() and not stale.is_symlink():
            target = files.previous / stale.relative_to(files.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stale, target)


def restore_previous(client_dir: str | Path) -> None:
    """Put what :func:`set_aside` moved back in place (over what the failed run wrote), if anything."""
    files = ClientFiles(client_dir)
    if not files.previous.is_dir() or files.previous.is_symlink():
        return
    _, folders = files.stale()
    kept_folders = [files.previous / d.name for d in folders]
    moves = [d for d in kept_folders if d.is_dir()]
    moves += [f for f in files.previous.rglob("*") if f.is_file() and not any(d in f.parents for d in kept_folders)]
    for kept in moves:
        target = files.root / kept.relative_to(files.previous)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(kept, target)
    shutil.rmtree(files.previous)


def discard_previous(client_dir: str | Path) -> None:
    """Remove what :func:`set_aside` kept, once the new federation has finished."""
    previous = ClientFiles(client_dir).previous
    if previous.is_dir() and not previous.is_symlink():
        shutil.rmtree(previous)


def write_client(out: str | Path, client: int, run_cfg: RunConfig, series, graph: nx.DiGraph | None,
                 own: Sequence[str], border: Sequence[str], local_epochs: int, personal: Sequence[str] = (),
                 finetune_epochs: int = 0, finetune_lr: float = FINETUNE_LR, local_blend_epochs: int = 0,
                 local_scheduler: str = "cosine", keep_previous: bool = False) -> Path:
    """Create the client folder ``out`` (an ordinary run directory) from the client's part of the data.

    Writes ``data/series.h5`` (the ``own`` sensors' readings and, for ``border``
    sensors, the null value at every step), ``data/graph.json`` (road links among
    them), ``config.yaml`` (``run_cfg`` pointing at those files, ``train.epochs =
    local_epochs``, constant learning rate, one CPU thread) and ``client.json`` (its sensors, the
    personalised layers, the fine-tuning after the last round, :func:`~.finetune.finetune_client`, and the local
    model's epochs and schedule, :mod:`.local`; 0 epochs: no local model). What an earlier federation left
    there is removed, or with ``keep_previous`` only set aside (:func:`set_aside`).

    Args:
        series: the full :class:`~stgraph.io.Series` (``values [T, N, C]``); only the
            client's columns are written.
    """
    from ..graph import write_graph
    from ..io import write_series
    from ..io.series import Series

    files = ClientFiles(out)
    files.data.mkdir(parents=True, exist_ok=True)
    set_aside(files) if keep_previous else _clear(files)
    ids = list(own) + list(border)
    sub = series.select_sensors(ids)
    values = sub.values.copy()
    values[:, len(own):] = sub.null_value
    sub = Series(values, sub.timestamps, ids, sub.channels, sub.null_value, source=None)
    write_series(sub, files.series)
    graph_file = None
    if graph is not None:
        sg = nx.DiGraph(graph.subgraph(ids))
        sg.graph = {}
        write_graph(sg, files.graph)
        graph_file = str(files.graph.resolve())
    cfg = with_fields(run_cfg, {
        "data.path": str(files.series.resolve()), "data.dataset": None, "data.root": None,
        "data.graph": graph_file, "train.epochs": local_epochs, "train.patience": 0, "train.scheduler": "none",
        "train.warmup_epochs": 0, "train.progress": False, "train.threads": run_cfg.train.threads or 1})
    cfg.validate()
    cfg.to_yaml(files.config)
    atomic_write(files.client_info, json.dumps({"partition_id": client, "own_sensors": list(own),
                                                "border_sensors": list(border), "personal": list(personal),
                                                "finetune_epochs": int(finetune_epochs),
                                                "finetune_lr": float(finetune_lr),
                                                "local_blend_epochs": int(local_blend_epochs),
                                                "local_scheduler": local_scheduler}, indent=1))
    return files.root


@dataclass(frozen=True)
class ClientFolder:
    """A client folder read back: its run config, its prepared data and its ``client.json``."""

    config: RunConfig
    prepared: Prepared
    info: dict

    @property
    def partition_id(self) -> int:
        return int(self.info["partition_id"])


_CACHE: dict[str, ClientFolder] = {}


def load_client(client_dir: str | Path) -> ClientFolder:
    """The client folder ``client_dir`` (:class:`ClientFolder`), cached per process (data are read once)."""
    files = ClientFiles(client_dir)
    key = str(files.root.resolve())
    if key not in _CACHE:
        cfg = load_config(files.config).validate()
        info = json.loads(files.client_info.read_text())
        with warnings.catch_warnings():  # border sensors have no reading by design
            if info["border_sensors"]:
                warnings.simplefilter("ignore", StgraphWarning)
            prep = prepare(cfg)
        _CACHE[key] = ClientFolder(cfg, prep, info)
    return _CACHE[key]


def prepare_out(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse to mix two federations in ``out``; with ``overwrite`` clear the old one's folders."""
    files = FederationFiles(out)
    if files.config.exists():
        if not overwrite:
            raise RunDirError(f"'{files.root}' already holds a federated run ({files.config.name}); pass "
                              f"overwrite=True to replace it, or choose another out")
        folders, old = files.written()
        for d in folders:
            shutil.rmtree(d)
        for f in old:
            f.unlink(missing_ok=True)
    return files.root


def _refuse_dynamic_graph(run_cfg: RunConfig) -> None:
    """A federation partitions one road graph into clients' subgraphs; a graph that changes over time has none."""
    from ..graph.dynamic import is_dynamic_table

    g = run_cfg.data.graph
    if g and not run_cfg.data.dataset and is_dynamic_table(g):
        raise ConfigError(f"data.graph = '{g}' changes over time (a time column, or one graph per period); a "
                          f"federated run partitions one static graph into the clients' subgraphs and cannot take "
                          f"it yet: pass a static graph (e.g. its mean over time: the mobility_mean.csv `stgraph data "
                          f"synth --dynamic-graph` writes beside it), or train it centrally with stgraph train")


def setup(fed: FederatedConfig, run_cfg: RunConfig, out: str | Path, clients: list[int] | None = None,
          keep_previous: bool = False) -> dict:
    """Partition the data and write the client folders (``clients``: only these, default all;
    ``keep_previous``: an earlier federation's state is set aside, not deleted, see :func:`write_client`).

    Returns ``{'labels': [N], 'sensor_ids': [...], 'client_dirs': [...], 'cut_edges': int}``.
    """
    fed = fed.validate()
    run_cfg.validate()
    if fed.local_blend and run_cfg.model.probabilistic:
        raise ConfigError("federated.local_blend blends point forecasts, and model.probabilistic is on; drop one "
                          "of the two")
    _refuse_dynamic_graph(run_cfg)
    files = FederationFiles(out)
    files.root.mkdir(parents=True, exist_ok=True)
    series, nx_graph, _ = load_series_and_graph(run_cfg)
    if nx_graph is not None and fed.partition == "by-region" and run_cfg.data.graph:
        nx_graph.graph.setdefault("source", run_cfg.data.graph)
    labels = load_partition(fed, series, nx_graph)
    write_partition(files.partition, series.sensor_ids, labels)
    save_federated(files.config, fed, run_cfg)
    dirs = []
    for c in range(fed.clients):
        d = files.client(c).root
        dirs.append(d)
        if clients is not None and c not in clients:
            continue
        own, border = client_sensors(labels, series.sensor_ids, c, nx_graph, fed.border_hops)
        write_client(d, c, run_cfg, series, nx_graph, own, border, fed.local_epochs, fed.personal,
                     finetune_epochs=fed.finetune_epochs, finetune_lr=fed.finetune_lr,
                     local_blend_epochs=fed.rounds * fed.local_epochs if fed.local_blend else 0,
                     local_scheduler="cosine" if fed.lr_schedule == "cosine" else "none", keep_previous=keep_previous)
    cuts = cut_edges(nx_graph, series.sensor_ids, labels) if nx_graph is not None else None
    return {"labels": labels, "sensor_ids": list(series.sensor_ids), "client_dirs": dirs, "cut_edges": cuts}
