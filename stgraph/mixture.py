"""Mixtures of ``K`` components: forecast distributions that can be two-peaked (``model.distribution =
mixture`` or ``lognormal-mixture``).

Traffic at the edge of congestion is bimodal (the queue reaches the sensor or it does not: "either 60 or
20 mph"); one Normal puts its mass between the peaks, where nothing happens. The probabilistic head of
stgt with ``model.params.components = K`` (``K = 2`` by default for a mixture) returns, per entry, ``K``
locations, scales and mixing logits; :func:`stgraph.distributions.from_head` makes them a
:class:`NormalMixture` (``mixture``) or a :class:`Mixture` of censored log-normals (``lognormal-mixture``:
counts and other non-negative targets, every component with its mass at zero), and every function of
:mod:`stgraph.distributions` (NLL, median, quantiles, interval, CRPS) works on them.

Shapes: component parameters ``[..., K]`` (e.g. ``[B, T_out, N, C_out, K]``); the distribution's batch
shape, and that of every value, quantile and score, is ``[...]`` (e.g. ``[B, T_out, N, C_out]``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributions import Distribution, Normal

#: steps of :meth:`Mixture.icdf` at most: were each a bisection, the bracket (at most the spread of the
#: component quantiles) would shrink by 2**-60, below float64 resolution; Newton steps end far sooner
BISECTION_STEPS = 60
#: quantile atoms per component of :meth:`Mixture.crps` (the midpoint rule on each component's quantile
#: function; the CRPS of the atoms tends to the mixture's as ``1 / ATOMS**2`` where the quantile function
#: is smooth)
ATOMS = 64


def _abs_mean(m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``E|X|`` for ``X ~ Normal(m, s)``: ``m (2 Phi(m/s) - 1) + 2 s phi(m/s)``."""
    z = m / s
    return m * (2 * torch.special.ndtr(z) - 1) + 2 * s * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def atoms_crps(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CRPS of the discrete distribution with atoms ``x`` ``[..., M]`` of weights ``a`` ``[..., M]``
    (summing to 1) at ``y`` ``[...]``: ``E|X - y| - E|X - X'| / 2``, with ``E|X - X'| = 2 sum_i a_i x_(i)
    (2 C_i - a_i - 1)`` over the atoms sorted by value (``C_i`` the cumulative weight up to and with
    atom ``i``): ``O(M log M)``, not ``O(M^2)``."""
    first = (a * (x - y.unsqueeze(-1)).abs()).sum(-1)
    xs, order = torch.sort(x, dim=-1)
    a_s = torch.gather(a, -1, order)
    c = torch.cumsum(a_s, dim=-1)
    pair = 2 * (a_s * xs * (2 * c - a_s - 1)).sum(-1)
    return first - 0.5 * pair


class Mixture(Distribution):
    """``sum_k w_k D_k`` with ``w = softmax(logits)`` over the last dimension and ``D = family(*params)``
    a distribution of batch shape ``[..., K]`` with ``cdf``, ``icdf``, ``log_prob``, ``mean``,
    ``variance`` and ``sample`` (``Normal``, :class:`~stgraph.distributions.CensoredLogNormal`).

    The median and quantiles are found by batched bisection on the CDF in float64 (between two far peaks
    the CDF is flat to within float32's resolution, which would leave the median anywhere in the gap);
    the CRPS from :data:`ATOMS` quantile atoms per component (:func:`atoms_crps`).

    Args:
        family: the component class, called as ``family(*params)``.
        params: the component parameters, each ``[..., K]``.
        logits: mixing logits ``[..., K]`` (any real; only differences matter).
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, family: Callable[..., Distribution], params: tuple, logits: torch.Tensor,
                 validate_args=None):
        *params, logits = torch.broadcast_tensors(*params, logits)
        self.family, self.params, self.logits = family, tuple(params), logits
        self.parts = family(*self.params, validate_args=False)
        super().__init__(logits.shape[:-1], validate_args=False if validate_args is None else validate_args)

    @property
    def components(self) -> int:
        return self.logits.shape[-1]

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights ``[..., K]`` (sum 1)."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def loc(self) -> torch.Tensor:
        """The mixture's mean ``[...]`` (a location with the batch shape, as a Normal's ``loc``)."""
        return self.mean

    def _value(self, value) -> torch.Tensor:
        return torch.as_tensor(value, dtype=self.logits.dtype, device=self.logits.device).unsqueeze(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log sum_k w_k p_k(y)`` by log-sum-exp (stable far in the tails)."""
        comp = self.parts.log_prob(self._value(value))
        return torch.logsumexp(torch.log_softmax(self.logits, dim=-1) + comp, dim=-1)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k F_k(y)``."""
        return (self.weights * self.parts.cdf(self._value(value))).sum(-1)

    @torch.no_grad()
    def icdf(self, q: torch.Tensor) -> torch.Tensor:
        """The ``q``-quantile per entry by safeguarded Newton steps on :meth:`cdf` in float64 (no gradient).

        The bracket is exact: at the smallest component ``q``-quantile every component's CDF is ``<= q``,
        at the largest every one is ``>= q``, so the mixture's ``q``-quantile lies between them; it is the
        smallest one itself where the mixture's CDF there already reaches ``q`` (a mass at zero). Each step
        shrinks the bracket to the side the CDF says and takes the Newton step ``x - (F(x) - q) / f(x)``
        where it stays inside, the bracket's midpoint where it does not (a flat CDF between far peaks): the
        quadratic convergence of Newton with bisection's guarantee, :data:`BISECTION_STEPS` steps at most."""
        q = torch.as_tensor(q, dtype=torch.float64, device=self.logits.device).expand(self.batch_shape)
        parts = self.family(*(p.double() for p in self.params), validate_args=False)
        logw = torch.log_softmax(self.logits.double(), dim=-1)
        w = logw.exp()
        comp = parts.icdf(q.unsqueeze(-1).expand(parts.batch_shape))
        lo, hi = comp.amin(-1), comp.amax(-1)
        floor = lo
        at_floor = (w * parts.cdf(lo.unsqueeze(-1))).sum(-1) >= q  # a mass there (a count's zero) holds q
        x = 0.5 * (lo + hi)
        for step in range(BISECTION_STEPS):
            v = x.unsqueeze(-1)
            gap = (w * parts.cdf(v)).sum(-1) - q
            below = gap < 0
            lo, hi = torch.where(below, x, lo), torch.where(below, hi, x)
            newton = x - gap / torch.logsumexp(logw + parts.log_prob(v), dim=-1).exp()
            inside = torch.isfinite(newton) & (newton >= lo) & (newton <= hi)
            x = torch.where(inside, newton, 0.5 * (lo + hi))
            if step % 4 == 3 and bool(((hi - lo) <= 1e-12 * (1 + hi.abs())).logical_or(gap.abs() <= 1e-13).all()):
                break
        return torch.where(at_floor, floor, x).to(self.logits.dtype)

    @property
    def median(self) -> torch.Tensor:
        return self.icdf(torch.full(self.batch_shape, 0.5, dtype=self.logits.dtype, device=self.logits.device))

    @property
    def mean(self) -> torch.Tensor:
        return (self.weights * self.parts.mean).sum(-1)

    @property
    def variance(self) -> torch.Tensor:
        """``sum_k w_k (var_k + mean_k^2) - mean^2`` (within plus between components)."""
        means = self.parts.mean
        second = (self.weights * (self.parts.variance + means ** 2)).sum(-1)
        return (second - self.mean ** 2).clamp(min=0)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Draws ``[*sample_shape, ...]``: a component by its weight, then a draw of it."""
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            draws = self.parts.sample(sample_shape)  # [*sample_shape, ..., K]
            return torch.gather(draws, -1, k).squeeze(-1)

    def crps(self, value: torch.Tensor) -> torch.Tensor:
        """The CRPS of :data:`ATOMS` quantile atoms per component (levels ``(i + 1/2) / ATOMS``, weight
        ``w_k / ATOMS`` each; :func:`atoms_crps`). Same shape as ``value``."""
        levels = (torch.arange(ATOMS, dtype=self.logits.dtype, device=self.logits.device) + 0.5) / ATOMS
        shape = self.parts.batch_shape
        x = self.parts.icdf(levels.view(ATOMS, *([1] * len(shape))).expand(ATOMS, *shape))  # [M, ..., K]
        x = x.movedim(0, -1).flatten(-2)  # [..., K * M]
        a = (self.weights / ATOMS).unsqueeze(-1).expand(*shape, ATOMS).flatten(-2)
        value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
        return atoms_crps(x, a, value)


class NormalMixture(Mixture):
    """``sum_k w_k Normal(locs_k, scales_k)`` with ``w = softmax(logits)`` over the last dimension.

    Args:
        locs: component locations ``[..., K]``.
        scales: component scales ``> 0``, ``[..., K]``.
        logits: mixing logits ``[..., K]`` (any real; only differences matter).
    """

    def __init__(self, locs: torch.Tensor, scales: torch.Tensor, logits: torch.Tensor, validate_args=None):
        super().__init__(Normal, (locs, scales), logits, validate_args)

    @property
    def locs(self) -> torch.Tensor:
        return self.params[0]

    @property
    def scales(self) -> torch.Tensor:
        return self.params[1]

    def crps(self, value: torch.Tensor) -> torch.Tensor:
        """The CRPS in closed form: ``E|X - y| - E|X - X'| / 2`` with, for Normal components,
        ``E|X - y| = sum_k w_k A(y - m_k, s_k)`` and ``E|X - X'| = sum_jk w_j w_k A(m_j - m_k,
        sqrt(s_j^2 + s_k^2))``, ``A(m, s) = E|Normal(m, s)|``. Same shape as ``value``."""
        value = self._value(value)
        w = self.weights
        first = (w * _abs_mean(value - self.locs, self.scales)).sum(-1)
        dm = self.locs.unsqueeze(-1) - self.locs.unsqueeze(-2)
        ds = torch.sqrt(self.scales.unsqueeze(-1) ** 2 + self.scales.unsqueeze(-2) ** 2)
        pair = (w.unsqueeze(-1) * w.unsqueeze(-2) * _abs_mean(dm, ds)).sum((-1, -2))
        return first - 0.5 * pair
