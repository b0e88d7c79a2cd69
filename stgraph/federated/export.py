"""The global run of a federation: one ordinary run over every sensor, assembled from the clients and
written through the run writer (:class:`~stgraph.training.writer.RunWriter`)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..training.axes import sensor_axes
from ..training.checkpoint import load_checkpoint
from ..training.layout import BEST, LAST
from ..training.prepare import model_sizes, prepare
from ..training.writer import RunRecord, RunWriter
from .config import FederatedConfig, load_federated
from .layout import FederationFiles
from .personal import initial_model


def export_global(out: str | Path, fed: FederatedConfig, checkpoint: str = LAST) -> Path:
    """Write ``OUT/global``: one ordinary run over every sensor.

    Shared weights are the server's last global ones (every client holds them after
    the last round); each sensor-dependent tensor (``[..., N, ...]``) takes, at every
    sensor's position, the personalised values of the client that owns it (entries
    between two clients' sensors keep their initial values). The global run scales
    inputs with the scaler fitted on all sensors, the clients each with their own,
    so its metrics are close to, not the same as, the clients'.
    """
    files = FederationFiles(out)
    _, cfg = load_federated(files.config)
    prep = prepare(cfg)
    model = initial_model(cfg, prep.data)
    state = model.state_dict()
    dims = sensor_axes(cfg.model.name, model_sizes(prep.data, cfg.model.probabilistic), cfg.model.params)
    gpos = {s: i for i, s in enumerate(prep.series.sensor_ids)}
    for c in range(fed.clients):
        cfiles = files.client(c)
        ck = load_checkpoint(cfiles.checkpoint(checkpoint))["model"]
        own = json.loads(cfiles.client_info.read_text())["own_sensors"]
        g_idx = torch.tensor([gpos[s] for s in own])
        c_idx = torch.arange(len(own))  # own sensors come first in a client's order
        for k, v in ck.items():
            if k not in dims:
                if c == 0:
                    state[k] = v
                continue
            state[k] = _scatter(state[k], v, dims[k], g_idx, c_idx)
    model.load_state_dict(state)
    record = RunRecord.of(cfg, prep)
    ckpt = record.checkpoint(model.state_dict(), optimizer={}, scheduler={}, trainer={"epoch": fed.rounds},
                             scaler=prep.data.scaler.state_dict())
    info = record.info(model, prep, source=str(prep.series.source), federated={"assembled_from": fed.clients})
    writer = RunWriter(files.global_run, record)
    writer.publish(info, {BEST: ckpt, LAST: ckpt})
    return writer.root


def _scatter(dst: torch.Tensor, src: torch.Tensor, dims: list[int], g_idx: torch.Tensor,
             c_idx: torch.Tensor) -> torch.Tensor:
    """``dst`` with the block of ``src`` at client positions ``c_idx`` copied to global positions
    ``g_idx`` along every sensor dimension in ``dims`` (other dimensions whole)."""
    dst = dst.clone()
    n = len(dims)
    g_index, c_index = [], []
    for d in range(dst.dim()):
        if d in dims:
            j = dims.index(d)
            shape = [1] * n
            shape[j] = -1
            g_index.append(g_idx.view(shape))
            c_index.append(c_idx.view(shape))
        else:
            g_index.append(slice(None))
            c_index.append(slice(None))
    dst[tuple(g_index)] = src[tuple(c_index)].to(dst.dtype)
    return dst
