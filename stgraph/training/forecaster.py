"""A :class:`Forecaster`: a model with its graph, data and device, that forecasts in data units.

It is what a finished run (:class:`~stgraph.training.run.Run`) holds and what the
:class:`~stgraph.training.trainer.Trainer` trains; it never builds an optimiser. Shapes follow the
registry's forward contract (:mod:`stgraph.models.registry`): inputs ``x [B, T_in, N, C_in]``, the graph's
``edge_index [2, E]`` and ``edge_weight [E]``, forecasts ``[B, T_out, N, C_out]`` (or a distribution of
that shape, :mod:`stgraph.distributions`).

Process-wide settings (torch threads, the allocator: :func:`stgraph.runtime.configure_process`) are the
entry point's job (``train``, ``Run.open``, ``update_run``), not the forecaster's.
"""
from __future__ import annotations

import warnings

import torch
from torch.distributions import Distribution

from ..config import TrainConfig
from ..distributions import check_name, check_support, from_head, point
from ..mixture import NormalMixture
from ..errors import StgraphWarning
from ..metrics import MetricAccumulator, ProbabilisticAccumulator, default_steps, valid_mask
from ..runtime import autocast_context, resolve_device
from .distributed import current as current_dist
from .distributed import device_for


class AtLeastZero(Distribution):
    """``max(0, X)`` for a forecast distribution ``X`` (``data.nonnegative``): its median and quantiles are
    ``X``'s clipped at 0, so a band keeps the readings ``X``'s band held (for ``y >= 0``,
    ``q05 <= y <= q95`` exactly when ``max(0, q05) <= y <= max(0, q95)``). ``loc``, ``stddev`` and
    ``log_prob`` are ``X``'s (the head's spread, the loss's likelihood); the CRPS is the clipped
    quantiles' (:func:`stgraph.distributions.crps`). Shapes: ``X``'s batch shape, ``[B, T_out, N, C_out]``."""

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, base: Distribution) -> None:
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def loc(self) -> torch.Tensor:
        return self.base.loc

    @property
    def median(self) -> torch.Tensor:
        return point(self.base).clamp(min=0)

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    @property
    def stddev(self) -> torch.Tensor:
        return self.base.stddev

    @property
    def variance(self) -> torch.Tensor:
        return self.base.variance

    def icdf(self, q: torch.Tensor) -> torch.Tensor:
        return self.base.icdf(q).clamp(min=0)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        return torch.where(value < 0, torch.zeros_like(value), self.base.cdf(value.clamp(min=0)))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape).clamp(min=0)


class Forecaster:
    """``model`` forecasting ``data`` over ``graph`` on the device ``cfg.device`` names.

    Args:
        model: a forecasting ``nn.Module`` (registry contract); moved to the device.
        data: a :class:`~stgraph.data.ForecastData` (its scaler turns z-scores into data units).
        graph: PyG ``Data`` with ``edge_index [2, E]``, ``edge_weight [E]``; moved to the device.
        cfg: a :class:`~stgraph.config.TrainConfig`: ``device``, ``amp``, ``compile``, ``batch_size`` and
            ``workers`` say how to predict (default: ``TrainConfig()``).
        distribution: what a probabilistic head's ``Normal`` becomes in data units
            (:data:`stgraph.distributions.DISTRIBUTIONS`, ``model.distribution``).
        nonnegative: the target cannot be below 0 (``data.nonnegative``, counts): every prediction
            (:meth:`in_units`: point forecasts, quantiles, bands) is clipped at 0; the training loss is not.

    Attributes:
        model, graph, data, device, dist (:class:`~stgraph.training.distributed.Dist`), null_value,
        trainable (whether any parameter trains), forward_model (``model``, compiled when ``cfg.compile``).
    """

    def __init__(self, model: torch.nn.Module, data, graph, cfg: TrainConfig | None = None,
                 distribution: str = "normal", nonnegative: bool = False) -> None:
        self.cfg = cfg = cfg if cfg is not None else TrainConfig()
        self.distribution = check_name(distribution)
        self.nonnegative = bool(nonnegative)
        self.data = data
        self.dist = current_dist()
        self.device = resolve_device(device_for(cfg.device) if self.dist.enabled else cfg.device)
        self.model = model.to(self.device)
        self.graph = graph.to(self.device)
        mean, std = data.target_stats()
        self._mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self._std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.null_value = float(data.null_value)
        if self.distribution != "normal" and isinstance(getattr(data, "targets", None), torch.Tensor):
            valid = valid_mask(data.targets, self.null_value)  # a non-negative distribution needs y >= 0
            if bool(valid.any()):
                low = float(torch.where(valid, data.targets, torch.inf).min())
                check_support(self.distribution, low, "the training data's target")
        self.trainable = any(p.requires_grad for p in self.model.parameters())
        self.autocast = autocast_context(self.device, cfg.amp)
        self.forward_model = self.compiled(self.model)

    def compiled(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` through ``torch.compile`` when ``cfg.compile`` (as it is where that is unavailable)."""
        if not self.cfg.compile:
            return module
        try:
            return torch.compile(module)
        except Exception as e:  # pragma: no cover - depends on the platform's compiler
            if self.dist.is_main:
                warnings.warn(StgraphWarning(f"torch.compile unavailable ({e}); training uncompiled"), stacklevel=2)
            return module

    def forward(self, batch, module: torch.nn.Module | None = None):
        """The z-scored forecast of ``batch`` (on the device) by ``module`` (default :attr:`forward_model`)
        under the autocast ``cfg.amp`` asks for: ``[B, T_out, N, C_out]`` or a ``Normal`` of that shape."""
        with self.autocast():
            graph = self.graph if getattr(batch, "graph", None) is None else batch.graph  # per-window graphs
            return (self.forward_model if module is None else module)(batch.x, graph, batch.covariates)

    def graph_for(self, covariates: dict):
        """The graph of a forecast's windows: with a dynamic graph, the periods ``covariates['graph_period']``
        ``[B]`` names (:meth:`stgraph.data.ForecastData.window_at`; the key is removed) as per-window graphs;
        otherwise the run's graph."""
        periods = covariates.pop("graph_period", None)
        if periods is None or getattr(self.data, "dynamic_graph", None) is None:
            return self.graph
        return self.data.dynamic_graph.period_graphs(periods).to(self.device)

    def to_units(self, out):
        """Model output (z-scored) -> data units; a head's ``Normal`` becomes ``self.distribution``
        (:func:`stgraph.distributions.from_head`)."""
        if isinstance(out, torch.distributions.Normal):
            return from_head(out.loc.float() * self._std + self._mean, out.scale.float() * self._std,
                             self.distribution)
        if isinstance(out, NormalMixture):  # components [..., K]: the same affine map per component
            std, mean = self._std[..., None], self._mean[..., None]
            return from_head(out.locs.float() * std + mean, out.scales.float() * std, self.distribution,
                             out.logits.float())
        return out.float() * self._std + self._mean

    def in_units(self, out):
        """What every prediction goes through: :meth:`to_units`, then, with ``nonnegative``, clipped at 0
        (a tensor ``[B, T_out, N, C_out]`` by ``clamp``; a distribution as :class:`AtLeastZero`, whose
        median and quantiles are the clipped ones). The training loss takes :meth:`to_units` unclipped."""
        out = self.to_units(out)
        if not self.nonnegative:
            return out
        return AtLeastZero(out) if isinstance(out, Distribution) else out.clamp(min=0)

    @torch.no_grad()
    def predictions(self, split: str = "test", batch_size: int | None = None, shard: bool = False):
        """Yield ``(forecast, y, starts)`` per batch in data units.

        ``forecast`` is a tensor ``[B, T_out, N, C_out]`` or a distribution of that shape
        (:mod:`stgraph.distributions`), ``y`` ``[B, T_out, N, C_out]``, ``starts`` ``[B]``. With ``shard``
        (distributed) this process yields only its part of every batch of ``batch_size`` windows.
        """
        self.model.eval()
        part = (self.dist.rank, self.dist.world) if shard and self.dist.enabled else None
        for batch in self.data.loader(split, batch_size or self.cfg.batch_size, shuffle=False, shard=part,
                                      workers=self.cfg.workers):
            batch = batch.to(self.device, non_blocking=True)
            yield self.in_units(self.forward(batch)), batch.y, batch.starts

    @torch.no_grad()
    def evaluate(self, split: str = "test", horizons=None) -> dict:
        """Masked MAE/RMSE/MAPE per horizon step and averaged (plus coverage and CRPS when probabilistic).
        ``horizons`` (1-based steps) default to :func:`stgraph.metrics.default_steps` for this data.

        Distributed, each process predicts its part of the split and the sums and counts are added
        over the processes (``all_reduce``): the same figures as one process computing them all."""
        horizon = self.data.horizon
        if horizons is None:
            horizons = default_steps(horizon, self.data.interval_minutes)
        horizons = tuple(h for h in horizons if h <= horizon) or (horizon,)
        acc = MetricAccumulator(horizon, null_value=self.null_value)
        prob = None
        for out, y, _ in self.predictions(split, shard=True):
            if isinstance(out, Distribution):
                prob = prob if prob is not None else ProbabilisticAccumulator(horizon, self.null_value, y.device)
                prob.update(out, y)
                out = point(out)
            acc.update(out, y)
        if self.dist.enabled:
            acc.all_reduce(horizon, self.device)
            probabilistic = self.dist.all_reduce_sum(torch.tensor([float(prob is not None)], device=self.device))
            if probabilistic.item() > 0:
                prob = prob if prob is not None else ProbabilisticAccumulator(horizon, self.null_value, self.device)
                prob.all_reduce(self.dist)
        result = acc.compute(horizons)
        if prob is not None:
            extra = prob.compute(horizons)
            for key, vals in extra["horizons"].items():
                result["horizons"][key].update(vals)
            result["average"].update(extra["average"])
        return result


__all__ = ["AtLeastZero", "Forecaster"]
