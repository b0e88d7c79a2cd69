"""Issue 25 (P4): a count target declared non-negative (``data.nonnegative``) gets point forecasts and quantiles
clipped at 0 for every model, ``data info`` suggests it for counts, and ``stgraph update`` keeps the run's
distribution."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from stgraph.cli.main import main
from stgraph.distributions import crps, from_head, interval, point, quantile
from stgraph.errors import ConfigError
from stgraph.training.forecaster import AtLeastZero

PHI = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
Z95 = 1.6448536269514722

TINY = {"model.params.hidden": 16, "model.params.heads": 2, "model.params.encoder_layers": 1,
        "model.params.decoder_layers": 1, "train.batch_size": 16, "train.max_batches": 6, "train.device": "cpu",
        "train.patience": 0}
SMALL = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")] + ["--no-progress"]


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    from stgraph.synth import write_synthetic_counts
    return write_synthetic_counts(tmp_path_factory.mktemp("counts"), num_sensors=8, days=10)


def test_at_least_zero_by_hand():
    """max(0, X) for X ~ Normal([-1, 2], 1): median, quantiles and CDF by hand, CRPS against Monte Carlo."""
    d = AtLeastZero(from_head(torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 1.0])))
    torch.testing.assert_close(point(d), torch.tensor([0.0, 2.0]))
    lo, hi = interval(d, 0.9)
    torch.testing.assert_close(lo, torch.tensor([0.0, 2 - Z95]))
    torch.testing.assert_close(hi, torch.tensor([Z95 - 1, 2 + Z95]))
    torch.testing.assert_close(quantile(d, 0.5), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(d.cdf(torch.tensor([-0.5, 0.0])), torch.tensor([0.0, PHI(-2.0)]))
    torch.testing.assert_close(d.cdf(torch.tensor([0.0, 2.5])), torch.tensor([PHI(1.0), PHI(0.5)]))
    torch.testing.assert_close(d.stddev, torch.tensor([1.0, 1.0]))  # the head's spread, unclipped
    y = torch.tensor([0.3, 0.3])
    g = torch.Generator().manual_seed(0)
    s1 = (torch.tensor([-1.0, 2.0]) + torch.randn(400_000, 2, generator=g)).clamp(min=0)
    s2 = (torch.tensor([-1.0, 2.0]) + torch.randn(400_000, 2, generator=g)).clamp(min=0)
    mc = (s1 - y).abs().mean(0) - 0.5 * (s1 - s2).abs().mean(0)
    torch.testing.assert_close(crps(d, y), mc, rtol=0.01, atol=0.003)
    assert (crps(d, y) <= crps(d.base, y) + 1e-6).all()  # clipping never hurts a reading >= 0


def test_in_units_clips_a_point_forecast_only_when_asked():
    """Forecaster.in_units: z-scores [B, T, N, C] -> data units, clipped at 0 with nonnegative; to_units (the loss's) never."""
    from types import SimpleNamespace
    from stgraph.training.forecaster import Forecaster

    data = SimpleNamespace(target_stats=lambda: (np.float32(1.0), np.float32(2.0)), null_value=float("nan"))
    graph = SimpleNamespace(to=lambda device: None)
    model = torch.nn.Linear(1, 1)
    z = torch.tensor([-2.0, -0.5, 0.0, 1.5]).reshape(1, 4, 1, 1)  # data units: -3, 0, 1, 4
    want = torch.tensor([0.0, 0.0, 1.0, 4.0]).reshape(1, 4, 1, 1)
    on = Forecaster(model, data, graph, distribution="normal", nonnegative=True)
    off = Forecaster(model, data, graph, distribution="normal")
    torch.testing.assert_close(on.in_units(z), want)
    torch.testing.assert_close(off.in_units(z), z * 2 + 1)
    torch.testing.assert_close(on.to_units(z), z * 2 + 1)
    dist = on.in_units(torch.distributions.Normal(z, torch.ones_like(z)))
    assert isinstance(dist, AtLeastZero)
    torch.testing.assert_close(point(dist), want)


def test_config_field_is_checked():
    from stgraph.config import RunConfig, with_fields
    assert RunConfig().data.nonnegative is False
    with pytest.raises(ConfigError, match="data.nonnegative = 'yes': expected true or false"):
        with_fields(RunConfig(), {"data.nonnegative": "yes"}).validate()


def test_data_info_suggests_lognormal_and_nonnegative_for_counts(counts, tmp_path, capsys):
    assert main(["data", "info", str(counts["data"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["zero_ratio"] > 0
    assert "--distribution lognormal" in info["suggestion"] and "data.nonnegative=true" in info["suggestion"]
    from stgraph.synth import write_synthetic
    speeds = write_synthetic(tmp_path / "speeds", num_sensors=4, days=1, seed=0)
    assert main(["data", "info", str(speeds["data"]), "--json"]) == 0
    assert "suggestion" not in json.loads(capsys.readouterr().out)  # speeds are not counts


def test_normal_run_on_counts_clipped_at_zero(counts, tmp_path, capsys):
    """The issue's Normal band crossed zero on counts; with data.nonnegative the forecast file never does, the
    90% coverage is the same as unclipped (readings are >= 0) and the MAE no worse."""
    run = tmp_path / "run"
    rc = main(["train", "--data", str(counts["data"]), "--graph", str(counts["graph"]), "--out", str(run),
               "--epochs", "2", "--lr", "0.005", "--distribution", "normal", "--set", "data.nonnegative=true", *SMALL])
    assert rc == 0, capsys.readouterr().err[-2000:]
    from stgraph.training.run import load_run
    opened = load_run(run)
    assert opened.config.data.nonnegative and opened.forecaster.nonnegative
    clipped = opened.evaluate("test")["average"]
    opened.forecaster.nonnegative = False
    raw = opened.evaluate("test")["average"]
    out, _, _ = next(iter(opened.forecaster.predictions("test")))
    assert interval(out, 0.9)[0].min() < 0  # unclipped, this band crosses zero
    opened.forecaster.nonnegative = True
    assert clipped["coverage90"] == pytest.approx(raw["coverage90"], abs=1e-9)
    assert clipped["mae"] <= raw["mae"] + 1e-9 and clipped["crps"] <= raw["crps"] + 1e-6
    fc = tmp_path / "fc.csv"
    assert main(["predict", str(run), "--out", str(fc)]) == 0, capsys.readouterr().err[-2000:]
    rows = list(csv.DictReader(fc.open()))
    for key in ("forecast", "q05", "q95"):
        assert min(float(r[key]) for r in rows) >= 0, key


def test_update_trains_with_the_runs_distribution(counts, tmp_path, capsys):
    """stgraph update of a log-normal run trains the log-normal's NLL (it trained a Normal head before)."""
    run = tmp_path / "run"
    rc = main(["train", "--data", str(counts["data"]), "--graph", str(counts["graph"]), "--out", str(run),
               "--epochs", "1", "--distribution", "lognormal", "--set", "data.nonnegative=true", *SMALL])
    assert rc == 0, capsys.readouterr().err[-2000:]
    from stgraph.online import update_run
    from stgraph.training.losses import masked_loss
    from stgraph.training.run import load_run

    trainer, _ = update_run(run, counts["data"], tmp_path / "new", weeks=0, epochs=1, replay=0.0, progress=False)
    fc = trainer.forecaster
    assert fc.distribution == "lognormal" and fc.nonnegative
    b = next(iter(fc.data.loader("test", 16, shuffle=False)))
    head = fc.forward_model(b.x, fc.graph, b.covariates)
    out = fc.to_units(head)
    assert type(out).__name__ == "CensoredLogNormal"
    mask = ~torch.isnan(b.y)
    want = -(out.log_prob(torch.where(mask, b.y, torch.zeros_like(b.y))) * mask).sum() / mask.sum()
    torch.testing.assert_close(masked_loss(fc, head, b.y), want, rtol=1e-4, atol=1e-4)
    opened = load_run(tmp_path / "new")
    assert opened.forecaster.distribution == "lognormal" and opened.forecaster.nonnegative
