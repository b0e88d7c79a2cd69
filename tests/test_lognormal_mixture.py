"""Issue 25: mixtures of censored log-normals (``--distribution lognormal-mixture``) and the generic mixture's
CRPS from quantile atoms, against hand-computed values and Monte Carlo references."""
import math

import pytest
import torch

from stgraph.distributions import CensoredLogNormal, crps, from_head, interval, nll, point, quantile
from stgraph.mixture import Mixture, NormalMixture, atoms_crps

PHI = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731


def _pair():
    """0.4 of a quiet day (head loc 2, scale 1) + 0.6 of an outbreak (head loc 30, scale 8), one entry."""
    loc = torch.tensor([[2.0, 30.0]], dtype=torch.float64)
    return from_head(loc, torch.tensor([[1.0, 8.0]], dtype=torch.float64), "lognormal-mixture",
                     torch.log(torch.tensor([[0.4, 0.6]], dtype=torch.float64)))


def test_lognormal_mixture_cdf_nll_quantiles_by_hand():
    d = _pair()
    assert isinstance(d, Mixture) and d.family is CensoredLogNormal and d.batch_shape == (1,)
    # each component is what the single lognormal head makes of its pair
    one = [from_head(torch.tensor([v], dtype=torch.float64), torch.tensor([s], dtype=torch.float64), "lognormal")
           for v, s in ((2.0, 1.0), (30.0, 8.0))]
    m, s = [c.loc.item() for c in one], [c.scale.item() for c in one]
    assert m[0] == pytest.approx(math.log(3.0)) and m[1] == pytest.approx(math.log(31.0))
    for y in (0.0, 1.0, 2.0, 12.5, 30.0, 200.0):
        F = sum(w * PHI((math.log1p(y) - mk) / sk) for w, mk, sk in zip((0.4, 0.6), m, s))
        assert d.cdf(torch.tensor([y], dtype=torch.float64)).item() == pytest.approx(F, rel=1e-10)
        if y == 0:  # a mass at zero: log P(Y = 0) = log sum_k w_k Phi(-m_k / s_k)
            want = -math.log(sum(w * PHI(-mk / sk) for w, mk, sk in zip((0.4, 0.6), m, s)))
        else:
            dens = sum(w * math.exp(-0.5 * ((math.log1p(y) - mk) / sk) ** 2) / (sk * math.sqrt(2 * math.pi))
                       for w, mk, sk in zip((0.4, 0.6), m, s)) / (1 + y)
            want = -math.log(dens)
        assert nll(d, torch.tensor([y], dtype=torch.float64)).item() == pytest.approx(want, rel=1e-9)
    assert d.cdf(torch.tensor([-1.0], dtype=torch.float64)).item() == 0.0
    assert nll(d, torch.tensor([-1.0], dtype=torch.float64)).item() == math.inf
    for q in (0.05, 0.4, 0.5, 0.9, 0.95):
        x = quantile(d, q).item()
        assert x >= 0 and d.cdf(torch.tensor([x], dtype=torch.float64)).item() == pytest.approx(q, abs=1e-9)
    assert point(d).item() == pytest.approx(quantile(d, 0.5).item())
    # the mean is the weighted mean of the components'
    assert d.mean.item() == pytest.approx(0.4 * one[0].mean.item() + 0.6 * one[1].mean.item(), rel=1e-10)


def test_quantile_is_zero_where_the_mass_at_zero_covers_it():
    """A component whose head says 'zero' (loc -3): P(Y = 0) >= 0.5 * Phi(3) > 0.49, so the 5% and 40%
    quantiles are exactly 0 and the 90% band starts at 0."""
    d = from_head(torch.tensor([[-3.0, 50.0]]), torch.tensor([[1.0, 5.0]]), "lognormal-mixture", torch.zeros(1, 2))
    assert quantile(d, 0.05).item() == 0.0 and quantile(d, 0.4).item() == 0.0
    lo, hi = interval(d)
    assert lo.item() == 0.0 and hi.item() > 40


def test_one_component_is_the_censored_lognormal():
    loc, scale = torch.tensor([0.0, 3.0, 40.0]), torch.tensor([2.0, 1.0, 10.0])
    single = from_head(loc, scale, "lognormal")
    mix = from_head(loc[:, None], scale[:, None], "lognormal-mixture", torch.zeros(3, 1))
    y = torch.tensor([0.0, 2.0, 55.0])
    torch.testing.assert_close(nll(mix, y), nll(single, y))
    for q in (0.05, 0.5, 0.95):
        torch.testing.assert_close(quantile(mix, q), quantile(single, q), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(crps(mix, y), crps(single, y), rtol=2e-3, atol=1e-3)


def test_atoms_crps_by_hand_and_against_monte_carlo():
    # two atoms 0 and 10 (weights 0.5): E|X - 4| = 5, E|X - X'| = 2 * 0.25 * 10 = 5, CRPS = 5 - 2.5
    x, a = torch.tensor([[10.0, 0.0]]), torch.tensor([[0.5, 0.5]])
    assert atoms_crps(x, a, torch.tensor([4.0])).item() == pytest.approx(2.5)
    # the generic atoms CRPS of a Normal mixture is its closed form
    nm = NormalMixture(torch.tensor([[20.0, 60.0], [0.0, 1.0]]), torch.tensor([[3.0, 5.0], [1.0, 2.0]]),
                       torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    y = torch.tensor([38.0, 0.5])
    torch.testing.assert_close(Mixture.crps(nm, y), nm.crps(y), rtol=2e-3, atol=2e-3)
    # the log-normal mixture's against E|X - y| - E|X - X'|/2 from 400,000 draws
    d = from_head(torch.tensor([[2.0, 30.0]]), torch.tensor([[1.5, 8.0]]), "lognormal-mixture",
                  torch.log(torch.tensor([[0.4, 0.6]])))
    torch.manual_seed(0)
    draws, draws2 = d.sample((400_000,))[:, 0], d.sample((400_000,))[:, 0]
    for y in (0.0, 3.0, 25.0, 80.0):
        mc = (draws - y).abs().mean() - 0.5 * (draws - draws2).abs().mean()
        assert crps(d, torch.tensor([y])).item() == pytest.approx(mc.item(), rel=0.02)


def test_samples_follow_the_cdf():
    d = _pair()
    torch.manual_seed(1)
    draws = d.sample((200_000,))[:, 0]
    assert (draws >= 0).all()
    for y in (1.0, 5.0, 30.0):
        assert (draws <= y).double().mean().item() == pytest.approx(d.cdf(torch.tensor([y], dtype=torch.float64)).item(),
                                                                    abs=5e-3)


def test_lognormal_mixture_refuses_negative_targets():
    from stgraph.distributions import check_support
    from stgraph.errors import ConfigError
    with pytest.raises(ConfigError, match="'lognormal-mixture' needs a non-negative target.*-2"):
        check_support("lognormal-mixture", -2.0, "speeds.csv")


@pytest.mark.parametrize("name", ["mixture", "lognormal-mixture"])
def test_newton_quantiles_equal_plain_bisection(name):
    """Random mixtures (far and near peaks, narrow and wide, skewed weights): the safeguarded Newton quantile
    equals 100 plain bisection steps on the CDF."""
    g = torch.Generator().manual_seed(3)
    n, K = 2000, 3
    loc = (torch.rand(n, K, generator=g, dtype=torch.float64) * 80 - (0 if name != "mixture" else 20))
    scale = torch.rand(n, K, generator=g, dtype=torch.float64) * 6 + 0.05
    d = from_head(loc, scale, name, 3 * torch.randn(n, K, generator=g, dtype=torch.float64))
    for q in (0.05, 0.5, 0.95):
        lo, hi = torch.full((n,), -1e4, dtype=torch.float64), torch.full((n,), 1e5, dtype=torch.float64)
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            below = d.cdf(mid) < q
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        want = hi if name == "lognormal-mixture" else 0.5 * (lo + hi)
        torch.testing.assert_close(quantile(d, q), want.clamp(min=0) if name != "mixture" else want,
                                   rtol=1e-9, atol=1e-9)
