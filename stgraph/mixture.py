"""A mixture of ``K`` Normals: a forecast distribution that can be two-peaked (``model.distribution = mixture``).

Traffic at the edge of congestion is bimodal (the queue reaches the sensor or it does not: "either 60 or
20 mph"); one Normal puts its mass between the peaks, where nothing happens. The probabilistic head of
stgt with ``model.params.components = K`` (``K = 2`` by default for ``mixture``) returns, per entry, ``K``
locations, scales and mixing logits; :func:`stgraph.distributions.from_head` makes them a
:class:`NormalMixture`, and every function of :mod:`stgraph.distributions` (NLL, median, quantiles,
interval, CRPS) works on it.

Shapes: component parameters ``[..., K]`` (e.g. ``[B, T_out, N, C_out, K]``); the distribution's batch
shape, and that of every value, quantile and score, is ``[...]`` (e.g. ``[B, T_out, N, C_out]``).
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

#: bisection steps of :meth:`NormalMixture.icdf`: the bracket (at most the spread of the component
#: quantiles) shrinks by 2**-60, below float64 resolution
BISECTION_STEPS = 60


def _abs_mean(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``E|X|`` for ``X ~ Normal(m, s)``: ``m (2 Phi(m/s) - 1) + 2 s phi(m/s)``."""
    z = m / s
    return m * (2 * torch.special.ndtr(z) - 1) + 2 * s * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


class NormalMixture(Distribution):
    """``sum_k w_k Normal(locs_k, scales_k)`` with ``w = softmax(logits)`` over the last dimension.

    Args:
        locs: component locations ``[..., K]``.
        scales: component scales ``> 0``, ``[..., K]``.
        logits: mixing logits ``[..., K]`` (any real; only differences matter).
    """

    arg_constraints = {"locs": constraints.real, "scales": constraints.positive}
    support = constraints.real
    has_rsample = False

    def __init__(self, locs: torch.Tensor, scales: torch.Tensor, logits: torch.Tensor, validate_args=None):
        self.locs, self.scales, self.logits = torch.broadcast_tensors(locs, scales, logits)
        super().__init__(self.locs.shape[:-1], validate_args=False if validate_args is None else validate_args)

    @property
    def components(self) -> int:
        return self.locs.shape[-1]

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights ``[..., K]`` (sum 1)."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def loc(self) -> torch.Tensor:
        """The mixture's mean ``[...]`` (a location with the batch shape, as a Normal's ``loc``)."""
        return self.mean

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log sum_k w_k phi((y - m_k)/s_k) / s_k`` by log-sum-exp (stable far in the tails)."""
        value = torch.as_tensor(value, dtype=self.locs.dtype, device=self.locs.device).unsqueeze(-1)
        z = (value - self.locs) / self.scales
        comp = -0.5 * z * z - torch.log(self.scales) - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(torch.log_softmax(self.logits, dim=-1) + comp, dim=-1)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k Phi((y - m_k)/s_k)``."""
        value = torch.as_tensor(value, dtype=self.locs.dtype, device=self.locs.device).unsqueeze(-1)
        return (self.weights * torch.special.ndtr((value - self.locs) / self.scales)).sum(-1)

    @torch.no_grad()
    def icdf(self, q: torch.Tensor) -> torch.Tensor:
        """The ``q``-quantile per entry by batched bisection on :meth:`cdf` (no gradient).

        The bracket is exact: at the smallest component ``q``-quantile every component's CDF is ``<= q``,
        at the largest every one is ``>= q``, so the mixture's ``q``-quantile lies between them. In float64:
        between two far peaks the CDF is flat to within float32's resolution, which would leave the median
        anywhere in the gap."""
        q = torch.as_tensor(q, dtype=torch.float64, device=self.locs.device).expand(self.batch_shape)
        locs, scales = self.locs.double(), self.scales.double()
        w = torch.softmax(self.logits.double(), dim=-1)
        comp = locs + scales * torch.special.ndtri(q.unsqueeze(-1))
        lo, hi = comp.amin(-1), comp.amax(-1)
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            below = (w * torch.special.ndtr((mid.unsqueeze(-1) - locs) / scales)).sum(-1) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (0.5 * (lo + hi)).to(self.locs.dtype)

    @property
    def median(self) -> torch.Tensor:
        return self.icdf(torch.full(self.batch_shape, 0.5, dtype=self.locs.dtype, device=self.locs.device))

    @property
    def mean(self) -> torch.Tensor:
        return (self.weights * self.locs).sum(-1)

    @property
    def variance(self) -> torch.Tensor:
        """``sum_k w_k (s_k^2 + m_k^2) - mean^2`` (within plus between components)."""
        second = (self.weights * (self.scales ** 2 + self.locs ** 2)).sum(-1)
        return (second - self.mean ** 2).clamp(min=0)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Draws ``[*sample_shape, ...]``: a component by its weight, then its Normal."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape
            k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            m = torch.gather(self.locs.expand(shape + (self.components,)), -1, k).squeeze(-1)
            s = torch.gather(self.scales.expand(shape + (self.components,)), -1, k).squeeze(-1)
            return m + s * torch.randn(shape, dtype=m.dtype, device=m.device)

    def crps(self, value: torch.Tensor) -> torch.Tensor:
        """The CRPS in closed form: ``E|X - y| - E|X - X'| / 2`` with, for Normal components,
        ``E|X - y| = sum_k w_k A(y - m_k, s_k)`` and ``E|X - X'| = sum_jk w_j w_k A(m_j - m_k,
        sqrt(s_j^2 + s_k^2))``, ``A(m, s) = E|Normal(m, s)|``. Same shape as ``value``."""
        value = torch.as_tensor(value, dtype=self.locs.dtype, device=self.locs.device).unsqueeze(-1)
        w = self.weights
        first = (w * _abs_mean(value - self.locs, self.scales)).sum(-1)
        dm = self.locs.unsqueeze(-1) - self.locs.unsqueeze(-2)
        ds = torch.sqrt(self.scales.unsqueeze(-1) ** 2 + self.scales.unsqueeze(-2) ** 2)
        pair = (w.unsqueeze(-1) * w.unsqueeze(-2) * _abs_mean(dm, ds)).sum((-1, -2))
        return first - 0.5 * pair
