"""The predictive distribution of a probabilistic head, chosen by the user (``model.distribution``).

A probabilistic model (stgt with ``model.probabilistic``) returns a ``Normal(loc, scale)`` in
z-scored units; the trainer brings it to data units and :func:`from_head` turns that pair into
the distribution the run asked for:

* ``normal``: ``Normal(loc, scale)``, any real value (speeds, z-scored series);
* ``lognormal``: for counts and other non-negative targets. ``L = log(1 + Y*)`` is
  ``Normal(m, s)`` and the target is ``Y = max(0, exp(L) - 1)``: a shifted log-normal censored
  at zero, so an observed zero has probability ``P(L <= 0)`` (real zeros are likely, not
  impossible) and no quantile is below zero. The head's pair maps as
  ``m = log1p(loc)`` for ``loc >= 0`` and ``m = loc`` below (continuous, slope 1 at 0), so the median
  is ``max(loc, 0)`` (a head that starts at persistence still forecasts the last value), and ``s`` is
  the log-scale whose log-normal ``exp(L)`` with median ``M = 1 + max(loc, 0)`` has standard deviation
  ``scale``: with ``r = scale / M``, ``s^2 = log((1 + sqrt(1 + 4 r^2)) / 2)`` (``s ~ r``, the delta
  method, for a small ``r``; ``s ~ sqrt(log r)`` for a large one), bounded to
  ``[LOG_SCALE_MIN, LOG_SCALE_MAX]``. A wide head scale on a small count (a Normal-sized scale of 18 on
  counts near 0) therefore gives a band of tens, not ``exp(18 * 1.64)``; quantiles are computed in the
  log domain and every output (quantiles, mean, std, CRPS) stays finite.

* ``mixture``: ``K`` Normals (``model.params.components``, default 2) from a mixture head, for
  two-regime targets (free flow or congested): :class:`~stgraph.mixture.NormalMixture` (median and
  quantiles by batched bisection, CRPS in closed form).
* ``lognormal-mixture``: ``K`` censored log-normals from a mixture head, each component's pair mapped as
  ``lognormal`` maps the single head's: two-regime counts (a quiet day or an outbreak), never below zero
  (:class:`~stgraph.mixture.Mixture`; CRPS from quantile atoms).

Everything else works on any of them, with shapes ``[B, T_out, N, C_out]`` (or any shape):
:func:`nll` (the training loss), :func:`point` (the median, what minimises MAE),
:func:`quantile`, :func:`interval`, :func:`crps` and :func:`check_support`.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Normal, constraints

from .errors import ConfigError
from .mixture import Mixture, NormalMixture

DISTRIBUTIONS = ("normal", "lognormal", "mixture", "lognormal-mixture")
#: the distributions of a mixture head (stgt with ``model.params.components``)
MIXTURES = ("mixture", "lognormal-mixture")
#: the distributions whose support is ``y >= 0`` (refused for a target with negative values)
NONNEGATIVE = ("lognormal", "lognormal-mixture")
#: quantile levels of the CRPS integral for distributions without a closed form (midpoints of 100 bins)
CRPS_LEVELS = 100
#: bounds of the log-normal's log-scale ``s`` from :func:`from_head`: at 3 the 95% quantile is at most
#: ``e^(3 * 1.645) ~ 139`` times the median (plus one), at 1e-6 float32 still tells ``m`` and ``m + s`` apart
LOG_SCALE_MIN, LOG_SCALE_MAX = 1e-6, 3.0


class CensoredLogNormal(Distribution):
    """``Y = max(0, exp(L) - 1)`` with ``L ~ Normal(loc, scale)``: non-negative, with a mass at zero.

    Args:
        loc: ``m``, any shape.
        scale: ``s > 0``, the same shape.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.greater_than_eq(0.0)
    has_rsample = False

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=False if validate_args is None else validate_args)

    @property
    def _latent(self) -> Normal:
        return Normal(self.loc, self.scale)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log P(Y = 0)`` at zero (``log Phi(-m / s)``), the log density at ``y > 0``, ``-inf`` below 0."""
        value = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
        pos = value.clamp(min=0)
        log1p = torch.log1p(pos)
        density = self._latent.log_prob(log1p) - log1p
        at_zero = torch.special.log_ndtr(-self.loc / self.scale)
        out = torch.where(value > 0, density, at_zero)
        return torch.where(value < 0, torch.full_like(out, -math.inf), out)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(value, dtype=self.loc.dtype, device=self.loc.device)
        c = torch.special.ndtr((torch.log1p(value.clamp(min=0)) - self.loc) / self.scale)
        return torch.where(value < 0, torch.zeros_like(c), c)

    def icdf(self, q: torch.Tensor) -> torch.Tensor:
        """``max(0, exp(m + s * Phi^-1(q)) - 1)``."""
        q = torch.as_tensor(q, dtype=self.loc.dtype, device=self.loc.device)
        return torch.expm1(self.loc + self.scale * torch.special.ndtri(q)).clamp(min=0)

    @property
    def median(self) -> torch.Tensor:
        return torch.expm1(self.loc).clamp(min=0)

    @property
    def mean(self) -> torch.Tensor:
        """``E[Y] = exp(m + s^2/2) Phi((m + s^2)/s) - Phi(m/s)`` (in float64, returned in ``loc``'s dtype)."""
        m, s = self.loc.double(), self.scale.double()
        out = torch.exp(m + s * s / 2) * torch.special.ndtr((m + s * s) / s) - torch.special.ndtr(m / s)
        return out.to(self.loc.dtype)

    @property
    def variance(self) -> torch.Tensor:
        """``E[Y^2] - E[Y]^2`` with ``E[Y^2] = e^(2m+2s^2) Phi((m+2s^2)/s) - 2 E[e^L; L>0] + P(L>0)``, in float64
        (the difference of two close large numbers for a small ``s``), returned in ``loc``'s dtype."""
        m, s = self.loc.double(), self.scale.double()
        ndtr = torch.special.ndtr
        e1 = torch.exp(m + s * s / 2) * ndtr((m + s * s) / s)
        e2 = torch.exp(2 * m + 2 * s * s) * ndtr((m + 2 * s * s) / s)
        mean = e1 - ndtr(m / s)
        second = e2 - 2 * e1 + ndtr(m / s)
        return (second - mean ** 2).clamp(min=0).to(self.loc.dtype)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return torch.expm1(self._latent.sample(sample_shape)).clamp(min=0)


def check_name(name: str, field: str = "model.distribution") -> str:
    """``name`` if it is one of :data:`DISTRIBUTIONS`; else a ConfigError naming ``field``."""
    if name not in DISTRIBUTIONS:
        raise ConfigError(f"{field} = {name!r}: expected one of {list(DISTRIBUTIONS)} (lognormal for counts and "
                          f"other non-negative targets; a mixture for two-regime targets)")
    return name


def from_head(loc: torch.Tensor, scale: torch.Tensor, name: str = "normal",
              logits: torch.Tensor | None = None) -> Distribution:
    """The distribution ``name`` from the head's location and scale in data units (``[B, T_out, N, C_out]``
    each; see the module docstring for the mapping). ``mixture``: a mixture head's ``K`` components,
    ``loc``, ``scale`` and mixing ``logits`` ``[B, T_out, N, C_out, K]`` (:class:`~stgraph.mixture.NormalMixture`;
    ``lognormal-mixture``: each component mapped as ``lognormal`` maps a single pair)."""
    check_name(name)
    if (name in MIXTURES) != (logits is not None):
        raise ConfigError(f"model.distribution = {name!r} with a {'mixture' if logits is not None else 'single'} "
                          f"head: expected one of {list(MIXTURES)} exactly when the head has mixture components "
                          f"(stgt with model.params.components)")
    if name == "mixture":
        return NormalMixture(loc, scale, logits)
    if name == "normal":
        return Normal(loc, scale)
    pos = loc.clamp(min=0)
    m = torch.where(loc > 0, torch.log1p(pos), loc)
    if name == "lognormal-mixture":
        return Mixture(CensoredLogNormal, (m, log_scale(scale / (1 + pos))), logits)
    return CensoredLogNormal(m, log_scale(scale / (1 + pos)))


def log_scale(r: torch.Tensor) -> torch.Tensor:
    """The log-scale ``s`` of a log-normal whose standard deviation is ``r`` times its median (any shape):
    ``s^2 = log((1 + sqrt(1 + 4 r^2)) / 2)``, written as ``log1p(2 r^2 / (1 + sqrt(1 + 4 r^2)))`` so that a
    small ``r`` keeps its precision (``s ~ r``), bounded to ``[LOG_SCALE_MIN, LOG_SCALE_MAX]``."""
    r2 = r.clamp(max=1e6) ** 2  # beyond r ~ 8100 s is at LOG_SCALE_MAX anyway; no overflow in r^2
    s2 = torch.log1p(2 * r2 / (1 + torch.sqrt(1 + 4 * r2)))
    return torch.sqrt(s2.clamp(min=LOG_SCALE_MIN ** 2)).clamp(max=LOG_SCALE_MAX)


def nll(dist: Distribution, y: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``y`` per entry (same shape as ``y``)."""
    return -dist.log_prob(y)


def point(dist: Distribution) -> torch.Tensor:
    """The point forecast: the median (for the Normal its mean); what minimises the MAE."""
    return dist.loc if isinstance(dist, Normal) else dist.median


def quantile(dist: Distribution, q: float) -> torch.Tensor:
    """The ``q``-quantile per entry (``0 < q < 1``)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile level {q}: expected 0 < q < 1")
    return dist.icdf(torch.full_like(dist.loc, q))


def interval(dist: Distribution, level: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """The central ``level`` interval ``(lower, upper)``: the ``(1 - level)/2`` and ``(1 + level)/2``
    quantiles (never below 0 for ``lognormal``)."""
    return quantile(dist, (1 - level) / 2), quantile(dist, (1 + level) / 2)


def crps(dist: Distribution, y: torch.Tensor) -> torch.Tensor:
    """Continuous ranked probability score per entry (data units; lower is better).

    Normal: the closed form ``s (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi))``. Otherwise
    ``2 * integral over q of the pinball loss of the q-quantile``, by the midpoint rule on
    :data:`CRPS_LEVELS` levels (exact for any distribution, mass points included, as the levels grow).
    """
    if isinstance(dist, Mixture):
        return dist.crps(y)
    if isinstance(dist, Normal):
        z = (y - dist.loc) / dist.scale
        return dist.scale * (z * (2 * torch.special.ndtr(z) - 1) + 2 * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
                             - 1 / math.sqrt(math.pi))
    total = torch.zeros_like(y, dtype=dist.loc.dtype)
    for k in range(CRPS_LEVELS):
        q = (k + 0.5) / CRPS_LEVELS
        diff = y - quantile(dist, q)
        total = total + torch.maximum(q * diff, (q - 1) * diff)
    return 2 * total / CRPS_LEVELS


def check_support(name: str, minimum: float, source=None) -> None:
    """Refuse ``lognormal`` (or ``lognormal-mixture``) for a target whose smallest valid value ``minimum`` is
    below 0."""
    if name in NONNEGATIVE and minimum < 0:
        from .errors import where
        raise ConfigError(f"{where(source)}: model.distribution = {name!r} needs a non-negative target, but its "
                          f"smallest value is {minimum:.4g}; use 'normal' (e.g. for z-scored series)")
