"""Which weights stay on a client (personalised) and which travel (shared), and the clients' common start.

A state-dict key is *personal* when its shape depends on the number of sensors (e.g. stgt's sensor
embeddings ``embed.node.weight`` ``[N, D]``: :func:`stgraph.training.axes.sensor_axes`, the answer the
online update uses too) or when it matches one of ``federated.personal``'s regular expressions; every
other floating-point key is *shared*: averaged by the server, the same on every client.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch

from ..config import RunConfig
from ..errors import ConfigError
from ..models.registry import build_model
from ..training.axes import sensor_axes
from ..training.prepare import make_model, model_sizes
from ..training.trainer import seed_everything

TEMPLATE_SENSORS = 3
"""The sensor count of the template model whose shared weights every client starts from
(:func:`initial_model`); the shared weights do not depend on it, but their random draws do."""


def personal_keys(model_name: str, sizes: dict, params: dict, patterns: Sequence[str] = ()) -> list[str]:
    """State-dict keys that stay on the client: those with a sensor axis
    (:func:`~stgraph.training.axes.sensor_axes`) and those matching one of ``patterns`` (regular
    expressions, ``re.search``)."""
    try:
        rx = [re.compile(p) for p in patterns]
    except re.error as e:
        raise ConfigError(f"federated.personal: {e.pattern!r} is not a regular expression ({e})") from None
    tied = sensor_axes(model_name, sizes, params)
    with torch.random.fork_rng(devices=[]):  # the keys only: no random draw of this build leaks out
        keys = build_model(model_name, {**sizes, "num_nodes": TEMPLATE_SENSORS}, params).state_dict()
    return sorted(k for k in keys if k in tied or any(r.search(k) for r in rx))


def shared_keys(model: torch.nn.Module, personal: Sequence[str]) -> list[str]:
    """Floating-point state-dict keys that are averaged (sorted; the order of Flower's parameter list)."""
    skip = set(personal)
    return sorted(k for k, v in model.state_dict().items() if k not in skip and v.is_floating_point())


def initial_model(cfg: RunConfig, data) -> torch.nn.Module:
    """The client's model; its shared weights are the same on every client.

    Shared weights come from a :data:`TEMPLATE_SENSORS`-sensor model built with seed ``train.seed``
    (they do not depend on the number of sensors), so every client starts from the same
    point whatever its size, and Flower's "initial parameters from one random
    client" is reproducible.
    """
    sizes = model_sizes(data, cfg.model.probabilistic)
    seed_everything(cfg.train.seed)
    template = build_model(cfg.model.name, {**sizes, "num_nodes": TEMPLATE_SENSORS}, cfg.model.params).state_dict()
    seed_everything(cfg.train.seed)
    model = make_model(cfg, data)
    state = model.state_dict()
    for k, v in template.items():
        if state[k].shape == v.shape:
            state[k] = v
    model.load_state_dict(state)
    return model
