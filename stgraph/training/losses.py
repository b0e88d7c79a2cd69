"""Training losses: callables ``loss(forecaster, out, y) -> scalar`` that the
:class:`~stgraph.training.trainer.Trainer` takes as ``loss=``.

* :func:`masked_loss` (the default): masked MAE in the data's units for a point forecast, or the masked
  negative log-likelihood of a probabilistic head's distribution (:mod:`stgraph.distributions`); entries
  equal to the data's null value are out of it. ``out`` is the model's z-scored output ``[B, T_out, N, C_out]``
  (or a ``Normal`` of that shape), ``y`` the targets in data units, the same shape.
* :class:`FedProx`: a base loss plus FedProx's proximal term ``mu / 2 * ||w - w_global||^2`` on the anchored
  (shared) weights, for federated clients (Li et al., 2020).
"""
from __future__ import annotations

import torch
from torch.distributions import Distribution

from ..metrics import masked_abs_error_sum, masked_nll_sum


def masked_loss_sum(forecaster, out, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked sum of the per-entry loss (a scalar) and the mask ``[B, T_out, N, C_out]``."""
    out = forecaster.to_units(out)
    if isinstance(out, Distribution):
        return masked_nll_sum(out, y, forecaster.null_value)
    return masked_abs_error_sum(out, y, forecaster.null_value)


def masked_loss(forecaster, out, y: torch.Tensor) -> torch.Tensor:
    """Masked MAE (point) or masked NLL (a probabilistic head's distribution) in data units, a scalar:
    the masked sum over the number of valid entries."""
    total, mask = masked_loss_sum(forecaster, out, y)
    return total / mask.sum().clamp(min=1)


class FedProx:
    """``base`` plus ``mu / 2 * sum ||p - a||^2`` over the parameters of ``model`` named in ``anchors``.

    Args:
        model: the model being trained (its parameters, on their device).
        anchors: parameter name -> the global weights it is pulled towards (e.g. the round's shared weights);
            names that are not parameters of ``model`` are ignored.
        mu: the proximal weight (0: ``base`` alone).
        base: the loss the term is added to (default :func:`masked_loss`).
    """

    def __init__(self, model: torch.nn.Module, anchors: dict | None, mu: float, base=masked_loss) -> None:
        self.mu = float(mu)
        self.base = base
        params = dict(model.named_parameters())
        self.anchors = [(params[k], v.to(params[k].device)) for k, v in (anchors or {}).items() if k in params]

    def __call__(self, forecaster, out, y: torch.Tensor) -> torch.Tensor:
        loss = self.base(forecaster, out, y)
        if self.mu > 0 and self.anchors:
            loss = loss + 0.5 * self.mu * sum(((p - a) ** 2).sum() for p, a in self.anchors)
        return loss


__all__ = ["masked_loss", "masked_loss_sum", "FedProx"]
