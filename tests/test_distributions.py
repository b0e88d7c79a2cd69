"""Issue 11 item 7: a predictive distribution chosen by the user, one that respects a count's support."""
import csv
import math

import numpy as np
import pytest
import torch

from stgraph.cli.main import main
from stgraph.distributions import (CensoredLogNormal, check_support, crps, from_head, interval, nll, point,
                                   quantile)
from stgraph.errors import ConfigError

PHI = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731


def test_censored_lognormal_by_hand():
    d = CensoredLogNormal(torch.tensor([0.0, 1.5]), torch.tensor([1.0, 0.4]))
    # a zero is the mass P(L <= 0) = Phi(-m/s); y > 0 the log-normal density of 1 + y
    lp = d.log_prob(torch.tensor([0.0, math.e - 1]))
    assert lp[0].item() == pytest.approx(math.log(0.5))
    z = (1 - 1.5) / 0.4
    assert lp[1].item() == pytest.approx(-0.5 * z * z - math.log(0.4 * math.sqrt(2 * math.pi)) - 1.0, rel=1e-5)
    assert d.log_prob(torch.tensor([-1.0, -0.5])).tolist() == [-math.inf, -math.inf]
    # quantiles max(0, exp(m + s z_q) - 1): the lower end of a wide band stops at zero
    assert d.icdf(torch.tensor([0.95, 0.5])).tolist() == pytest.approx([math.expm1(1.6448536), math.expm1(1.5)],
                                                                       rel=1e-5)
    assert d.icdf(torch.tensor([0.05, 0.05]))[0].item() == 0.0
    assert d.cdf(torch.tensor([0.0, 3.0])).tolist() == pytest.approx([0.5, PHI((math.log(4) - 1.5) / 0.4)], rel=1e-5)
    # the closed-form mean against 400k draws
    torch.manual_seed(0)
    x = d.sample((400_000,))
    assert (x >= 0).all() and (x[:, 0] == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(d.mean, x.mean(0), rtol=0.01, atol=0.01)
    assert d.variance[1].item() == pytest.approx(x[:, 1].var().item(), rel=0.02)


def test_head_mapping_keeps_persistence_as_the_median():
    loc = torch.tensor([-2.0, 0.0, 0.5, 5.0, 40.0])
    d = from_head(loc, torch.full_like(loc, 2.0), "lognormal")
    assert point(d).tolist() == pytest.approx([0.0, 0.0, 0.5, 5.0, 40.0], rel=1e-5)
    lo, hi = interval(d, 0.9)
    assert (lo >= 0).all() and (hi[1:] > point(d)[1:]).all()
    assert hi[0].item() == 0.0  # loc -2, log-scale 0.97: P(Y = 0) = Phi(2 / 0.97) > 0.95
    assert lo[0].item() == 0.0 and lo[-1].item() > 30  # a large count's band stays near it
    # the log-scale: exp(L) with median M = 1 + max(loc, 0) has the head's scale as its std (r = scale / M);
    # hand values s = sqrt(log((1 + sqrt(1 + 4 r^2)) / 2)), ~ r (the delta method) for a small r
    want = [math.sqrt(math.log((1 + math.sqrt(1 + 4 * r * r)) / 2)) for r in (2.0, 2.0, 2 / 1.5, 2 / 6, 2 / 41)]
    assert d.scale.tolist() == pytest.approx(want, rel=1e-5)
    assert want[-1] == pytest.approx(2 / 41, rel=0.003)
    for s, m in zip(d.scale.tolist(), (1.0, 1.0, 1.5, 6.0, 41.0)):
        assert m * math.sqrt((math.exp(s * s) - 1) * math.exp(s * s)) == pytest.approx(2.0, rel=1e-4)
    n = from_head(loc, torch.full_like(loc, 2.0), "normal")
    assert isinstance(n, torch.distributions.Normal) and point(n).tolist() == loc.tolist()
    assert quantile(n, 0.05)[1].item() == pytest.approx(-2 * 1.6448536, rel=1e-5)  # the Normal goes below 0
    with pytest.raises(ConfigError, match="model.distribution = 'poisson'.*'normal', 'lognormal'"):
        from_head(loc, loc.abs() + 1, "poisson")


def test_crps_closed_form_and_quantile_grid():
    n = from_head(torch.tensor([2.0, 2.0]), torch.tensor([1.0, 3.0]), "normal")
    # at the mean: s (2 phi(0) - 1/sqrt(pi))
    assert crps(n, torch.tensor([2.0, 2.0])).tolist() == pytest.approx([0.233695, 3 * 0.233695], rel=1e-4)
    # the grid CRPS of the censored log-normal against E|X - y| - E|X - X'| / 2 from draws
    d = CensoredLogNormal(torch.tensor([0.0, 1.5]), torch.tensor([1.0, 0.4]))
    torch.manual_seed(1)
    x = d.sample((400_000,))
    y = torch.tensor([0.0, 3.0])
    mc = (x - y).abs().mean(0) - 0.5 * (x[:200_000] - x[200_000:]).abs().mean(0)
    torch.testing.assert_close(crps(d, y), mc, rtol=0.01, atol=0.002)
    assert nll(d, y).tolist() == pytest.approx((-d.log_prob(y)).tolist())


def test_lognormal_is_finite_on_small_zero_heavy_counts():
    """Issue 25: a Normal-sized head scale (18) on counts near zero gave q95 ~ 5.6e12 and std nan/inf. With the
    bounded log-scale every output is finite and the band is of the counts' size."""
    from stgraph.distributions import LOG_SCALE_MAX, LOG_SCALE_MIN
    loc = torch.tensor([-50.0, -1.0, 0.0, 0.0, 0.3, 2.0, 12.0, 25.0, 0.0, 1e6, 3.0])
    scale = torch.tensor([17.85, 17.85, 17.85, 1e30, 17.85, 17.85, 17.85, 17.85, 1e-12, 1e-3, 0.0])
    d = from_head(loc, scale, "lognormal")
    assert (d.scale >= LOG_SCALE_MIN).all() and (d.scale <= LOG_SCALE_MAX).all()
    y = torch.tensor([0.0, 0.0, 0.0, 3.0, 1.0, 0.0, 10.0, 25.0, 0.0, 1e6, 3.0])
    lo, hi = interval(d, 0.9)
    outs = {"q05": lo, "q95": hi, "median": point(d), "mean": d.mean, "std": d.stddev, "crps": crps(d, y),
            "nll": nll(d, y)}
    for name, v in outs.items():
        assert torch.isfinite(v).all(), (name, v)
    assert (lo >= 0).all()
    # loc 0, scale 17.85: r = 17.85, s = sqrt(log((1 + sqrt(1 + 4 r^2)) / 2)) = 1.70588; q95 = e^(1.6449 s) - 1
    assert hi[2].item() == pytest.approx(math.expm1(1.6448536 * 1.7058755), rel=1e-4)
    assert hi[2].item() < 20 and hi[7].item() < 100  # was 5.6e12
    assert hi[3].item() == pytest.approx(math.expm1(1.6448536 * LOG_SCALE_MAX), rel=1e-4)  # the bound
    # the std of the censored count stays near the head's scale where little mass is censored
    assert d.stddev[7].item() == pytest.approx(17.85, rel=0.05)
    # CRPS on the grid against E|X - y| - E|X - X'| / 2 from draws, for the wide small-count cases
    torch.manual_seed(3)
    x = d.sample((400_000,))[:, 2:8]
    mc = (x - y[2:8]).abs().mean(0) - 0.5 * (x[:200_000] - x[200_000:]).abs().mean(0)
    torch.testing.assert_close(crps(d, y)[2:8], mc, rtol=0.03, atol=0.02)


def test_support_and_config_errors():
    check_support("lognormal", 0.0)
    check_support("normal", -3.0)
    with pytest.raises(ConfigError, match="lognormal' needs a non-negative target.*-3"):
        check_support("lognormal", -3.0, "z.csv")
    from stgraph.config import RunConfig, apply_override
    cfg = RunConfig()
    cfg = apply_override(cfg, "model.distribution=lognormal")
    with pytest.raises(ConfigError, match="probabilistic head.*model.probabilistic is false"):
        cfg.validate()
    cfg = apply_override(cfg, "model.probabilistic=true")
    cfg.validate()


SMALL = ["--set", "model.params.hidden=16", "--set", "model.params.heads=2", "--set", "model.params.encoder_layers=1",
         "--set", "model.params.decoder_layers=1", "--set", "train.batch_size=16", "--set", "train.max_batches=6",
         "--set", "train.device=cpu", "--set", "train.patience=0", "--no-progress"]


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    from stgraph.synth import write_synthetic_counts
    return write_synthetic_counts(tmp_path_factory.mktemp("counts"), num_sensors=8, days=10)


@pytest.mark.parametrize("dist", ["normal", "lognormal"])
def test_train_evaluate_forecast_on_counts(counts, tmp_path, capsys, dist):
    """Trained by its NLL, evaluated with coverage and CRPS, forecast with a 90% band: the lognormal's
    band of a count never goes below zero, the Normal's does (the issue's complaint)."""
    run = tmp_path / dist
    rc = main(["train", "--data", str(counts["data"]), "--graph", str(counts["graph"]), "--out", str(run),
               "--epochs", "2", "--lr", "0.005", "--distribution", dist, *SMALL])
    err = capsys.readouterr().err
    assert rc == 0, err[-2000:]
    from stgraph.training.losses import masked_loss
    from stgraph.training.run import load_run
    opened = load_run(run)
    assert opened.config.model.distribution == dist and opened.config.model.probabilistic
    tr = opened.forecaster
    assert tr.distribution == dist
    res = opened.evaluate("test")
    # the drift report scores any distribution by its median: finite errors wherever a sensor has readings
    from stgraph.online.drift import rolling_errors
    _, errors, counts = rolling_errors(opened)
    assert errors.shape == counts.shape and np.isfinite(errors[counts > 0]).all() and (counts > 0).any()
    assert 0.5 < res["average"]["coverage90"] <= 1 and res["average"]["crps"] < res["average"]["mae"]
    out, y, _ = next(iter(tr.predictions("test")))
    assert type(out).__name__ == ("Normal" if dist == "normal" else "CensoredLogNormal")
    # the loss is this distribution's NLL of the truth
    mask = ~torch.isnan(y)
    want = -(out.log_prob(torch.where(mask, y, torch.zeros_like(y))) * mask).sum() / mask.sum()
    torch.testing.assert_close(masked_loss(tr, tr.forward_model(*_batch(tr)), y), want, rtol=1e-4, atol=1e-4)
    fc = tmp_path / f"{dist}.csv"
    rc = main(["predict", str(run), "--out", str(fc)])
    assert rc == 0, capsys.readouterr().err[-2000:]
    rows = list(csv.DictReader(fc.open()))
    q05 = np.array([float(r["q05"]) for r in rows])
    q95 = np.array([float(r["q95"]) for r in rows])
    mid = np.array([float(r["forecast"]) for r in rows])
    assert (q05 <= mid + 1e-4).all() and (mid <= q95 + 1e-4).all()
    if dist == "lognormal":
        assert q05.min() >= 0 and mid.min() >= 0
    else:
        assert q05.min() < 0  # night hours: the Normal's band crosses zero


def _batch(tr):
    b = next(iter(tr.data.loader("test", tr.cfg.batch_size, shuffle=False)))
    return b.x, tr.graph, b.covariates


def test_lognormal_refuses_negative_targets(tmp_path, capsys):
    from stgraph.io import Series, write_series
    rng = np.random.default_rng(0)
    stamps = np.datetime64("2020-01-06T00:00") + np.arange(200) * np.timedelta64(1, "h")
    s = Series(rng.normal(size=(200, 3, 1)).astype(np.float32), stamps, ["a", "b", "c"], ["z"], float("nan"))
    write_series(s, tmp_path / "z.h5")
    rc = main(["train", "--data", str(tmp_path / "z.h5"), "--out", str(tmp_path / "run"), "--epochs", "1",
               "--distribution", "lognormal", *SMALL])
    assert rc != 0
    assert "lognormal' needs a non-negative target" in capsys.readouterr().err


def test_runs_written_before_the_field_still_load(tmp_path):
    """A run directory's config.yaml from before model.distribution existed reads as the Normal it was."""
    import yaml

    from stgraph.config import RunConfig, load_run_config
    from stgraph.errors import RunDirError
    doc = RunConfig().to_dict()
    del doc["model"]["distribution"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    assert load_run_config(tmp_path / "config.yaml").model.distribution == "normal"
    del doc["model"]["probabilistic"]  # any other missing field is still a damaged file
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(RunDirError, match="model.probabilistic"):
        load_run_config(tmp_path / "config.yaml")


def test_lognormal_run_on_short_daily_counts_is_finite(tmp_path, capsys):
    """Issue 25: trained, evaluated and forecast on a short daily counts series with many zeros (the case that
    gave std nan/inf, q95 5.6e12 and a CRPS of 6.7e13), every number the run writes is finite and the band
    stays of the counts' size."""
    from stgraph.synth import write_synthetic_counts
    from stgraph.training.run import load_run
    paths = write_synthetic_counts(tmp_path / "daily", num_sensors=8, days=40, interval="day", seed=2)
    values = np.loadtxt(paths["data"], delimiter=",", skiprows=1, usecols=range(1, 9))
    assert (values == 0).mean() > 0.02 and values.max() < 200  # small counts with zeros
    run = tmp_path / "run"
    rc = main(["train", "--data", str(paths["data"]), "--graph", str(paths["graph"]), "--out", str(run),
               "--epochs", "2", "--distribution", "lognormal", "--set", "data.input_len=7", "--set", "data.horizon=7",
               *SMALL])
    assert rc == 0, capsys.readouterr().err[-2000:]
    res = load_run(run).evaluate("test")
    assert math.isfinite(res["average"]["crps"]) and res["average"]["crps"] < 10 * res["average"]["mae"]
    fc = tmp_path / "fc.csv"
    assert main(["predict", str(run), "--out", str(fc)]) == 0, capsys.readouterr().err[-2000:]
    rows = list(csv.DictReader(fc.open()))
    cols = {k: np.array([float(r[k]) for r in rows]) for k in ("forecast", "std", "q05", "q95")}
    for k, v in cols.items():
        assert np.isfinite(v).all(), k
    assert cols["q05"].min() >= 0 and cols["q95"].max() < 10 * values.max() + 50
