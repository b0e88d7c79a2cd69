"""Local fine-tuning after the last round (FedAvg + local fine-tuning, ``federated.finetune_epochs``).

Each client trains its personalised model a few more epochs on its own data, starting from the
federation's weights, and keeps whichever of the federated and the fine-tuned model validates better.
Nothing is sent: raw series and fine-tuned weights stay on the client.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from ..errors import ConfigError
from ..files import atomic_write
from ..runtime import configure_process
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.forecaster import Forecaster
from ..training.layout import LAST
from ..training.trainer import Trainer, seed_everything
from ..training.writer import RunRecord, RunWriter
from .config import FINETUNE_LR, FederatedConfig
from .folders import load_client
from .layout import ClientFiles, FederationFiles
from .personal import initial_model
from .seeds import finetune_seed

log = logging.getLogger(__name__)


class _KeepLastRound(RunWriter):
    """The client folder's writer while it fine-tunes: ``best.pt`` and ``metrics.csv`` as any run's, but
    ``last.pt`` stays the last round's weights (what the global export and the next round read); the
    fine-tuning's own last state is not kept."""

    def save(self, name: str, state: dict) -> Path:
        return self.files.checkpoint(name) if name == LAST else super().save(name, state)


def finetune_client(client_dir: str | Path, epochs: int | None = None, lr_factor: float | None = None) -> dict:
    """Fine-tune a client's personalised model on its own data after the last round: the federation's
    shared weights are the starting point, the client's sensors the target.

    Starts from ``checkpoints/best.pt`` (the client's best round: global shared weights plus its
    personal ones), kept as ``checkpoints/federated.pt`` (which a later call starts from); trains every
    weight ``epochs`` epochs on the client's training windows (AdamW, ``train.lr * lr_factor`` with
    cosine decay), and leaves in ``best.pt`` whichever of the federated model and the fine-tuned epochs
    has the lowest validation MAE on the client's sensors. Epochs go to the client's ``metrics.csv``;
    ``last.pt`` stays the last round's weights (what the global export and the next round read).

    Args:
        epochs / lr_factor: default ``finetune_epochs`` / ``finetune_lr`` of ``client.json``.

    Returns:
        ``{"epochs", "lr", "val_mae_federated", "val_mae", "best_epoch", "seconds"}`` (also written to
        ``finetune.json``); ``best_epoch`` 0 means no fine-tuned epoch beat the federated model.
    """
    folder = load_client(client_dir)
    cfg, prep, info = folder.config, folder.prepared, folder.info
    files = ClientFiles(client_dir)
    d = files.root
    epochs = int(info.get("finetune_epochs", 0) if epochs is None else epochs)
    lr_factor = float(info.get("finetune_lr", FINETUNE_LR) if lr_factor is None else lr_factor)
    if epochs < 1 or not lr_factor > 0:
        raise ConfigError(f"{d}: fine-tuning needs epochs >= 1 and a learning-rate factor > 0; got epochs={epochs}, "
                          f"lr_factor={lr_factor}")
    kept = files.federated  # a second call fine-tunes the federation's model again, not its own output
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
                                    warmup_epochs=0, patience=0, seed=finetune_seed(cfg.train.seed))
    seed_everything(train_cfg.seed)
    files.metrics.unlink(missing_ok=True)
    forecaster = Forecaster(model, prep.data, prep.graph, train_cfg, cfg.model.distribution, cfg.data.nonnegative)
    configure_process(forecaster.device, train_cfg.threads)
    trainer = Trainer(forecaster, train_cfg, writer=_KeepLastRound(d, RunRecord.of(cfg, prep)))
    base = float(forecaster.evaluate("val")["average"]["mae"])
    # epoch 0 is the federated model: a fine-tuned epoch is kept only if it beats it
    trainer.load_state({"model": ckpt["model"], "trainer": {"best_val": base, "best_epoch": 0}})
    t0 = time.perf_counter()
    trainer.fit()
    if trainer.state["best_epoch"] == 0:
        save_checkpoint(ckpt, files.best)
    result = {"epochs": epochs, "lr": train_cfg.lr, "val_mae_federated": base,
              "val_mae": float(trainer.state["best_val"]), "best_epoch": int(trainer.state["best_epoch"]),
              "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(files.finetune, json.dumps(result, indent=1))
    log.info(f"client {info['partition_id']}: fine-tuned {epochs} epoch(s) on its own data, validation MAE "
             f"{base:.4f} -> {result['val_mae']:.4f} (epoch {result['best_epoch']} kept)")
    return result


def finetune_clients(out: str | Path, fed: FederatedConfig) -> list[dict]:
    """Each client of the federation in ``out`` fine-tunes its model (``fed.finetune_epochs`` epochs, one
    after another in this process); ``[]`` when ``fed.finetune_epochs`` is 0."""
    if not fed.finetune_epochs:
        return []
    files = FederationFiles(out)
    return [finetune_client(files.client(c).root, fed.finetune_epochs, fed.finetune_lr) for c in range(fed.clients)]
