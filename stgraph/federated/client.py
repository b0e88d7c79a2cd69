"""A Flower client: one agency's sensors, its own series, the one :class:`~stgraph.training.trainer.Trainer`.

A client folder (``OUT/client_<i>``) is an ordinary stgraph run directory whose
``config.yaml`` points at the client's own files in ``data/`` (its sensors'
series and the road graph among them): ``stgraph evaluate / predict / plot`` work
on it. Raw series never leave it; the client sends only the *shared* weights
(and scalar metrics). Its personalised weights (every tensor whose shape depends
on the number of sensors, e.g. stgt's sensor embeddings ``embed.node.weight``
``[N, D]``, plus names matched by ``federated.personal``) stay in the folder's
checkpoints.

Flower's simulation engine creates a client object per round on any worker, so
the folder is the client's memory: weights are read from
``checkpoints/last.pt`` at the start of each call and written back at its end.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Sequence

import networkx as nx
import numpy as np
import torch

from ..config import RunConfig, load_config, with_fields
from ..errors import ConfigError, StgraphWarning
from ..files import atomic_write
from ..models.registry import build_model, count_parameters
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.layout import BEST, CHECKPOINTS, LAST, RunFiles
from ..training.run import graph_fingerprint, make_model, model_sizes, prepare
from ..training.trainer import Trainer, seed_everything
from .config import FINETUNE_LR

CLIENT_INFO = "client.json"
STATE = "federated_state.json"
#: in checkpoints/: the weights after the client's last local training and its AdamW state, kept between
#: rounds (federated.keep_optimizer)
OPTIMIZER = "local.pt"
#: in checkpoints/: the client's best round, kept when local fine-tuning replaces best.pt
FEDERATED = "federated.pt"
FINETUNE = "finetune.json"
#: in a client folder (federated.local_blend, :mod:`.local`): the run trained on the client's own data alone,
#: the run blending it with the federated model, and the blend's weights and validation MAE
LOCAL = "local"
BLEND = "blend"
BLEND_INFO = "blend.json"


# ------------------------------------------------------------------------------------ which layers are shared
def node_dims(model_name: str, sizes: dict, params: dict) -> dict[str, list[int]]:
    """For each state-dict key whose shape depends on the number of sensors, the dimensions of size ``N``.

    Found by building the model for 3 and for 4 sensors and comparing shapes.
    """
    a = build_model(model_name, {**sizes, "num_nodes": 3}, params).state_dict()
    b = build_model(model_name, {**sizes, "num_nodes": 4}, params).state_dict()
    return {k: [d for d, (x, y) in enumerate(zip(a[k].shape, b[k].shape)) if x != y]
            for k in a if a[k].shape != b[k].shape}


def personal_keys(model_name: str, sizes: dict, params: dict, patterns: Sequence[str] = ()) -> list[str]:
    """State-dict keys that stay on the client: those whose shape depends on the number
    of sensors (:func:`node_dims`) and those matching one of ``patterns`` (regular
    expressions, ``re.search``)."""
    try:
        rx = [re.compile(p) for p in patterns]
    except re.error as e:
        raise ConfigError(f"federated.personal: {e.pattern!r} is not a regular expression ({e})") from None
    keys = build_model(model_name, {**sizes, "num_nodes": 3}, params).state_dict()
    tied = node_dims(model_name, sizes, params)
    return sorted(k for k in keys if k in tied or any(r.search(k) for r in rx))


def shared_keys(model: torch.nn.Module, personal: Sequence[str]) -> list[str]:
    """Floating-point state-dict keys that are averaged (sorted; the order of Flower's parameter list)."""
    skip = set(personal)
    return sorted(k for k, v in model.state_dict().items() if k not in skip and v.is_floating_point())


def initial_model(cfg: RunConfig, data) -> torch.nn.Module:
    """The client's model; its shared weights are the same on every client.

    Shared weights come from a 3-sensor model built with seed ``train.seed`` (they
    do not depend on the number of sensors), so every client starts from the same
    point whatever its size, and Flower's "initial parameters from one random
    client" is reproducible.
    """
    sizes = model_sizes(data, cfg.model.probabilistic)
    seed_everything(cfg.train.seed)
    template = build_model(cfg.model.name, {**sizes, "num_nodes": 3}, cfg.model.params).state_dict()
    seed_everything(cfg.train.seed)
    model = make_model(cfg, data)
    state = model.state_dict()
    for k, v in template.items():
        if state[k].shape == v.shape:
            state[k] = v
    model.load_state_dict(state)
    return model


# ------------------------------------------------------------------------------------ a client's own files
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


def write_client(out: str | Path, client: int, run_cfg: RunConfig, series, graph: nx.DiGraph | None,
                 own: Sequence[str], border: Sequence[str], local_epochs: int, personal: Sequence[str] = (),
                 finetune_epochs: int = 0, finetune_lr: float = FINETUNE_LR, local_blend_epochs: int = 0,
                 local_scheduler: str = "cosine") -> Path:
    """Create the client folder ``out`` (an ordinary run directory) from the client's part of the data.

    Writes ``data/series.h5`` (the ``own`` sensors' readings and, for ``border``
    sensors, the null value at every step), ``data/graph.json`` (road links among
    them), ``config.yaml`` (``run_cfg`` pointing at those files, ``train.epochs =
    local_epochs``, constant learning rate, one CPU thread) and ``client.json`` (its sensors, the
    personalised layers, the fine-tuning after the last round, :func:`finetune_client`, and the local
    model's epochs and schedule, :mod:`.local`; 0 epochs: no local model).

    Args:
        series: the full :class:`~stgraph.io.Series` (``values [T, N, C]``); only the
            client's columns are written.
    """
    from ..graph import write_graph
    from ..io import write_series
    from ..io.series import Series

    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for stale in [*(out / CHECKPOINTS).glob("*.pt"), *(out / "updates").glob("*.npz"), out / STATE,
                  out / FINETUNE, out / BLEND_INFO, RunFiles(out).metrics]:
        stale.unlink(missing_ok=True)  # a new federation starts from scratch
    for stale in (out / LOCAL, out / BLEND):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
    ids = list(own) + list(border)
    sub = series.select_sensors(ids)
    values = sub.values.copy()
    values[:, len(own):] = sub.null_value
    sub = Series(values, sub.timestamps, ids, sub.channels, sub.null_value, source=None)
    write_series(sub, out / "data" / "series.h5")
    graph_file = None
    if graph is not None:
        sg = nx.DiGraph(graph.subgraph(ids))
        sg.graph = {}
        write_graph(sg, out / "data" / "graph.json")
        graph_file = str((out / "data" / "graph.json").resolve())
    cfg = with_fields(run_cfg, {
        "data.path": str((out / "data" / "series.h5").resolve()), "data.dataset": None, "data.root": None,
        "data.graph": graph_file, "train.epochs": local_epochs, "train.patience": 0, "train.scheduler": "none",
        "train.warmup_epochs": 0, "train.progress": False, "train.threads": run_cfg.train.threads or 1})
    cfg.validate()
    cfg.to_yaml(RunFiles(out).config)
    atomic_write(out / CLIENT_INFO, json.dumps({"partition_id": client, "own_sensors": list(own),
                                               "border_sensors": list(border), "personal": list(personal),
                                               "finetune_epochs": int(finetune_epochs),
                                               "finetune_lr": float(finetune_lr),
                                               "local_blend_epochs": int(local_blend_epochs),
                                               "local_scheduler": local_scheduler}, indent=1))
    return out


def finetune_client(client_dir: str | Path, epochs: int | None = None, lr_factor: float | None = None,
                    log=None) -> dict:
    """Fine-tune a client's personalised model on its own data after the last round (FedAvg + local
    fine-tuning): the federation's shared weights are the starting point, the client's sensors the target.

    Starts from ``checkpoints/best.pt`` (the client's best round: global shared weights plus its
    personal ones), kept as ``checkpoints/federated.pt`` (which a later call starts from); trains every weight ``epochs`` epochs on
    the client's training windows (AdamW, ``train.lr * lr_factor`` with cosine decay), and leaves in
    ``best.pt`` whichever of the federated model and the fine-tuned epochs has the lowest validation
    MAE on the client's sensors. Nothing is sent: raw series and fine-tuned weights stay on the
    client. Epochs go to the client's ``metrics.csv``; ``last.pt`` stays the last round's weights
    (what the global export and the next round read).

    Args:
        epochs / lr_factor: default ``finetune_epochs`` / ``finetune_lr`` of ``client.json``.

    Returns:
        ``{"epochs", "lr", "val_mae_federated", "val_mae", "best_epoch", "seconds"}`` (also written to
        ``finetune.json``); ``best_epoch`` 0 means no fine-tuned epoch beat the federated model.
    """
    d = Path(client_dir)
    cfg, prep, info = _load(d)
    epochs = int(info.get("finetune_epochs", 0) if epochs is None else epochs)
    lr_factor = float(info.get("finetune_lr", FINETUNE_LR) if lr_factor is None else lr_factor)
    if epochs < 1 or not lr_factor > 0:
        raise ConfigError(f"{d}: fine-tuning needs epochs >= 1 and a learning-rate factor > 0; got epochs={epochs}, "
                          f"lr_factor={lr_factor}")
    files = RunFiles(d)
    kept = files.checkpoint(FEDERATED)  # a second call fine-tunes the federation's model again, not its own output
    start = next((p for p in (kept, files.best, files.last) if p.is_file()), None)
    if start is None:
        raise ConfigError(f"'{d}': no checkpoint to fine-tune (expected {files.best.name} or {files.last.name} "
                          f"from the federated rounds); run the federation first")
    ckpt = load_checkpoint(start)
    if start != kept:
        save_checkpoint(ckpt, kept)
    model = initial_model(cfg, prep.data)
    model.load_state_dict(ckpt["model"])
    train_cfg = dataclasses.replace(cfg.train, epochs=epochs, lr=cfg.train.lr * lr_factor, scheduler="cosine",
                                    warmup_epochs=0, patience=0, seed=cfg.train.seed * 1009 + 7919)
    seed_everything(train_cfg.seed)
    fingerprint = {"data": prep.data.fingerprint(), "graph": graph_fingerprint(prep.graph)}
    files.metrics.unlink(missing_ok=True)
    last_round = files.last.read_bytes() if files.last.is_file() else None
    trainer = Trainer(model, prep.data, prep.graph, train_cfg, d, distribution=cfg.model.distribution,
                      extra_state={"config": cfg.to_dict(), "fingerprint": fingerprint})
    base = float(trainer.evaluate("val")["average"]["mae"])
    trainer.state.update(best_val=base, best_epoch=0)  # an epoch is kept only if it beats the federated model
    t0 = time.perf_counter()
    trainer.fit()
    if trainer.state["best_epoch"] == 0:
        save_checkpoint(ckpt, files.best)
    if last_round is not None:
        atomic_write(files.last, last_round)
    result = {"epochs": epochs, "lr": train_cfg.lr, "val_mae_federated": base,
              "val_mae": float(trainer.state["best_val"]), "best_epoch": int(trainer.state["best_epoch"]),
              "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(d / FINETUNE, json.dumps(result, indent=1))
    if log is not None:
        log(f"client {info['partition_id']}: fine-tuned {epochs} epoch(s) on its own data, validation MAE "
            f"{base:.4f} -> {result['val_mae']:.4f} (epoch {result['best_epoch']} kept)")
    return result


# ------------------------------------------------------------------------------------ the Flower client
class _ProxTrainer(Trainer):
    """The trainer with FedProx's proximal term ``mu / 2 * ||w - w_global||^2`` on the shared weights."""

    def __init__(self, *args, mu: float = 0.0, anchors: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.mu = float(mu)
        params = dict(self.model.named_parameters())
        self.anchors = [(params[k], v.to(self.device)) for k, v in (anchors or {}).items() if k in params]

    def loss(self, out, y):
        base = super().loss(out, y)
        if self.mu > 0 and self.anchors:
            base = base + 0.5 * self.mu * sum(((p - a) ** 2).sum() for p, a in self.anchors)
        return base


_CACHE: dict[str, tuple] = {}


def _load(client_dir: Path):
    """``(cfg, prepared, info)`` of a client folder, cached per process (data are read once)."""
    key = str(client_dir.resolve())
    if key not in _CACHE:
        cfg = load_config(RunFiles(client_dir).config).validate()
        info = json.loads((client_dir / CLIENT_INFO).read_text())
        with warnings.catch_warnings():  # border sensors have no reading by design
            if info["border_sensors"]:
                warnings.simplefilter("ignore", StgraphWarning)
            prep = prepare(cfg)
        _CACHE[key] = (cfg, prep, info)
    return _CACHE[key]


def _numpy_client_base():
    from flwr.client import NumPyClient
    return NumPyClient


class StgraphClient(_numpy_client_base()):
    """Flower ``NumPyClient`` over a client folder written by :func:`write_client`.

    Messages:
        * ``get_parameters`` / ``fit`` send the shared weights, a list of float32
          arrays in :func:`shared_keys` order (no array depends on the sensors or
          the time steps);
        * ``fit`` returns the number of training windows (FedAvg's weight) and the
          scalars ``partition_id``, ``train_loss``, ``local_val_mae``, ``train_seconds``;
        * ``evaluate`` returns the validation MAE (data units, own sensors) and
          ``num_examples`` = validation windows x own sensors.

    Args:
        client_dir: the client folder.
        record: also keep what was sent each round in ``updates/round_NNN.npz``
            (for checking aggregation).
    """

    def __init__(self, client_dir: str | Path, record: bool = False):
        self.dir = Path(client_dir)
        self.cfg, self.prep, self.info = _load(self.dir)
        self.partition_id = int(self.info["partition_id"])
        self.record = record
        data = self.prep.data
        self.model = initial_model(self.cfg, data)
        self.personal = personal_keys(self.cfg.model.name, model_sizes(data, self.cfg.model.probabilistic),
                                      self.cfg.model.params, self.info.get("personal", ()))
        self.keys = shared_keys(self.model, self.personal)
        self.fingerprint = {"data": data.fingerprint(), "graph": graph_fingerprint(self.prep.graph)}
        self.trainer = Trainer(self.model, data, self.prep.graph, self.cfg.train, None, extra_state=self._extra(),
                               distribution=self.cfg.model.distribution)
        last = RunFiles(self.dir).last
        if last.is_file():
            self.model.load_state_dict(load_checkpoint(last)["model"])
        else:
            self._write_run_info()
        self.n_own = len(self.info["own_sensors"])

    # -------------------------------------------------------------------------------- helpers
    def _extra(self) -> dict:
        return {"config": self.cfg.to_dict(), "fingerprint": self.fingerprint}

    def _write_run_info(self) -> None:
        p = self.prep
        info = {"model": self.cfg.model.name, "parameters": count_parameters(self.model),
                "sensor_ids": list(p.series.sensor_ids), "channels": list(p.series.channels),
                "target_channels": list(p.data.target_channels), "fingerprint": self.fingerprint,
                "source": str(p.series.source), "federated": {"partition_id": self.partition_id,
                                                              "personal_keys": self.personal}}
        atomic_write(RunFiles(self.dir).info, json.dumps(info, indent=1))

    def _state(self) -> dict:
        path = self.dir / STATE
        return json.loads(path.read_text()) if path.is_file() else {"best_val": None, "best_round": None}

    def _set_shared(self, arrays) -> None:
        if len(arrays) != len(self.keys):
            raise ConfigError(f"client {self.partition_id}: the server sent {len(arrays)} arrays; expected "
                              f"{len(self.keys)} shared tensors ({self.keys[:3]} ...). Server and clients must "
                              f"run the same model config")
        state = self.model.state_dict()
        for k, a in zip(self.keys, arrays):
            t = torch.as_tensor(np.asarray(a))
            if tuple(t.shape) != tuple(state[k].shape):
                raise ConfigError(f"client {self.partition_id}: shared tensor '{k}' has shape {tuple(t.shape)} "
                                  f"from the server; expected {tuple(state[k].shape)}")
            state[k] = t.to(state[k].dtype)
        self.model.load_state_dict(state)

    def _restore_optimizer(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        """Load the AdamW moments this client had at the end of its last round (if any) into
        ``optimizer``, at learning rate ``lr`` (this round's)."""
        path = self.dir / CHECKPOINTS / OPTIMIZER
        if not path.is_file():
            return
        optimizer.load_state_dict(load_checkpoint(path)["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = lr

    def _save(self, name: str, round_: int) -> None:
        self.trainer.state["epoch"] = round_
        save_checkpoint(self.trainer.checkpoint_state(), RunFiles(self.dir).checkpoint(name))

    # -------------------------------------------------------------------------------- NumPyClient
    def get_parameters(self, config):
        """Shared weights, float32 arrays in :func:`shared_keys` order."""
        state = self.model.state_dict()
        return [state[k].detach().cpu().float().numpy() for k in self.keys]

    def fit(self, parameters, config):
        round_ = int(config.get("server_round", 0))
        self._set_shared(parameters)
        mu = float(config.get("proximal_mu", 0.0))
        anchors = {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in self.keys} if mu else None
        train_cfg = dataclasses.replace(  # another shuffle and dropout draw each round, still seeded
            self.cfg.train, seed=self.cfg.train.seed * 1009 + round_ * 31 + self.partition_id,
            lr=self.cfg.train.lr * float(config.get("lr_factor", 1.0)))  # the server's schedule
        seed_everything(train_cfg.seed)
        trainer = _ProxTrainer(self.model, self.prep.data, self.prep.graph, train_cfg, None,
                               extra_state=self._extra(), mu=mu, anchors=anchors,
                               distribution=self.cfg.model.distribution)
        keep = bool(config.get("keep_optimizer", False))
        if keep:
            self._restore_optimizer(trainer.optimizer, train_cfg.lr)
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
        self._save(LAST, round_)
        if keep:
            save_checkpoint({"model": self.model.state_dict(), "optimizer": trainer.optimizer.state_dict()},
                            self.dir / CHECKPOINTS / OPTIMIZER)
        out = self.get_parameters({})
        n = int(self.prep.data.split_starts("train").numel())
        if self.record:
            (self.dir / "updates").mkdir(exist_ok=True)
            np.savez(self.dir / "updates" / f"round_{round_:03d}.npz", num_examples=n,
                     **{f"p{i:04d}": a for i, a in enumerate(out)})
        loss = trainer.state["running_loss"] / max(1, trainer.state["running_count"])
        best = trainer.state["best_val"]
        return out, n, {"partition_id": self.partition_id, "train_loss": float(loss),
                        "local_val_mae": float(best) if math.isfinite(best) else -1.0,
                        "train_seconds": float(seconds)}

    def evaluate(self, parameters, config):
        """The personalised model (global shared + own personal weights) on the validation split."""
        round_ = int(config.get("server_round", 0))
        self._set_shared(parameters)
        mae = float(self.trainer.evaluate("val")["average"]["mae"])
        st = self._state()
        self._save(LAST, round_)
        if st["best_val"] is None or mae < st["best_val"]:
            st.update(best_val=mae, best_round=round_)
            self._save(BEST, round_)
        st.setdefault("rounds", []).append({"round": round_, "val_mae": mae})
        atomic_write(self.dir / STATE, json.dumps(st, indent=1))
        n = int(self.prep.data.split_starts("val").numel()) * self.n_own
        return mae, n, {"partition_id": self.partition_id, "val_mae": mae}


def start_client(client_dir: str | Path, address: str, *, record: bool = False, max_wait: float = 60.0,
                 mods: Sequence = ()) -> None:
    """Connect the client in ``client_dir`` to a server over gRPC and serve until it says stop.

    Uses Flower's ``flwr.compat.client.app.start_client`` (gRPC bidirectional stream);
    gives up after ``max_wait`` seconds without a server. ``mods``: Flower client mods
    (e.g. ``fixedclipping_mod`` for client-side DP, :func:`~.server.client_mods`), which
    need the ``ClientApp`` form of the same call.
    """
    from flwr.compat.client.app import start_client as flwr_start_client

    client = StgraphClient(client_dir, record=record)
    retry = dict(insecure=True, max_retries=max(1, int(max_wait)), max_wait_time=max_wait)
    if not mods:
        flwr_start_client(server_address=address, client=client.to_client(), **retry)
        return
    from flwr.clientapp import ClientApp
    from flwr.compat.client.app import start_client_internal

    app = ClientApp(client_fn=lambda context: client.to_client(), mods=list(mods))
    start_client_internal(server_address=address, node_config={}, load_client_app_fn=lambda *a: app, **retry)
