"""A client's local model and its blend with the federation's (``federated.local_blend``).

After the last round (and fine-tuning), a client trains a model on its own data alone, as many
passes over it as the federation made (``rounds x local_epochs``), in ``client_<i>/local/``. Then it
blends that model's forecast with its federated one, one weight per forecast step chosen on its
validation split from a grid (0, 0.05, ..., 1), and saves the blend as an ordinary run in
``client_<i>/blend/`` (:class:`stgraph.models.blend.Blend`). Weight 0 is the federated model alone,
1 the local model alone: a region the other regions' data does not help keeps its own model where
validation says so. This is APFL's local/global mixture (Deng et al., 2020), with the weight chosen
on validation. Nothing is sent.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from ..config import with_fields
from ..errors import ConfigError
from ..files import atomic_write
from ..models.blend import blend_params, choose_weights
from ..models.registry import build_model
from ..training.layout import BEST, LAST, RunFiles
from ..training.prepare import model_sizes
from ..training.writer import RunRecord, RunWriter
from .config import FederatedConfig
from .folders import load_client
from .layout import ClientFiles, FederationFiles

log = logging.getLogger(__name__)


def train_local(client_dir: str | Path, epochs: int | None = None):
    """Train the client's model on its own data alone into ``client_dir/local`` (an ordinary run).

    The client's run config with ``train.epochs = epochs`` (default ``local_blend_epochs`` of
    ``client.json``: rounds x local epochs) and ``train.scheduler`` ``local_scheduler`` (cosine when
    the federation's learning rate is cosine over the rounds); an old ``local`` run is replaced.
    Returns the finished :class:`~stgraph.training.run.Run`.
    """
    from ..training.run import train

    files = ClientFiles(client_dir)
    d = files.root
    folder = load_client(d)
    cfg, info = folder.config, folder.info
    epochs = int(info.get("local_blend_epochs", 0) if epochs is None else epochs)
    if epochs < 1:
        raise ConfigError(f"'{d}': the local model needs epochs >= 1; got {epochs} (client.json "
                          f"local_blend_epochs; set federated.local_blend)")
    cfg = with_fields(cfg, {"train.epochs": epochs, "train.scheduler": info.get("local_scheduler", "cosine")})
    t0 = time.perf_counter()
    run = train(cfg, files.local, overwrite=True)
    log.info(f"client {info['partition_id']}: trained a local model on its own data ({epochs} epochs, "
             f"{time.perf_counter() - t0:.0f} s), validation MAE {run.state['best_val']:.4f}")
    return run


def _split_predictions(run, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(forecast, y)`` of a run on ``split``, each ``[W, T_out, N, C_out]`` in data units (point forecasts)."""
    outs, ys = [], []
    for out, y, _ in run.predictions(split):
        if not isinstance(out, torch.Tensor):
            raise ConfigError("blending needs point forecasts; a probabilistic run cannot be blended")
        outs.append(out)
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def _same_scaling(a: dict, b: dict) -> bool:
    """Two scaler states alike up to rounding (the same statistics summed in another order)."""
    if a.keys() != b.keys() or a.get("channels") != b.get("channels"):
        return False
    return all(torch.allclose(torch.as_tensor(a[k], dtype=torch.float64), torch.as_tensor(b[k], dtype=torch.float64),
                              rtol=1e-9, atol=0) for k in a if k != "channels")


def blend_client(client_dir: str | Path) -> dict:
    """Blend the client's federated model (``best.pt``: its best round, or its fine-tuned model) with its
    local one (``local/``, :func:`train_local`) into the run ``client_dir/blend``.

    Returns ``{"weights_local": [T_out], "val_mae_federated", "val_mae_local", "val_mae"}`` (validation
    MAE over all steps, also written to ``blend.json`` in the client folder).
    """
    from ..training.run import Run

    files = ClientFiles(client_dir)
    d, local = files.root, files.local
    if not RunFiles(local).config.is_file():
        raise ConfigError(f"'{d}': no local model in '{local}'; train it first (train_local)")
    fed_run, local_run = Run.open(d), Run.open(local)
    if list(fed_run.data.sensor_ids) != list(local_run.data.sensor_ids):
        raise ConfigError(f"'{local}' forecasts other sensors than '{d}'; train the local model again")
    fed_val, y = _split_predictions(fed_run, "val")
    local_val, _ = _split_predictions(local_run, "val")
    if not _same_scaling(fed_run.data.scaler.state_dict(), local_run.data.scaler.state_dict()):
        raise ConfigError(f"'{local}' was scaled otherwise than '{d}' (another training split?); train the "
                          f"local model again")
    a, mae = choose_weights(fed_val, local_val, y, fed_run.forecaster.null_value)
    chosen = mae.min(0).values  # the MAE of the chosen weight at each step
    weights = [round(float(v), 4) for v in a]  # grid values, written as the decimals they are
    # validation MAE as the mean over the forecast steps (each step has the same windows)
    result = {"weights_local": weights, "val_mae_federated": float(mae[0].mean()),
              "val_mae_local": float(mae[-1].mean()), "val_mae": float(chosen.mean())}

    cfg, data, info = fed_run.config, fed_run.data, json.loads(files.client_info.read_text())
    members = [(cfg.model.name, cfg.model.params), (local_run.config.model.name, local_run.config.model.params)]
    params = blend_params(members, [[round(1 - w, 4) for w in weights], weights])
    bcfg = with_fields(cfg, {"model.name": "blend", "model.params": params}).validate()
    model = build_model("blend", model_sizes(data, cfg.model.probabilistic), bcfg.model.params)
    model.members[0].load_state_dict(fed_run.model.state_dict())
    model.members[1].load_state_dict(local_run.model.state_dict())
    record = RunRecord.of(bcfg, fed_run.prepared)
    ckpt = record.checkpoint(model.state_dict(), scaler=data.scaler.state_dict(),
                             trainer={"epoch": 0, "best_val": result["val_mae"], "best_epoch": 0})
    run_info = record.info(model, fed_run.prepared, source=str(fed_run.series.source),
                           members=[str(d.resolve()), str(local.resolve())],
                           federated={"partition_id": info["partition_id"], **result})
    RunWriter(files.blend, record).publish(run_info, {BEST: ckpt, LAST: ckpt})
    atomic_write(files.blend_info, json.dumps(result, indent=1))
    log.info(f"client {info['partition_id']}: blended its federated and local models, weight on the local one "
             f"{min(result['weights_local']):.2f} .. {max(result['weights_local']):.2f} over the steps; validation "
             f"MAE federated {result['val_mae_federated']:.4f}, local {result['val_mae_local']:.4f}, blend "
             f"{result['val_mae']:.4f}")
    return result


def blend_clients(out: str | Path, fed: FederatedConfig) -> list[dict]:
    """With ``fed.local_blend``, each client of the federation in ``out`` trains its local model and blends
    it with its federated one (:func:`train_local`, :func:`blend_client`; one after another in this
    process); ``[]`` otherwise."""
    if not fed.local_blend:
        return []
    files = FederationFiles(out)
    result = []
    for c in range(fed.clients):
        d = files.client(c).root
        t0 = time.perf_counter()
        train_local(d)
        result.append({**blend_client(d), "seconds": round(time.perf_counter() - t0, 1)})
    return result
