"""Issue 25: a forecast distribution that can be two-peaked (``--distribution mixture``, stgraph.mixture)."""
import csv
import math

import numpy as np
import pytest
import torch

from stgraph.cli.main import main
from stgraph.distributions import crps, from_head, interval, nll, point, quantile
from stgraph.errors import ConfigError
from stgraph.metrics import ProbabilisticAccumulator
from stgraph.mixture import NormalMixture

PHI = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731


def _two(dtype=torch.float64):
    """0.3 Normal(0, 1) + 0.7 Normal(5, 2), one entry."""
    locs, scales = torch.tensor([[0.0, 5.0]], dtype=dtype), torch.tensor([[1.0, 2.0]], dtype=dtype)
    return from_head(locs, scales, "mixture", torch.log(torch.tensor([[0.3, 0.7]], dtype=dtype)))


def test_nll_cdf_quantiles_by_hand():
    d = _two()
    assert isinstance(d, NormalMixture) and d.batch_shape == (1,)
    for y in (-1.0, 0.0, 2.5, 7.0, 40.0):
        dens = 0.3 * phi(y) + 0.7 * phi((y - 5) / 2) / 2
        assert nll(d, torch.tensor([y], dtype=torch.float64)).item() == pytest.approx(-math.log(dens), rel=1e-10)
        assert d.cdf(torch.tensor([y], dtype=torch.float64)).item() == pytest.approx(
            0.3 * PHI(y) + 0.7 * PHI((y - 5) / 2), rel=1e-10)
    # far in a tail the log-sum-exp keeps the density's log finite (a plain sum underflows to log 0)
    assert math.isfinite(nll(d, torch.tensor([-60.0], dtype=torch.float64)).item())
    for q in (0.05, 0.3, 0.5, 0.9, 0.95):
        x = quantile(d, q).item()
        assert 0.3 * PHI(x) + 0.7 * PHI((x - 5) / 2) == pytest.approx(q, abs=1e-9)
    assert point(d).item() == pytest.approx(quantile(d, 0.5).item())
    assert d.mean.item() == pytest.approx(3.5) and d.variance.item() == pytest.approx(0.3 + 0.7 * 29 - 3.5 ** 2)
    # K = 1 is the Normal: NLL, quantiles and CRPS agree
    m = from_head(torch.tensor([[2.0], [-1.0]]), torch.tensor([[3.0], [0.5]]), "mixture", torch.zeros(2, 1))
    n = from_head(torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.5]), "normal")
    y = torch.tensor([4.0, -3.0])
    torch.testing.assert_close(nll(m, y), nll(n, y))
    torch.testing.assert_close(crps(m, y), crps(n, y))
    for a, b in zip(interval(m), interval(n)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_two_peaks_median_and_bisection_batched():
    """0.5 Normal(20, 3) + 0.5 Normal(60, 3): the median is between the peaks (40 by symmetry), the 90% band
    reaches both; a batch of different mixtures is solved at once."""
    locs = torch.tensor([[20.0, 60.0], [20.0, 60.0], [0.0, 0.0]])
    d = from_head(locs, torch.tensor([[3.0, 3.0], [3.0, 3.0], [1.0, 2.0]]), "mixture",
                  torch.tensor([[0.0, 0.0], [math.log(9), 0.0], [0.0, 0.0]]))
    med = point(d)
    assert med[0].item() == pytest.approx(40.0, abs=1e-3)
    # 0.9 N(20, 3) + 0.1 N(60, 3): the median is N(20, 3)'s 0.5/0.9 quantile
    z = torch.special.ndtri(torch.tensor(0.5 / 0.9, dtype=torch.float64)).item()
    assert med[1].item() == pytest.approx(20 + 3 * z, abs=1e-3)
    assert med[2].item() == pytest.approx(0.0, abs=1e-5)
    lo, hi = interval(d, 0.9)
    assert lo[0].item() < 20 and hi[0].item() > 60
    assert torch.isfinite(d.stddev).all() and d.stddev[0].item() == pytest.approx(math.sqrt(9 + 400), rel=1e-5)


def test_crps_closed_form_against_monte_carlo():
    d = from_head(torch.tensor([[0.0, 5.0], [20.0, 60.0], [1.0, 1.5]]), torch.tensor([[1.0, 2.0], [3.0, 3.0],
                  [0.5, 4.0]]), "mixture", torch.tensor([[math.log(0.3), math.log(0.7)], [0.0, 0.0], [1.0, -1.0]]))
    y = torch.tensor([2.5, 41.0, -2.0])
    torch.manual_seed(0)
    x = d.sample((400_000,))
    assert x.shape == (400_000, 3)
    assert x.mean(0).tolist() == pytest.approx(d.mean.tolist(), rel=0.01, abs=0.02)
    mc = (x - y).abs().mean(0) - 0.5 * (x[:200_000] - x[200_000:]).abs().mean(0)
    torch.testing.assert_close(crps(d, y), mc, rtol=0.01, atol=0.01)
    # and the quantile-grid CRPS every other distribution uses
    grid = sum(torch.maximum(q * (y - quantile(d, q)), (q - 1) * (y - quantile(d, q)))
               for q in ((k + 0.5) / 400 for k in range(400))) * 2 / 400
    torch.testing.assert_close(crps(d, y), grid, rtol=0.01, atol=0.01)


def _fit(y: torch.Tensor, name: str, steps: int = 600):
    """Maximum likelihood of one distribution for every reading of ``y`` [B, 1, 1, 1] by Adam."""
    torch.manual_seed(0)
    K = 2 if name == "mixture" else 1
    locs = torch.nn.Parameter(torch.linspace(30.0, 50.0, K) if K > 1 else torch.tensor([40.0]))
    log_s = torch.nn.Parameter(torch.full((K,), math.log(10.0)))
    logits = torch.nn.Parameter(torch.zeros(K))
    opt = torch.optim.Adam([locs, log_s, logits], lr=0.1)

    def dist():
        shape = y.shape + (K,)
        if name == "mixture":
            return from_head(locs.expand(shape), log_s.exp().expand(shape), name, logits.expand(shape))
        return from_head(locs.expand(y.shape), log_s.exp().expand(y.shape), name)
    for _ in range(steps):
        opt.zero_grad()
        nll(dist(), y).mean().backward()
        opt.step()
    return dist()


def test_bimodal_target_mixture_coverage_right_normal_not():
    """A two-regime target (60 mph free flow w.p. 0.6, 20 mph congested, noise 3 mph): the fitted mixture's 90%
    band covers 90% of fresh readings; the fitted Normal's covers nearly all (its band spans the empty gap)
    and its median sits in the gap, where no reading is."""
    g = torch.Generator().manual_seed(5)
    n = 20_000

    def draw():
        free = torch.rand(n, generator=g) < 0.6
        return (torch.where(free, 60.0, 20.0) + 3 * torch.randn(n, generator=g)).view(n, 1, 1, 1)
    train, test = draw(), draw()
    cover = {}
    for name in ("mixture", "normal"):
        d = _fit(train, name)
        acc = ProbabilisticAccumulator(horizon=1, null_value=float("nan"))
        with torch.no_grad():
            acc.update(d, test)
        cover[name] = acc.compute([1])["average"]["coverage90"]
        if name == "mixture":
            assert sorted(d.locs[0, 0, 0, 0].tolist()) == pytest.approx([20.0, 60.0], abs=0.3)
            assert d.weights[0, 0, 0, 0].max().item() == pytest.approx(0.6, abs=0.02)
    assert cover["mixture"] == pytest.approx(0.90, abs=0.01)  # measured 0.903; the Normal 0.999
    assert cover["normal"] > 0.97  # over-covers: the band is 2 * 1.64 * 20 mph wide
    assert abs(cover["normal"] - 0.9) > 5 * abs(cover["mixture"] - 0.9)


def test_head_and_name_must_agree():
    with pytest.raises(ConfigError, match="'mixture' with a single head"):
        from_head(torch.zeros(2), torch.ones(2), "mixture")
    with pytest.raises(ConfigError, match="'normal' with a mixture head.*model.params.components"):
        from_head(torch.zeros(2, 2), torch.ones(2, 2), "normal", torch.zeros(2, 2))


@pytest.mark.parametrize("patch_len", [1, 2])
def test_stgt_mixture_head_starts_at_persistence(patch_len):
    """Two target channels, K = 3: locations last value -1, 0, +1 (z-units), equal weights, scale ~1; the
    median is the last value (persistence), and the NLL trains the head."""
    from torch_geometric.data import Data
    from stgraph.models.stgt import STGT
    torch.manual_seed(0)
    N, T_IN, T_OUT = 5, 4, 3
    m = STGT(N, 3, 2, T_IN, T_OUT, hidden=8, heads=2, encoder_layers=1, decoder_layers=0, dropout=0.0,
             target_channels=(0, 2), probabilistic=True, components=3, patch_len=patch_len)
    i = torch.arange(N)
    graph = Data(edge_index=torch.stack([(i - 1) % N, i]), edge_weight=torch.ones(N), num_nodes=N)
    x = torch.randn(2, T_IN, N, 3)
    steps = torch.arange(T_IN + T_OUT).expand(2, -1)
    cov = {"tod_in": steps[:, :T_IN] / 288.0, "dow_in": torch.zeros(2, T_IN, dtype=torch.long),
           "tod_out": steps[:, T_IN:] / 288.0, "dow_out": torch.zeros(2, T_OUT, dtype=torch.long)}
    out = m(x, graph, cov)
    assert isinstance(out, NormalMixture) and out.batch_shape == (2, T_OUT, N, 2) and out.components == 3
    last = x[:, -1:, :, [0, 2]].expand(2, T_OUT, N, 2)
    torch.testing.assert_close(point(out), last, atol=1e-4, rtol=0)
    for k, off in enumerate((-1.0, 0.0, 1.0)):
        torch.testing.assert_close(out.locs[..., k], last + off, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.weights, torch.full_like(out.weights, 1 / 3))
    torch.testing.assert_close(out.scales, torch.full_like(out.scales, 1 + m.min_scale))
    nll(out, last).mean().backward()
    assert m.head_out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="components is -1; expected an integer >= 0"):
        STGT(N, 3, 2, T_IN, T_OUT, target_channels=(0, 2), probabilistic=True, components=-1)


SMALL = ["--set", "model.params.hidden=16", "--set", "model.params.heads=2", "--set", "model.params.encoder_layers=1",
         "--set", "model.params.decoder_layers=1", "--set", "train.batch_size=16", "--set", "train.max_batches=6",
         "--set", "train.device=cpu", "--set", "train.patience=0", "--no-progress"]


@pytest.mark.parametrize("name", ["mixture", "lognormal-mixture"])
def test_train_evaluate_predict_mixture(tmp_path, capsys, name):
    from stgraph.synth import write_synthetic_counts
    files = write_synthetic_counts(tmp_path / "data", num_sensors=6, days=6)
    run = tmp_path / "run"
    rc = main(["train", "--data", str(files["data"]), "--graph", str(files["graph"]), "--out", str(run),
               "--epochs", "1", "--lr", "0.005", "--distribution", name, *SMALL])
    assert rc == 0, capsys.readouterr().err[-2000:]
    from stgraph.training.run import load_run
    opened = load_run(run)
    assert opened.config.model.distribution == name and opened.model.components == 2
    res = opened.evaluate("test")
    assert 0 < res["average"]["coverage90"] <= 1 and 0 < res["average"]["crps"] < res["average"]["mae"]
    assert all(math.isfinite(v) for v in res["average"].values() if isinstance(v, float))
    out, y, _ = next(iter(opened.forecaster.predictions("test")))
    assert type(out).__name__ in (("NormalMixture", "AtLeastZero") if name == "mixture" else ("Mixture", "AtLeastZero"))
    fc = tmp_path / "mixture.csv"
    assert main(["predict", str(run), "--out", str(fc)]) == 0, capsys.readouterr().err[-2000:]
    rows = list(csv.DictReader(fc.open()))
    q05, mid, q95 = (np.array([float(r[k]) for r in rows]) for k in ("q05", "forecast", "q95"))
    assert np.isfinite(q05).all() and (q05 <= mid + 1e-4).all() and (mid <= q95 + 1e-4).all()
    if name == "lognormal-mixture":  # censored log-normal components: no quantile below zero
        assert np.isfinite(q95).all() and (q05 >= 0).all()


def test_scale_prior_sets_each_steps_mixture_spread_and_old_runs_load():
    """With scale_prior, a mixture's component offsets from persistence and its scales are in units of the
    step's factor (last value's RMS error at that sensor and step): at the start the components sit at
    last -f, +f with scale (1 + min_scale) f. A state dict from before (no factor) loads as factor 1."""
    from torch_geometric.data import Data
    from stgraph.models.stgt import STGT
    torch.manual_seed(0)
    N, T_IN, T_OUT = 4, 3, 2
    kw = dict(hidden=8, heads=2, encoder_layers=1, decoder_layers=0, dropout=0.0, target_channels=(0,),
              probabilistic=True, components=2)
    m = STGT(N, 1, 1, T_IN, T_OUT, scale_prior=True, **kw)
    f = torch.tensor([[0.5, 1.0, 2.0, 4.0], [1.5, 3.0, 0.25, 1.0]]).unsqueeze(-1)  # [T_out, N, 1]
    m.scale_prior.factor.copy_(f)
    i = torch.arange(N)
    graph = Data(edge_index=torch.stack([(i - 1) % N, i]), edge_weight=torch.ones(N), num_nodes=N)
    x = torch.randn(3, T_IN, N, 1)
    zeros = torch.zeros(3, T_IN, dtype=torch.long)
    cov = {"tod_in": zeros.float(), "dow_in": zeros, "tod_out": zeros[:, :T_OUT].float(), "dow_out": zeros[:, :T_OUT]}
    out = m(x, graph, cov)
    last = x[:, -1:].expand(3, T_OUT, N, 1)
    torch.testing.assert_close(out.locs[..., 0], last - f, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.locs[..., 1], last + f, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.scales, ((1 + m.min_scale) * f).expand(3, T_OUT, N, 1).unsqueeze(-1).expand(-1, -1, -1, -1, 2))
    before = STGT(N, 1, 1, T_IN, T_OUT, **kw)  # a mixture run saved before: no scale_prior.factor
    with torch.no_grad():
        before.head_out.bias.add_(0.3 * torch.randn(before.head_out.bias.shape))
    assert "scale_prior.factor" not in before.state_dict()
    m.load_state_dict(before.state_dict())
    torch.testing.assert_close(m.scale_prior.factor, torch.ones_like(f))
    now, then = m(x, graph, cov), before(x, graph, cov)
    for a, b in ((now.locs, then.locs), (now.scales, then.scales), (now.logits, then.logits)):
        torch.testing.assert_close(a, b)
