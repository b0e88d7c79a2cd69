"""Blend: a per-step weighted average of trained forecasters of the same data.

A federated client's personalised model can be the blend of the federation's model and a model
trained on the client's own data alone, with one weight per forecast step chosen on the client's
validation split (:func:`stgraph.federated.local.blend_client`). This is the local/global mixture of
APFL (Deng, Kamani & Mahdavi, "Adaptive Personalized Federated Learning", 2020), with the mixing
weight chosen on validation instead of learned by gradient. Saved as an ordinary run, the blend is
evaluated, predicted and plotted like any model.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .registry import build_model, register

GRID = 21  #: weights 0, 0.05, ..., 1 tried at every forecast step by :func:`choose_weights`


@register("blend")
class Blend(nn.Module):
    r"""``sum_k w[k, t] * member_k(x)`` for every forecast step ``t``.

    Args:
        members: ``[{"name": registry name, "params": model.params}, ...]``, each built for the same
            sizes as the blend (the run's data).
        weights: ``[K][T_out]`` (one weight per member and forecast step) or ``[K]`` (the same at every
            step); at every step the weights are >= 0 and add up to 1.
        **sizes: the registry's size arguments (``num_nodes``, ``horizon``, ...), passed on to the members.

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]`` (z-scored), ``graph`` and ``covariates`` as every model takes them
        - output: ``[B, T_out, N, C_out]`` in the members' z-score units (point forecasts only)
    """

    def __init__(self, members: list, weights: list, **sizes):
        super().__init__()
        if sizes.get("probabilistic"):
            raise ValueError("blend averages point forecasts; a probabilistic run cannot be blended")
        if not members or not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in members):
            raise ValueError(f"members must be a non-empty list of {{'name': ..., 'params': {{...}}}}; got {members!r}")
        self.members = nn.ModuleList(build_model(m["name"], sizes, m.get("params") or {}) for m in members)
        horizon = int(sizes["horizon"])
        w = torch.as_tensor(weights, dtype=torch.float32)
        if w.dim() == 1:
            w = w[:, None].expand(-1, horizon)
        if tuple(w.shape) != (len(members), horizon):
            raise ValueError(f"weights have shape {tuple(w.shape)}; expected ({len(members)},) or "
                             f"({len(members)}, {horizon}): one row per member, one column per forecast step")
        if bool((w < 0).any()) or not torch.allclose(w.sum(0), torch.ones(horizon), atol=1e-4):
            raise ValueError(f"weights must be >= 0 and add up to 1 at every step; column sums {w.sum(0).tolist()}")
        self.register_buffer("weights", w.contiguous(), persistent=False)  # [K, T_out]; the config holds them

    def reset_parameters(self) -> None:
        for m in self.members:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: torch.Tensor, graph=None, covariates: dict | None = None) -> torch.Tensor:
        out = None
        for k, member in enumerate(self.members):
            y = member(x, graph, covariates)
            if not isinstance(y, torch.Tensor):
                raise ValueError(f"blend member {k} returned a {type(y).__name__}; blend averages point forecasts")
            part = self.weights[k].to(y.dtype)[None, :, None, None] * y
            out = part if out is None else out + part
        return out


def blend_params(members: Sequence[tuple[str, dict]], weights) -> dict:
    """``model.params`` of a :class:`Blend` of ``members`` (``(name, params)`` pairs) with ``weights``
    (``[K][T_out]`` or ``[K]``, nested lists or a tensor)."""
    w = weights.tolist() if isinstance(weights, torch.Tensor) else [list(map(float, r)) if isinstance(r, (list, tuple))
                                                                   else float(r) for r in weights]
    return {"members": [{"name": n, "params": dict(p)} for n, p in members], "weights": w}


def choose_weights(fed: torch.Tensor, local: torch.Tensor, y: torch.Tensor, null_value: float,
                   grid: int = GRID) -> tuple[torch.Tensor, torch.Tensor]:
    """Per forecast step, the weight ``a`` on ``local`` (``1 - a`` on ``fed``) among ``grid`` evenly spaced
    values in [0, 1] with the lowest masked MAE against ``y``.

    Args:
        fed, local, y: ``[W, T_out, N, C]`` forecasts and targets in data units.

    Returns:
        ``(a [T_out], mae [grid, T_out])``: the chosen weights and the MAE of every grid value at every step.
    """
    from ..metrics import MetricAccumulator

    horizon = y.shape[1]
    values = torch.linspace(0, 1, grid)
    mae = torch.empty(grid, horizon)
    for i, a in enumerate(values):
        acc = MetricAccumulator(horizon, null_value=null_value)
        acc.update(a * local + (1 - a) * fed, y)
        res = acc.compute(tuple(range(1, horizon + 1)))
        mae[i] = torch.tensor([res["horizons"][str(t)]["mae"] for t in range(1, horizon + 1)])
    return values[mae.argmin(0)], mae
