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
    assert (lo >= 0).all() and (hi > point(d)).all()
    assert lo[0].item() == 0.0 and lo[-1].item() > 30  # a large count's band stays near it
    # the scale in log space is the head's scale over 1 + loc (delta method)
    assert d.scale.tolist() == pytest.approx([2.0, 2.0, 2 / 1.5, 2 / 6, 2 / 41], rel=1e-6)
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
