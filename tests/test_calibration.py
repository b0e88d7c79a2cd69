"""Calibration views (stgraph.calibration): PIT histogram and reliability diagram of a forecast distribution."""
import pytest
import torch
from torch.distributions import Normal

from stgraph.calibration import LEVELS, CalibrationAccumulator, evaluate_calibration
from stgraph.errors import ConfigError


def _normal_batches(scale_factor: float, seed: int = 0, batches: int = 4):
    """Synthetic truth y ~ N(mu, sigma) per entry [B, T_out, N, C]; the forecast N(mu, scale_factor * sigma)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        mu = 50 + 10 * torch.randn(64, 12, 8, 1, generator=g)
        sigma = 1 + 4 * torch.rand(64, 12, 8, 1, generator=g)
        y = mu + sigma * torch.randn(mu.shape, generator=g)
        yield Normal(mu, scale_factor * sigma), y, None


def test_a_well_specified_normal_is_calibrated():
    cal = evaluate_calibration(_normal_batches(1.0), null_value=0.0)
    assert cal["count"] == 4 * 64 * 12 * 8
    for r in cal["reliability"]:  # ~24.6k readings: binomial std <= 0.0032, so 2 points is > 6 std
        assert abs(r["observed"] - r["nominal"]) < 0.02
    assert [r["nominal"] for r in cal["reliability"]] == list(LEVELS)
    assert len(cal["pit"]["density"]) == 10 and cal["pit"]["edges"][0] == 0 and cal["pit"]["edges"][-1] == 1
    assert all(abs(d - 1) < 0.07 for d in cal["pit"]["density"])  # flat at density 1
    assert sum(cal["pit"]["density"]) / 10 == pytest.approx(1.0)


def test_too_narrow_bands_undercover_and_give_a_u_shaped_pit():
    cal = evaluate_calibration(_normal_batches(0.5), null_value=0.0)
    # a band of half the width: the central L band of N(0, s/2) is the central P(|Z| < z_L / 2) band of the truth
    for r in cal["reliability"]:
        z = Normal(0.0, 1.0).icdf(torch.tensor((1 + r["nominal"]) / 2))
        expected = float(2 * Normal(0.0, 1.0).cdf(z / 2) - 1)
        assert r["observed"] == pytest.approx(expected, abs=0.02) and r["observed"] < r["nominal"] - 0.04
    d = cal["pit"]["density"]
    assert d[0] > 2 and d[-1] > 2 and d[5] < 0.6  # mass in the tails: a U


def test_null_readings_are_left_out_and_point_forecasts_refused():
    acc = CalibrationAccumulator(null_value=0.0)
    y = torch.tensor([[[[0.0]], [[1.0]]]])  # [1, 2, 1, 1]: one null, one reading at the median
    acc.update(Normal(torch.ones(1, 2, 1, 1), torch.ones(1, 2, 1, 1)), y)
    cal = acc.compute()
    assert cal["count"] == 1 and cal["pit"]["density"][5] == pytest.approx(10.0)  # u = 0.5 in bin [0.5, 0.6)
    assert all(r["observed"] == 1.0 for r in cal["reliability"])  # the median is inside every central band
    with pytest.raises(ConfigError, match="probabilistic"):
        acc.update(torch.ones(1, 2, 1, 1), y)


def test_cli_calibration_picture_and_table(tiny_synth, tmp_path, capsys):
    import json

    import stgraph
    from stgraph.cli.main import main
    from stgraph.distributions import interval
    from stgraph.metrics import valid_mask

    run = stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="stgt", probabilistic=True,
                        epochs=1, out=tmp_path / "stgt", progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 4, "train.patience": 0})
    png = tmp_path / "cal.png"
    assert main(["evaluate", str(tmp_path / "stgt"), "--calibration", str(png), "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the 50% band's observed coverage by hand from the run's own forecasts
    inside = total = 0
    for dist, y, _ in stgraph.open_run(tmp_path / "stgt").predictions("test"):
        m = valid_mask(y, run.data.null_value)
        lo, hi = interval(dist, 0.5)
        inside += int(((y >= lo) & (y <= hi))[m].sum())
        total += int(m.sum())
    assert cal["count"] == total and cal["reliability"][4]["observed"] == pytest.approx(inside / total)
    assert sum(cal["pit"]["density"]) / 10 == pytest.approx(1.0)
    assert main(["evaluate", str(tmp_path / "stgt"), "--calibration", str(png)]) == 0
    assert "coverage of the central band: 10% -> " in capsys.readouterr().out


def test_cli_calibration_refuses_a_point_run(tiny_synth, tmp_path, capsys):
    import stgraph
    from stgraph.cli.main import main

    stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="last", out=tmp_path / "last")
    assert main(["evaluate", str(tmp_path / "last"), "--calibration", str(tmp_path / "c.png")]) == 2
    assert "calibration needs a forecast distribution" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_calibration_by_regime_splits_the_readings_and_pools_back(tiny_synth, tmp_path):
    """evaluate(run, by="regime", calibration=True): each regime's PIT histogram and band coverage; the
    groups' counts add up to the overall count, and their coverage and PIT, weighted by count, pool back to
    the overall figures; each group's 50% coverage equals a by-hand count over that regime's readings."""
    import stgraph
    from stgraph.distributions import interval
    from stgraph.metrics import valid_mask
    from stgraph.regimes import grouper

    run = stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="stgt", probabilistic=True,
                        epochs=1, out=tmp_path / "stgt", progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 4, "train.patience": 0})
    res = stgraph.evaluate(run, "test", by="regime", calibration=True, write=False)
    cal = res["calibration"]
    groups = cal["by"]
    assert set(groups) <= {"free flow", "congested", "transition"} and "free flow" in groups
    assert sum(g["count"] for g in groups.values()) == cal["count"]
    for i in range(9):
        pooled = sum(g["count"] * g["reliability"][i]["observed"] for g in groups.values()) / cal["count"]
        assert pooled == pytest.approx(cal["reliability"][i]["observed"])
    for b in range(10):
        pooled = sum(g["count"] * g["pit"]["density"][b] for g in groups.values()) / cal["count"]
        assert pooled == pytest.approx(cal["pit"]["density"][b])
    names, ids = grouper("regime", run.data)
    inside = {n: 0 for n in names}
    total = {n: 0 for n in names}
    for dist, y, starts in run.predictions("test"):
        m = valid_mask(y, run.data.null_value)
        g = ids(starts, y)
        lo, hi = interval(dist, 0.5)
        hit = (y >= lo) & (y <= hi)
        for k, n in enumerate(names):
            sel = m & (g == k)
            inside[n] += int(hit[sel].sum())
            total[n] += int(sel.sum())
    for n, g in groups.items():
        assert g["count"] == total[n] and g["reliability"][4]["observed"] == pytest.approx(inside[n] / total[n])


def test_groups_in_one_pass_equal_one_accumulator_per_group():
    """Per-group counts by bincount (one CDF and one set of bands per batch) equal feeding each group's
    readings alone to its own accumulator; group 2 has no reading and is left out."""
    batches = list(_normal_batches(0.7, seed=3, batches=2))
    ids = [torch.randint(0, 2, y.shape, generator=torch.Generator().manual_seed(i)) for i, (_, y, _) in enumerate(batches)]
    acc = CalibrationAccumulator(0.0, groups=3)
    for (d, y, _), g in zip(batches, ids):
        acc.update(d, y, g)
    by = acc.compute_groups()
    assert sorted(by) == [0, 1]
    for k in (0, 1):
        alone = CalibrationAccumulator(0.0)
        for (d, y, _), g in zip(batches, ids):
            alone.update(d, torch.where(g == k, y, torch.zeros_like(y)))  # other groups' readings made null
        want = alone.compute()
        assert by[k]["count"] == want["count"] == sum(int((g == k).sum()) for g in ids)
        assert by[k]["pit"]["density"] == pytest.approx(want["pit"]["density"], abs=1e-12)
        assert [r["observed"] for r in by[k]["reliability"]] == pytest.approx(
            [r["observed"] for r in want["reliability"]], abs=1e-12)
