"""The non-learned baselines: last value, historical average, ridge VAR."""
import numpy as np
import pytest
import torch

from stgraph.data import ForecastData
from stgraph.io.series import Series
from stgraph.models import HistoricalAverage, LastValue, VectorAutoregression, build_model, count_parameters
from stgraph.training.prepare import closed_form_data
from stgraph.training.trainer import fit_closed_form


def _series(values, minutes=5, start="2012-03-01"):
    T, N = values.shape[:2]
    ts = np.datetime64(start, "ns") + np.arange(T) * np.timedelta64(minutes, "m")
    return Series(values=values.astype(np.float32), timestamps=ts, sensor_ids=[f"s{i}" for i in range(N)],
                  channels=["speed"], null_value=0.0)


def test_last_value_repeats_last_input_step():
    x = torch.randn(3, 12, 5, 2)
    m = LastValue(horizon=4, target_channels=(1,))
    out = m(x)
    assert out.shape == (3, 4, 5, 1)
    assert torch.equal(out, x[:, -1:, :, 1:2].expand(-1, 4, -1, -1))
    assert count_parameters(m) == 0


def test_last_value_refuses_targets_outside_inputs():
    with pytest.raises(ValueError, match="input channels"):
        LastValue(horizon=3, target_channels=None)


def test_historical_average_recovers_a_weekly_profile_and_ignores_nulls():
    spd = 24  # hourly
    T = 21 * spd  # three weeks
    slot = np.arange(T) % (7 * spd)
    values = np.stack([10 + slot * 0.5, 50 + slot * 0.1], axis=1)[:, :, None].astype(np.float64)
    values[5, 0, 0] = 0.0  # a null in the training part must not pull the average down
    data = ForecastData.from_series(_series(values, minutes=60), input_len=6, horizon=3)
    m = build_model("ha", {"num_nodes": 2, "out_channels": 1, "steps_per_day": data.steps_per_day})
    m.fit_closed_form(closed_form_data(data))
    b = data.batch(data.split_starts("test")[:8])
    out = m(b.x, None, b.covariates) * torch.tensor(data.target_stats()[1]) + torch.tensor(data.target_stats()[0])
    assert torch.allclose(out, b.y, atol=1e-3)


def test_historical_average_falls_back_to_time_of_day_for_unseen_weekday():
    spd = 24
    T = 10 * spd  # days 0..9; the test part holds weekdays seen only once or never in training
    tod = np.arange(T) % spd
    values = (20 + tod)[:, None, None].astype(np.float64).repeat(3, axis=1)
    data = ForecastData.from_series(_series(values, minutes=60), input_len=4, horizon=2, split=(0.5, 0.1, 0.4))
    m = HistoricalAverage(num_nodes=3, out_channels=1, steps_per_day=spd)
    m.fit_closed_form(closed_form_data(data))
    b = data.batch(data.split_starts("test"))
    mean, std = data.target_stats()
    out = m(b.x, None, b.covariates) * std[0] + mean[0]
    assert torch.allclose(out, b.y, atol=1e-3)  # the profile depends on time of day only


def test_var_recovers_a_linear_recurrence_exactly():
    # sums of sinusoids obey a linear recurrence: 12 lags of every sensor predict them exactly
    t = np.arange(3000, dtype=np.float64)
    rng = np.random.default_rng(0)
    periods = rng.uniform(20, 300, size=(4, 2))
    values = np.stack([50 + 5 * np.sin(2 * np.pi * t / p[0]) + 3 * np.cos(2 * np.pi * t / p[1]) for p in periods], 1)
    data = ForecastData.from_series(_series(values[:, :, None]), input_len=12, horizon=6)
    m = VectorAutoregression(num_nodes=4, in_channels=1, out_channels=1, input_len=12, horizon=6, mode="full")
    m.fit_closed_form(closed_form_data(data))
    b = data.batch(data.split_starts("test"))
    mean, std = data.target_stats()
    out = m(b.x) * std[0] + mean[0]
    assert (out - b.y).abs().mean() < 0.01 and (out - b.y).abs().max() < 0.2  # series span ~16 units
    assert float(m.chosen_ridge) <= 1e-4  # clean data: validation picks a weak ridge


def test_var_local_mode_matches_full_mode_on_independent_sensors():
    rng = np.random.default_rng(1)
    T, N = 1500, 3
    values = np.empty((T, N))
    values[:2] = rng.normal(size=(2, N))
    for k in range(2, T):  # independent AR(2) per sensor, with noise
        values[k] = 1.2 * values[k - 1] - 0.4 * values[k - 2] + 0.1 * rng.normal(size=N)
    data = ForecastData.from_series(_series(values[:, :, None] + 10), input_len=6, horizon=3)
    sizes = dict(num_nodes=N, in_channels=1, out_channels=1, input_len=6, horizon=3)
    full = VectorAutoregression(**sizes, mode="full", ridge=1e-3)
    local = VectorAutoregression(**sizes, mode="local", ridge=1e-3)
    full.fit_closed_form(closed_form_data(data))
    local.fit_closed_form(closed_form_data(data))
    assert local.weight.shape == (N, 6, 3) and full.weight.shape == (6 * N, 3 * N)
    b = data.batch(data.split_starts("test"))
    mean, std = data.target_stats()

    def mae(out):
        return float((out * std[0] + mean[0] - b.y).abs().mean())

    last = LastValue(horizon=3)
    # independent sensors: the other sensors' lags add nothing, both fits are as good, and beat persistence
    assert abs(mae(full(b.x)) - mae(local(b.x))) < 0.05 * mae(local(b.x))
    assert mae(local(b.x)) < 0.9 * mae(last(b.x))


def test_var_auto_mode_switches_to_local_for_large_networks():
    big = VectorAutoregression(num_nodes=1000, in_channels=1, out_channels=1, input_len=12, horizon=12)
    small = VectorAutoregression(num_nodes=207, in_channels=1, out_channels=1, input_len=12, horizon=12)
    assert big.mode == "local" and small.mode == "full"
    with pytest.raises(ValueError, match="mode"):
        VectorAutoregression(num_nodes=3, in_channels=1, out_channels=1, input_len=2, horizon=2, mode="dense")


def test_baselines_on_real_metr_la_week(metr_week_dir):
    """Last value and VAR on the real week, against the figures quoted in issue 4 (3.56/4.37/5.77)."""
    from stgraph.io import read_series
    from stgraph.metrics import MetricAccumulator

    data = ForecastData.from_series(read_series(metr_week_dir / "metr-la-week.h5"))
    mean, std = data.target_stats()
    results = {}
    for name, params in (("last", {}), ("var", {})):
        sizes = dict(num_nodes=207, in_channels=1, out_channels=1, input_len=12, horizon=12, target_channels=(0,))
        m = build_model(name, sizes, params)
        fit_closed_form(m, data)
        acc = MetricAccumulator(12, null_value=0.0)
        for b in data.loader("test", 256):
            acc.update(m(b.x, None, b.covariates) * std[0] + mean[0], b.y)
        results[name] = acc.compute((3, 6, 12))["horizons"]
    last = [results["last"][h]["mae"] for h in ("3", "6", "12")]
    assert last == pytest.approx([3.56, 4.37, 5.77], abs=0.05)
    var = [results["var"][h]["mae"] for h in ("3", "6", "12")]
    assert all(v < l for v, l in zip(var, last))
