"""Tests of stgraph.metrics against hand-computed values and the DCRNN formulation."""
from __future__ import annotations

import math

import pytest
import torch

from stgraph.errors import ConfigError, SeriesError
from stgraph.metrics import (MetricAccumulator, horizon_metrics, masked_mae, masked_mape, masked_mse,
                             masked_rmse, valid_mask)

TRUE = torch.tensor([[1.0, 0.0], [2.0, 4.0]])
PRED = torch.tensor([[2.0, 5.0], [2.0, 2.0]])
# valid entries (null 0): 1, 2, 4 with abs errors 1, 0, 2


def test_hand_computed_with_nulls():
    assert masked_mae(PRED, TRUE).item() == pytest.approx(1.0)
    assert masked_mse(PRED, TRUE).item() == pytest.approx(5 / 3)
    assert masked_rmse(PRED, TRUE).item() == pytest.approx(math.sqrt(5 / 3))
    assert masked_mape(PRED, TRUE).item() == pytest.approx((1 / 1 + 0 / 2 + 2 / 4) / 3)  # a fraction


def test_nan_null_value():
    true = torch.tensor([[1.0, float("nan")], [2.0, 4.0]])
    assert masked_mae(PRED, true, float("nan")).item() == pytest.approx(1.0)
    assert masked_mape(PRED, true, float("nan")).item() == pytest.approx(0.5)
    # with a NaN null a true 0 is a valid reading: it counts for MAE but MAPE skips it
    true0 = torch.tensor([0.0, 2.0])
    pred0 = torch.tensor([1.0, 3.0])
    assert masked_mae(pred0, true0, float("nan")).item() == pytest.approx(1.0)
    assert masked_mape(pred0, true0, float("nan")).item() == pytest.approx(0.5)


def dcrnn_style_mae(pred, true, null):
    mask = (true != null).float()
    mask = mask / mask.mean()
    mask = torch.where(torch.isnan(mask), torch.zeros_like(mask), mask)
    loss = (pred - true).abs() * mask
    return torch.where(torch.isnan(loss), torch.zeros_like(loss), loss).mean()


def test_equals_renormalised_mask_formulation():
    g = torch.Generator().manual_seed(0)
    true = torch.rand(8, 12, 20, 1, generator=g) * 70
    true[torch.rand(true.shape, generator=g) < 0.2] = 0.0
    pred = true + torch.randn(true.shape, generator=g)
    assert masked_mae(pred, true).item() == pytest.approx(dcrnn_style_mae(pred, true, 0.0).item(), rel=1e-5)


def test_all_null_is_nan_with_zero_gradient():
    true = torch.zeros(2, 3)
    pred = torch.ones(2, 3, requires_grad=True)
    for fn in (masked_mae, masked_rmse, masked_mape):
        assert math.isnan(fn(pred, true).item())
    masked_mae(pred, true).backward()
    assert torch.equal(pred.grad, torch.zeros(2, 3))


def test_gradient_flows_on_valid_entries():
    pred = PRED.clone().requires_grad_(True)
    masked_mae(pred, TRUE).backward()
    assert torch.allclose(pred.grad, torch.tensor([[1 / 3, 0.0], [0.0, -1 / 3]]))


def test_shape_mismatch():
    with pytest.raises(SeriesError, match="pred has shape"):
        masked_mae(torch.zeros(2, 3), torch.zeros(3, 2))


def batch_pair(seed=0, B=10, T=4, N=6):
    g = torch.Generator().manual_seed(seed)
    true = torch.rand(B, T, N, 1, generator=g) * 60 + 1
    true[torch.rand(true.shape, generator=g) < 0.15] = 0.0
    pred = true + torch.randn(true.shape, generator=g) * 3
    return pred, true


def test_horizon_metrics_hand_computed():
    # B=1, T=2, N=2: step 1 errors on valid entries (true 2, 4) are 1 and 3; step 2 has one null
    true = torch.tensor([[[2.0, 4.0], [5.0, 0.0]]])
    pred = torch.tensor([[[3.0, 1.0], [4.0, 9.0]]])
    r = horizon_metrics(pred, true, 0.0, horizons=(1, 2))
    h1, h2, avg = r["horizons"]["1"], r["horizons"]["2"], r["average"]
    assert h1["mae"] == pytest.approx(2.0) and h1["rmse"] == pytest.approx(math.sqrt(5.0))
    assert h1["mape"] == pytest.approx(100 * (0.5 + 0.75) / 2)  # percent
    assert h2 == pytest.approx({"mae": 1.0, "rmse": 1.0, "mape": 20.0})
    assert avg["mae"] == pytest.approx(5 / 3)                       # pooled over all 3 valid entries
    assert avg["rmse"] == pytest.approx(math.sqrt(11 / 3))
    assert avg["mape"] == pytest.approx(100 * (0.5 + 0.75 + 0.2) / 3)


def test_horizon_metrics_match_slices():
    pred, true = batch_pair(T=12)
    r = horizon_metrics(pred, true, 0.0)
    assert set(r["horizons"]) == {"3", "6", "12"}
    for h in (3, 6, 12):
        p, t = pred[:, h - 1], true[:, h - 1]
        assert r["horizons"][str(h)]["mae"] == pytest.approx(masked_mae(p, t).item(), rel=1e-5)
        assert r["horizons"][str(h)]["rmse"] == pytest.approx(masked_rmse(p, t).item(), rel=1e-5)
        assert r["horizons"][str(h)]["mape"] == pytest.approx(100 * masked_mape(p, t).item(), rel=1e-5)
    assert r["average"]["mae"] == pytest.approx(masked_mae(pred, true).item(), rel=1e-5)
    assert r["average"]["rmse"] == pytest.approx(masked_rmse(pred, true).item(), rel=1e-5)


def test_all_null_step_is_nan():
    pred, true = batch_pair(T=3)
    true[:, 1] = 0.0
    r = horizon_metrics(pred, true, 0.0, horizons=(1, 2, 3))
    assert all(math.isnan(v) for v in r["horizons"]["2"].values())
    assert not math.isnan(r["horizons"]["1"]["mae"]) and not math.isnan(r["average"]["mae"])


def test_accumulator_equals_one_shot():
    pred, true = batch_pair(B=23, T=12)
    acc = MetricAccumulator(12, null_value=0.0, horizons=(3, 6, 12))
    for a, b in [(0, 5), (5, 16), (16, 23)]:
        acc.update(pred[a:b], true[a:b])
    streamed, oneshot = acc.compute(), horizon_metrics(pred, true, 0.0)
    for key in ("3", "6", "12"):
        assert streamed["horizons"][key] == pytest.approx(oneshot["horizons"][key], rel=1e-12)
    assert streamed["average"] == pytest.approx(oneshot["average"], rel=1e-12)
    acc.reset()
    with pytest.raises(SeriesError, match="no batch"):
        acc.compute()


def test_accumulator_compute_horizons_and_errors():
    pred, true = batch_pair(T=4)
    with pytest.raises(ConfigError, match="exceed"):
        MetricAccumulator(null_value=0.0, horizons=(3, 6)).update(pred, true)
    with pytest.raises(ConfigError, match="exceed"):
        MetricAccumulator(4, horizons=(3, 6))
    with pytest.raises(ConfigError, match="horizons"):
        MetricAccumulator(null_value=0.0, horizons=(0,))
    with pytest.raises(ConfigError, match="num_steps"):
        MetricAccumulator(0)
    acc = MetricAccumulator(4, null_value=0.0)  # default horizons (3, 6, 12) chosen at compute
    acc.update(pred, true)
    r = acc.compute((1, 4))
    assert set(r["horizons"]) == {"1", "4"}
    assert r["horizons"]["4"] == pytest.approx(horizon_metrics(pred, true, 0.0, (4,))["horizons"]["4"])
    with pytest.raises(SeriesError, match="horizon steps"):
        acc.update(pred[:, :2], true[:, :2])
    with pytest.raises(SeriesError, match="horizon steps"):
        MetricAccumulator(3).update(pred, true)


def test_valid_mask():
    t = torch.tensor([0.0, float("nan"), 3.0])
    assert valid_mask(t, 0.0).tolist() == [False, False, True]
    assert valid_mask(t, float("nan")).tolist() == [True, False, True]
