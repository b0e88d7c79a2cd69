"""A federated client without Flower: one agency's sensors, its rounds of local training and evaluation.

:class:`FederatedClient` works on a client folder (:mod:`.folders`) and speaks in arrays: it takes the
server's shared weights, trains the one :class:`~stgraph.training.trainer.Trainer` on its own data, and
gives back its shared weights, its number of training windows and scalar metrics. The Flower
``NumPyClient`` of :mod:`.flower` only translates Flower's messages into these calls.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, FederationError
from ..files import atomic_write
from ..runtime import configure_process
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.forecaster import Forecaster
from ..training.layout import BEST, LAST
from ..training.losses import FedProx
from ..training.prepare import model_sizes
from ..training.trainer import Trainer, seed_everything
from ..training.writer import RunRecord, RunWriter
from .folders import load_client
from .layout import ClientFiles
from .personal import initial_model, personal_keys, shared_keys
from .seeds import round_seed


class FederatedClient:
    """The client of the folder ``client_dir`` (written by :func:`~.folders.write_client`).

    Messages (what :class:`~.flower.StgraphClient` relays):
        * :meth:`get_parameters` / :meth:`fit` give the shared weights, a list of float32
          arrays in :func:`~.personal.shared_keys` order (no array depends on the sensors or
          the time steps);
        * :meth:`fit` also gives the number of training windows (FedAvg's weight) and the
          scalars ``partition_id``, ``train_loss``, ``local_val_mae``, ``train_seconds``;
        * :meth:`evaluate` gives the validation MAE (data units, own sensors) and
          ``num_examples`` = validation windows x own sensors.

    Args:
        client_dir: the client folder.
        record: also keep what was sent each round in ``updates/round_NNN.npz``
            (for checking aggregation).
    """

    def __init__(self, client_dir: str | Path, record: bool = False):
        folder = load_client(client_dir)
        self.files = ClientFiles(client_dir)
        self.cfg, self.prep, self.info = folder.config, folder.prepared, folder.info
        self.dir = self.files.root
        self.partition_id = folder.partition_id
        self.record = record
        data = self.prep.data
        self.model = initial_model(self.cfg, data)
        self.personal = personal_keys(self.cfg.model.name, model_sizes(data, self.cfg.model.probabilistic),
                                      self.cfg.model.params, self.info.get("personal", ()))
        self.keys = shared_keys(self.model, self.personal)
        self.forecaster = Forecaster(self.model, data, self.prep.graph, self.cfg.train, self.cfg.model.distribution,
                                     self.cfg.data.nonnegative)
        configure_process(self.forecaster.device, self.cfg.train.threads)  # a client process's entry point
        self.writer = RunWriter(self.dir, RunRecord.of(self.cfg, self.prep))
        # the checkpoints of the client folder are this untrained trainer's (its fresh optimiser), at the round
        self.trainer = Trainer(self.forecaster, self.cfg.train, record=self.writer.record)
        if self.files.last.is_file():
            self.model.load_state_dict(load_checkpoint(self.files.last)["model"])
        else:
            self.writer.write_start(self.writer.record.info(
                self.model, self.prep, source=str(self.prep.series.source),
                federated={"partition_id": self.partition_id, "personal_keys": self.personal}))
        self.n_own = len(self.info["own_sensors"])

    # -------------------------------------------------------------------------------- helpers
    def _state(self) -> dict:
        path = self.files.state
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
            if not (t.is_floating_point() and bool(torch.isfinite(t).all())):
                raise FederationError(f"client {self.partition_id}: shared tensor '{k}' from the server is not "
                                      f"finite floating point ({t.dtype}); refusing to train on it")
            state[k] = t.to(state[k].dtype)
        self.model.load_state_dict(state)

    def _restore_optimizer(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        """Load the AdamW moments this client had at the end of its last round (if any) into
        ``optimizer``, at learning rate ``lr`` (this round's)."""
        path = self.files.optimizer
        if not path.is_file():
            return
        optimizer.load_state_dict(load_checkpoint(path)["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = lr

    def _save(self, name: str, round_: int) -> None:
        self.trainer.state["epoch"] = round_
        self.writer.save(name, self.trainer.checkpoint_state())

    # -------------------------------------------------------------------------------- messages
    def get_parameters(self) -> list[np.ndarray]:
        """Shared weights, float32 arrays in :func:`~.personal.shared_keys` order."""
        state = self.model.state_dict()
        return [state[k].detach().cpu().float().numpy() for k in self.keys]

    def fit(self, parameters, server_round: int, *, lr_factor: float = 1.0, proximal_mu: float = 0.0,
            keep_optimizer: bool = False) -> tuple[list[np.ndarray], int, dict]:
        """Train ``train.epochs`` epochs on the client's data from the server's shared weights ``parameters``.

        ``lr_factor``: this round's factor on ``train.lr`` (the server's schedule); ``proximal_mu``:
        FedProx's proximal weight (0: plain FedAvg); ``keep_optimizer``: continue from the AdamW moments
        of the client's last round. Returns ``(shared weights, training windows, metrics)``.
        """
        self._set_shared(parameters)
        mu = float(proximal_mu)
        anchors = {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in self.keys} if mu else None
        train_cfg = dataclasses.replace(  # another shuffle and dropout draw each round, still seeded
            self.cfg.train, seed=round_seed(self.cfg.train.seed, server_round, self.partition_id),
            lr=self.cfg.train.lr * float(lr_factor))
        seed_everything(train_cfg.seed)
        trainer = Trainer(self.forecaster, train_cfg, loss=FedProx(self.model, anchors, mu) if mu else None,
                          record=self.writer.record)
        if keep_optimizer:
            self._restore_optimizer(trainer.optimizer, train_cfg.lr)
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
        self._save(LAST, server_round)
        if keep_optimizer:
            save_checkpoint({"model": self.model.state_dict(), "optimizer": trainer.optimizer.state_dict()},
                            self.files.optimizer)
        out = self.get_parameters()
        n = int(self.prep.data.split_starts("train").numel())
        if self.record:
            self.files.sent(server_round).parent.mkdir(exist_ok=True)
            np.savez(self.files.sent(server_round), num_examples=n, **{f"p{i:04d}": a for i, a in enumerate(out)})
        loss = trainer.state["running_loss"] / max(1, trainer.state["running_count"])
        best = trainer.state["best_val"]
        return out, n, {"partition_id": self.partition_id, "train_loss": float(loss),
                        "local_val_mae": float(best) if math.isfinite(best) else -1.0,
                        "train_seconds": float(seconds)}

    def evaluate(self, parameters, server_round: int) -> tuple[float, int, dict]:
        """The personalised model (global shared + own personal weights) on the validation split:
        ``(MAE, validation windows x own sensors, metrics)``; keeps ``best.pt`` at the best round."""
        self._set_shared(parameters)
        mae = float(self.forecaster.evaluate("val")["average"]["mae"])
        st = self._state()
        self._save(LAST, server_round)
        if st["best_val"] is None or mae < st["best_val"]:
            st.update(best_val=mae, best_round=server_round)
            self._save(BEST, server_round)
        st.setdefault("rounds", []).append({"round": server_round, "val_mae": mae})
        atomic_write(self.files.state, json.dumps(st, indent=1))
        n = int(self.prep.data.split_starts("val").numel()) * self.n_own
        return mae, n, {"partition_id": self.partition_id, "val_mae": mae}
