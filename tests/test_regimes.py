"""Evaluation by regime / sensor / hour (stgraph.regimes, stgraph.evaluate(by=), stgraph evaluate --by)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import stgraph
from stgraph.errors import ConfigError
from stgraph.regimes import GroupAccumulator, RegimeConfig, regime_labels, thresholds


def test_labels_by_hand():
    thr = torch.tensor([[30.0]])
    last = torch.tensor([60.0, 20.0, 60.0, 20.0, 60.0]).view(5, 1, 1, 1)
    y = torch.tensor([[62, 58, 61],      # stays above: free flow
                      [22, 18, 25],      # stays below: congested
                      [55, 25, 50],      # dips below within the horizon: transition, every step
                      [40, 45, 50],      # last input below, targets above: transition
                      [0, 61, 0]],       # nulls (0) are no crossing: free flow
                     dtype=torch.float32).view(5, 3, 1, 1)
    got = regime_labels(last, y, thr, null_value=0.0).view(5, 3).tolist()
    assert got == [[0, 0, 0], [1, 1, 1], [2, 2, 2], [2, 2, 2], [0, 0, 0]]


def test_group_figures_by_hand():
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 2, 1)       # [B=1, T=2, N=2, C=1]
    pred = torch.tensor([[2.0, 2.0], [0.0, 8.0]]).view(1, 2, 2, 1)    # errors 1, 0 / 3, 4
    groups = torch.tensor([[0, 1], [0, 0]]).view(1, 2, 2, 1)
    acc = GroupAccumulator(2, 2, null_value=float("nan"))
    acc.update(pred, y, groups)
    out = acc.compute([1, 2], ["a", "b"])
    assert out["a"]["horizons"]["1"] == {"share": 0.5, "mae": 1.0, "rmse": 1.0}
    assert out["a"]["horizons"]["2"] == {"share": 1.0, "mae": 3.5, "rmse": math.sqrt(12.5)}
    assert out["a"]["average"]["share"] == 0.75 and out["a"]["average"]["mae"] == pytest.approx(8 / 3)
    assert out["b"]["horizons"]["2"]["share"] == 0.0 and math.isnan(out["b"]["horizons"]["2"]["mae"])


def test_normal_coverage_and_crps_pool_to_the_overall_figures():
    from stgraph.metrics import ProbabilisticAccumulator

    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 3, 4, 1, generator=g)
    dist = torch.distributions.Normal(torch.zeros_like(y), torch.ones_like(y) * 0.8)
    groups = torch.randint(0, 3, y.shape, generator=g)
    acc = GroupAccumulator(3, 3, null_value=float("nan"))
    acc.update(dist, y, groups)
    out = acc.compute([1, 2, 3], ["x", "y", "z"])
    ref = ProbabilisticAccumulator(3, float("nan"))
    ref.update(dist, y)
    ref = ref.compute([1, 2, 3])
    for key in ("coverage90", "crps"):
        pooled = sum(v["average"]["share"] * v["average"][key] for v in out.values())
        assert pooled == pytest.approx(ref["average"][key], rel=1e-9)
    inside = (y.abs() <= 1.6448536 * 0.8) & (groups == 1)
    assert out["y"]["average"]["coverage90"] == pytest.approx(float(inside.sum() / (groups == 1).sum()))


@pytest.fixture(scope="module")
def last_run(tiny_synth, tmp_path_factory):
    return stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="last",
                         out=tmp_path_factory.mktemp("reg") / "r")


def _by_hand(run, cfg):
    """Thresholds, labels and per-regime absolute errors of the run's test forecasts, in numpy loops."""
    data = run.data
    pred = {}
    for out, _, starts in run.predictions("test"):
        pred.update({s: p for s, p in zip(starts.tolist(), out[..., 0].double().numpy())})
    t = data.targets.numpy()[..., 0].astype(np.float64)              # [T, N]
    end = int(data.split_starts("train").max()) + data.input_len + data.horizon
    train = np.where(t[:end] == data.null_value, np.nan, t[:end])
    thr = cfg.congested_fraction * np.nanquantile(train, cfg.free_flow_quantile, axis=0)
    err = {0: [], 1: [], 2: []}
    for s in data.split_starts("test").tolist():
        last = t[s + data.input_len - 1]
        ys = t[s + data.input_len: s + data.input_len + data.horizon]
        for n in range(t.shape[1]):
            seq = np.r_[last[n], ys[:, n]]
            sides = {bool(v < thr[n]) for v in seq if v != data.null_value}
            for h, y in enumerate(ys[:, n]):
                if y != data.null_value:
                    label = 2 if len(sides) > 1 else int(y < thr[n])
                    err[label].append(abs(pred[s][h, n] - y))
    return thr, err


def test_regime_mae_of_the_last_value_forecast_by_hand(last_run):
    cfg = RegimeConfig(free_flow_quantile=0.9, congested_fraction=0.7)
    result = stgraph.evaluate(last_run, "test", by="regime", regimes=cfg, write=False)
    thr, err = _by_hand(last_run, cfg)
    assert np.allclose(thresholds(last_run.data, cfg)[:, 0].numpy(), thr, rtol=1e-5)
    groups = result["by"]["groups"]
    total = sum(len(v) for v in err.values())
    assert len(err[0]) and len(err[2])  # free flow and transitions both occur
    for i, name in enumerate(["free flow", "congested", "transition"]):
        if not err[i]:
            assert name not in groups
            continue
        assert groups[name]["average"]["share"] == pytest.approx(len(err[i]) / total)
        assert groups[name]["average"]["mae"] == pytest.approx(float(np.mean(err[i])), rel=1e-5)
    assert "transition" in groups and groups["transition"]["average"]["mae"] > groups["free flow"]["average"]["mae"]


def test_sensor_and_hour_through_the_same_grouping(last_run):
    overall = stgraph.evaluate(last_run, "test", write=False)["average"]["mae"]
    for by in ("sensor", "hour"):
        groups = stgraph.evaluate(last_run, "test", by=by, write=False)["by"]["groups"]
        for h in groups[next(iter(groups))]["horizons"]:
            assert sum(g["horizons"][h]["share"] for g in groups.values()) == pytest.approx(1.0)
        pooled = sum(g["average"]["share"] * g["average"]["mae"] for g in groups.values())
        assert pooled == pytest.approx(overall, rel=1e-6)
    assert set(groups) <= {f"{h:02d}:00" for h in range(24)}


def test_counts_need_a_threshold(tmp_path):
    from stgraph.synth import write_synthetic_counts

    files = write_synthetic_counts(tmp_path / "c", num_sensors=6, days=40, seed=1, interval="day")
    run = stgraph.train(data=files["data"], graph=files["graph"], model="last", out=None)
    with pytest.raises(ConfigError, match="threshold=VALUE"):
        stgraph.evaluate(run, "test", by="regime", write=False)
    with pytest.raises(ConfigError, match="more often than daily"):
        stgraph.evaluate(run, "test", by="hour", write=False)
    got = stgraph.evaluate(run, "test", by="regime", regimes=RegimeConfig(threshold=5.0), write=False)["by"]
    assert got["thresholds"]["mean_threshold"] == 5.0
    assert sum(g["average"]["share"] for g in got["groups"].values()) == pytest.approx(1.0)


def test_cli_table_plot_and_flags(last_run, tmp_path, capsys):
    from stgraph.cli.main import main

    png = tmp_path / "regimes.png"
    assert main(["evaluate", str(last_run.files.root), "--by", "regime", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "transition" in out and "regime thresholds: mean" in out and png.stat().st_size > 1000
    assert main(["evaluate", str(last_run.files.root), "--by", "regime", "--congested-fraction", "1.5"]) == 2
    assert "--congested-fraction 1.5: expected a number in (0, 1]" in capsys.readouterr().err
