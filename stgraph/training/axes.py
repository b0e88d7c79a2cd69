"""Which axes of a model's weights are per sensor: :func:`sensor_axes`, the one answer that the online update
(carrying weights over to another set of sensors, :func:`stgraph.online.update.remap_nodes`) and the
federation's personalisation (weights whose shape depends on a client's sensors stay on the client) share.

A state-dict entry's sensor axes are the axes whose size follows the number of sensors ``N``: found by
building the model for two sensor counts on PyTorch's ``meta`` device (shapes only: no memory, no random
draws, so nothing a caller seeded changes) and comparing shapes. E.g. stgt's ``embed.node.weight [N, D]``
-> ``[0]``, VAR's ``weight [N, N]`` -> ``[0, 1]``, the historical average's ``table [S, N, C]`` -> ``[1]``.
"""
from __future__ import annotations

import torch

#: the two sensor counts the models are built for (any two distinct counts give the same answer)
PROBE_SENSORS = (3, 4)


def _shapes(name: str, sizes: dict, params: dict, num_nodes: int) -> dict[str, torch.Size]:
    from ..models.registry import build_model

    sizes = {**sizes, "num_nodes": num_nodes}
    try:
        with torch.device("meta"):
            state = build_model(name, sizes, params).state_dict()
    except Exception:  # noqa: BLE001 - a constructor that needs real tensors: built on the CPU, RNG kept as it was
        with torch.random.fork_rng(devices=[]):
            state = build_model(name, sizes, params).state_dict()
    return {k: v.shape for k, v in state.items()}


def sensor_axes(model: str, sizes: dict, params: dict | None = None) -> dict[str, list[int]]:
    """For each state-dict key of the registry model ``model`` whose shape depends on the number of sensors,
    the axes of that size (ascending); keys with no sensor axis are left out.

    Args:
        model: a registry name or a user model's import path (``cfg.model.name``).
        sizes: the size arguments of the constructor (:func:`stgraph.training.prepare.model_sizes`); its
            ``num_nodes`` does not matter.
        params: ``cfg.model.params``.
    """
    a, b = (_shapes(model, sizes, dict(params or {}), n) for n in PROBE_SENSORS)
    return {k: [d for d, (x, y) in enumerate(zip(a[k], b[k])) if x != y] for k in a if a[k] != b[k]}


__all__ = ["sensor_axes", "PROBE_SENSORS"]
