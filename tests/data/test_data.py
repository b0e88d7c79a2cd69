"""Tests of stgraph.data: windows, split, scaler, covariates and the batch loader."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stgraph.data import (ForecastData, Split, StandardScaler, WindowIndex, contiguous_mask, day_of_week,
                          make_split, split_by_ratio, split_by_time, steps_per_day, time_of_day,
                          training_rows)
from stgraph.errors import ConfigError, SeriesError
from stgraph.io.series import Series

START = np.datetime64("2012-03-01T00:00", "ns")  # a Thursday
FIVE_MIN = np.timedelta64(5, "m")


def make_series(T=200, N=3, C=2, null_value=0.0, seed=0, step=FIVE_MIN, null_every=7):
    rng = np.random.default_rng(seed)
    v = (rng.random((T, N, C), dtype=np.float32) * 60 + 5).astype(np.float32)
    v.reshape(-1)[::null_every] = null_value  # some nulls everywhere
    ts = START + np.arange(T) * step
    return Series(v, ts, [f"s{i}" for i in range(N)], ["speed", "flow", "occupancy"][:C], null_value)


# ------------------------------------------------------------------ windows
def test_window_starts_hand_computed():
    w = WindowIndex(10, input_len=3, horizon=2, stride=2)
    assert w.span == 5 and len(w) == 3
    assert w.starts.dtype == np.int64 and w.starts.tolist() == [0, 2, 4]
    assert WindowIndex(10, 3, 2).starts.tolist() == [0, 1, 2, 3, 4, 5]
    assert len(WindowIndex(5, 3, 2)) == 1


def test_gather_equals_explicit_slicing():
    values = torch.arange(20 * 3 * 2, dtype=torch.float32).reshape(20, 3, 2)
    w = WindowIndex(20, input_len=4, horizon=3, stride=1)
    starts = torch.tensor([0, 5, 13])
    x, y = w.gather(values, starts)
    assert x.shape == (3, 4, 3, 2) and y.shape == (3, 3, 3, 2)
    for b, s in enumerate(starts.tolist()):
        assert torch.equal(x[b], values[s:s + 4])
        assert torch.equal(y[b], values[s + 4:s + 7])
    assert w.input_rows(starts).tolist()[1] == [5, 6, 7, 8]
    assert w.target_rows(starts).tolist()[2] == [17, 18, 19]


def test_window_too_short_and_bad_config():
    with pytest.raises(SeriesError, match=r"4 time steps.*3 \+ 2 = 5"):
        WindowIndex(4, 3, 2)
    for kwargs in ({"input_len": 0}, {"horizon": -1}, {"stride": 0}, {"input_len": 1.5}, {"horizon": True}):
        args = {"input_len": 3, "horizon": 2, "stride": 1, **kwargs}
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            WindowIndex(50, **args)
    with pytest.raises(SeriesError, match="rows"):
        WindowIndex(10, 3, 2).gather(torch.zeros(11, 1, 1), torch.tensor([0]))


def test_contiguous_mask_drops_windows_over_gaps():
    ts = START + np.array([0, 1, 2, 3, 5, 6, 7, 8]) * FIVE_MIN  # a gap between rows 3 and 4
    starts = WindowIndex(8, 2, 1).starts  # span 3: starts 0..5
    # windows 2 (rows 2-4) and 3 (rows 3-5) contain the gap
    assert contiguous_mask(starts, ts, 3).tolist() == [True, True, False, False, True, True]


# -------------------------------------------------------------------- split
@pytest.mark.parametrize("n,expected", [
    (100, (70, 10, 20)),
    (7, (5, 1, 1)),              # test round(1.4)=1, train round(4.9)=5
    (34249, (23974, 3425, 6850)),  # METR-LA with 12+12 windows: DCRNN's published counts
])
def test_split_by_ratio_counts(n, expected):
    sp = split_by_ratio(np.arange(n), (0.7, 0.1, 0.2))
    assert (len(sp.train), len(sp.val), len(sp.test)) == expected
    assert np.array_equal(np.concatenate([sp.train, sp.val, sp.test]), np.arange(n))  # time order


def test_split_ratio_half_to_even_and_validation():
    sp = split_by_ratio(np.arange(5), (0.5, 0.2, 0.3))  # test round(1.5)=2, train round(2.5)=2
    assert sp.sizes() == {"train": 2, "val": 1, "test": 2}
    for bad in [(0.7, 0.2, 0.2), (0.8, 0.0, 0.2), (-0.1, 0.6, 0.5), (0.5, 0.5), ("a", "b", "c")]:
        with pytest.raises(ConfigError, match="ratios"):
            split_by_ratio(np.arange(10), bad)


def test_split_by_time_boundaries():
    ts = START + np.arange(48) * np.timedelta64(1, "h")
    starts = np.arange(48 - 3 + 1)  # span 3
    sp = split_by_time(starts, ts, 3, "2012-03-01T12:00", np.datetime64("2012-03-02"))
    assert sp.train.tolist() == list(range(0, 10))   # last row 11:00 < 12:00
    assert sp.val.tolist() == list(range(12, 22))    # rows 12:00 .. 23:00
    assert sp.test.tolist() == list(range(24, 46))
    # every row of every window lies inside its split's period
    for name, lo, hi in [("train", None, "2012-03-01T12:00"), ("val", "2012-03-01T12:00", "2012-03-02"),
                         ("test", "2012-03-02", None)]:
        rows = sp[name][:, None] + np.arange(3)
        if lo is not None:
            assert (ts[rows] >= np.datetime64(lo)).all()
        if hi is not None:
            assert (ts[rows] < np.datetime64(hi)).all()
    assert make_split({"train_end": "2012-03-01T12:00", "val_end": "2012-03-02"}, starts, ts, 3).sizes() \
        == sp.sizes()
    with pytest.raises(ConfigError, match="val_end"):
        split_by_time(starts, ts, 3, "2012-03-02", "2012-03-01")
    with pytest.raises(ConfigError, match="train_end"):
        split_by_time(starts, ts, 3, "not a date", "2012-03-01")
    with pytest.raises(ConfigError, match="split"):
        make_split((0.7, 0.3), starts, ts, 3)


def test_training_rows():
    sp = split_by_ratio(np.arange(100))
    assert training_rows(sp, span=5) == (0, 74)
    with pytest.raises(SeriesError, match="training split"):
        training_rows(Split(np.zeros(0, np.int64), np.arange(3), np.arange(3)), 5)


# ------------------------------------------------------------------- scaler
def test_scaler_fit_ignores_nulls_and_other_rows():
    v = np.array([[[1, 2]], [[0, 2]], [[3, 2]], [[5, 2]], [[1000, 1000]]], dtype=np.float32)  # [5, 1, 2]
    sc = StandardScaler.fit(v, null_value=0.0, rows=(0, 4), channels=["a", "b"])
    assert sc.mean == pytest.approx([3.0, 2.0])                    # (1 + 3 + 5) / 3, zero skipped
    assert sc.std == pytest.approx([math.sqrt(8 / 3), 1.0])         # constant channel -> std 1
    vn = v.copy()
    vn[1, 0, 0] = np.nan
    sc_nan = StandardScaler.fit(vn, null_value=float("nan"), rows=(0, 4))
    assert sc_nan.mean == pytest.approx([3.0, 2.0])
    assert StandardScaler.fit(v, 0.0, (0, 4), ["a", "b"], index=[1]).channels == ["b"]
    with pytest.raises(SeriesError, match="no non-null"):
        StandardScaler.fit(np.zeros((4, 2, 1), np.float32), 0.0, channels=["speed"])


def test_scaler_round_trip_numpy_and_torch():
    sc = StandardScaler([3.0, -1.0], [2.0, 0.5])
    x = np.random.default_rng(0).normal(size=(4, 5, 6, 2)).astype(np.float32)
    z = sc.transform(x)
    assert z.dtype == np.float32 and np.allclose(z[..., 0], (x[..., 0] - 3) / 2)
    assert np.allclose(sc.inverse_transform(z), x, atol=1e-5)
    xt = torch.from_numpy(x).double()
    zt = sc.transform(xt)
    assert zt.dtype == torch.float64 and zt.device == xt.device
    assert torch.allclose(sc.inverse_transform(zt), xt)
    assert np.allclose(zt.numpy(), z, atol=1e-5)
    with pytest.raises(ConfigError, match="2 channels"):
        sc.transform(np.zeros((3, 4)))
    one = StandardScaler([10.0], [5.0])
    assert torch.allclose(one.inverse_transform(torch.zeros(2, 3)), torch.full((2, 3), 10.0))  # broadcasts


def test_scaler_state_dict_weights_only(tmp_path):
    sc = StandardScaler([1.5, 2.5], [0.5, 0.0], ["speed", "flow"])
    path = tmp_path / "s.pt"
    torch.save({"scaler": sc.state_dict()}, path)
    back = StandardScaler.from_state_dict(torch.load(path, weights_only=True)["scaler"])
    assert back.mean.tolist() == [1.5, 2.5] and back.std.tolist() == [0.5, 1.0] and back.channels == ["speed", "flow"]
    assert back.select([1]).channels == ["flow"]
    with pytest.raises(ConfigError, match="std"):
        StandardScaler.from_state_dict({"mean": [1.0]})


# --------------------------------------------------------------- covariates
def test_covariates_hand_checked():
    ts = np.array(["2012-03-01T00:00", "2012-03-01T06:00", "2012-03-01T12:00", "2012-03-01T23:55",
                   "2012-03-04T08:00", "2012-03-05T00:00", "1969-12-31T18:00"], dtype="datetime64[ns]")
    tod = time_of_day(ts)
    assert tod.dtype == np.float32
    assert tod.tolist() == pytest.approx([0.0, 0.25, 0.5, 287 / 288, 1 / 3, 0.0, 0.75])
    dow = day_of_week(ts)
    assert dow.dtype == np.int64
    assert dow.tolist() == [3, 3, 3, 3, 6, 0, 2]  # Thu, Sun, Mon; 1969-12-31 was a Wednesday
    assert time_of_day(np.array(["2012-03-01T23:59:59.999999999"], dtype="datetime64[ns]"))[0] < 1.0


def test_steps_per_day():
    assert steps_per_day(np.timedelta64(5, "m")) == 288
    assert steps_per_day(dt.timedelta(hours=1)) == 24
    assert steps_per_day(300) == 288
    assert steps_per_day(np.timedelta64(1, "D")) == 1 and steps_per_day(np.timedelta64(7, "D")) == 1
    assert steps_per_day(np.timedelta64(7, "m")) == 206  # ceil(1440 / 7)
    with pytest.raises(ConfigError, match="interval"):
        steps_per_day(np.timedelta64(0, "s"))


# ------------------------------------------------------------------- loader
def test_forecast_data_batches_match_series():
    s = make_series()
    d = ForecastData.from_series(s, input_len=4, horizon=3, target="speed")
    assert (d.num_nodes, d.in_channels, d.out_channels, d.steps_per_day) == (3, 2, 1, 288)
    assert d.inputs.dtype == torch.float32 and d.inputs.shape == (200, 3, 2)
    loader = d.loader("val", batch_size=4)
    b = next(iter(loader))
    assert b.x.shape == (4, 4, 3, 2) and b.y.shape == (4, 3, 3, 1)
    assert b.tod_in.shape == (4, 4) and b.dow_out.shape == (4, 3) and b.dow_in.dtype == torch.int64
    tod = time_of_day(s.timestamps)
    for i, st in enumerate(b.starts.tolist()):
        assert np.array_equal(b.y[i].numpy(), s.values[st + 4:st + 7, :, :1])       # raw, nulls kept
        raw_in = s.values[st:st + 4]
        expect = np.where(raw_in == 0, 0, (raw_in - d.scaler.mean) / d.scaler.std)
        assert np.allclose(b.x[i].numpy(), expect, atol=1e-5)
        assert np.array_equal(b.tod_out[i].numpy(), tod[st + 4:st + 7])
    assert set(b.covariates) == {"tod_in", "dow_in", "tod_out", "dow_out"}
    assert b.to("cpu").x.shape == b.x.shape and len(b) == 4
    # the scaler saw the training rows only
    rows = training_rows(d.split, 7)
    assert d.scaler.mean == pytest.approx(StandardScaler.fit(s.values, 0.0, rows).mean)
    assert d.target_scaler.channels == ["speed"]


def test_channels_stats_and_saved_scaler():
    s = make_series(C=3)
    d = ForecastData.from_series(s, input_len=4, horizon=3, target="flow", input_channels=["flow", "speed"])
    assert d.input_channels == [1, 0] and d.target_channels == [1]
    assert d.input_channel_names == ["flow", "speed"] and d.target_channel_names == ["flow"]
    assert d.target_stats() == (d.scaler.mean[:1].tolist(), d.scaler.std[:1].tolist())
    d.set_scaler_state(StandardScaler([10.0, 20.0], [2.0, 4.0], ["flow", "speed"]).state_dict())
    raw = s.values[:, :, [1, 0]]
    expect = np.where(raw == 0, 0, (raw - [10.0, 20.0]) / [2.0, 4.0])
    assert np.allclose(d.inputs.numpy(), expect, atol=1e-5)
    assert d.target_stats() == ([10.0], [2.0])
    s.values[:, :, 2] = 0.0  # an all-null channel nobody reads does not stop the fit
    ForecastData.from_series(s, input_len=4, horizon=3, target="flow", input_channels=["flow", "speed"])
    with pytest.raises(ConfigError, match="channels"):
        d.set_scaler_state(StandardScaler([1.0, 2.0], [1.0, 1.0], ["speed", "flow"]).state_dict())


def test_inputs_and_targets_are_views_of_the_series():
    s = make_series(C=2)
    d = ForecastData.from_series(s, input_len=4, horizon=3, target=[0, 1])
    assert d.targets.data_ptr() == s.values.ctypes.data  # zero copy
    assert d.raw_inputs.data_ptr() == s.values.ctypes.data
    s64 = make_series(C=2)
    s64 = Series(s64.values.astype(np.float64), s64.timestamps, s64.sensor_ids, s64.channels, s64.null_value)
    d64 = ForecastData.from_series(s64, input_len=4, horizon=3, target=[0, 1])
    assert d64.raw_inputs.dtype == torch.float32 and d64.targets is d64.raw_inputs  # one shared copy
    b, b64 = d.batch(d.split_starts("test")[:5]), d64.batch(d64.split_starts("test")[:5])
    assert torch.allclose(b.x, b64.x, atol=1e-6) and torch.equal(b.y, b64.y)


def test_shuffle_repeatable_and_complete():
    d = ForecastData.from_series(make_series(), input_len=4, horizon=3)
    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.cat([b.starts for b in d.loader("train", 16, shuffle=True, generator=g)]).tolist()
    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(order(1)) == d.split.train.tolist()
    plain = torch.cat([b.starts for b in d.loader("train", 16)]).tolist()
    assert plain == d.split.train.tolist()


def test_loader_len_and_splits_disjoint():
    d = ForecastData.from_series(make_series(), input_len=4, horizon=3)
    n = d.split.sizes()
    assert sum(n.values()) == 200 - 7 + 1
    for name in ("train", "val", "test"):
        assert len(d.loader(name, 10)) == math.ceil(n[name] / 10)
        assert len(d.loader(name, 10, drop_last=True)) == n[name] // 10
        got = [b.starts for b in d.loader(name, 10, drop_last=True)]
        assert all(len(x) == 10 for x in got)
    assert d.split.train.max() < d.split.val.min() and d.split.val.max() < d.split.test.min()


def test_time_split_windows_stay_inside():
    s = make_series(T=300)
    d = ForecastData.from_series(s, input_len=4, horizon=3, split=("2012-03-01T08:00", "2012-03-01T16:00"))
    t_tr, t_va = np.datetime64("2012-03-01T08:00"), np.datetime64("2012-03-01T16:00")
    for name, lo, hi in [("train", None, t_tr), ("val", t_tr, t_va), ("test", t_va, None)]:
        starts = torch.cat([b.starts for b in d.loader(name, 32)]).numpy()
        rows = s.timestamps[starts[:, None] + np.arange(7)]
        assert len(starts) > 0
        assert lo is None or (rows >= lo).all()
        assert hi is None or (rows < hi).all()


def test_nan_null_and_gaps():
    s = make_series(T=120, C=1, null_value=float("nan"))
    d = ForecastData.from_series(s, input_len=3, horizon=2)
    assert not torch.isnan(d.inputs).any() and torch.isnan(d.targets).any()
    ts = s.timestamps.copy()
    ts[60:] += np.timedelta64(1, "h")  # a gap between rows 59 and 60
    g = ForecastData.from_series(Series(s.values, ts, s.sensor_ids, s.channels, s.null_value),
                                 input_len=3, horizon=2)
    assert g.dropped_windows == 4  # windows starting at 56..59 straddle the gap
    every = np.concatenate([g.split.train, g.split.val, g.split.test])
    assert not np.isin(np.arange(56, 60), every).any()


def test_fingerprint_and_errors():
    s = make_series()
    d1 = ForecastData.from_series(s, input_len=4, horizon=3)
    d2 = ForecastData.from_series(make_series(), input_len=6, horizon=6)
    assert d1.fingerprint() == d2.fingerprint() and len(d1.fingerprint()) == 16
    assert ForecastData.from_series(make_series(seed=1)).fingerprint() != d1.fingerprint()
    with pytest.raises(ConfigError, match="split_name"):
        d1.loader("training", 8)
    with pytest.raises(ConfigError, match="batch_size"):
        d1.loader("train", 0)
    with pytest.raises(ConfigError, match="target"):
        ForecastData.from_series(s, target="occupancy")
    with pytest.raises(ConfigError, match="input_channels"):
        ForecastData.from_series(s, input_channels=[0, 0])
    with pytest.raises(SeriesError, match="time steps"):
        ForecastData.from_series(make_series(T=10), input_len=12, horizon=12)


# ---------------------------------------------------------------- real data
def test_metr_la_week(metr_week_dir):
    """The real METR-LA week (2016 x 207, 5 min from 2012-03-01) through the whole data path."""
    pd = pytest.importorskip("pandas")
    from stgraph.metrics import horizon_metrics
    df = pd.read_hdf(metr_week_dir / "metr-la-week.h5")
    values = df.to_numpy(dtype=np.float32)
    s = Series(values, df.index.to_numpy().astype("datetime64[ns]"), list(df.columns), ["speed"], 0.0)
    d = ForecastData.from_series(s)
    assert d.split.sizes() == {"train": 1395, "val": 199, "test": 399}  # 1993 windows, DCRNN rounding
    assert d.steps_per_day == 288 and d.dow[0].item() == 3 and d.tod[0].item() == 0.0
    g = torch.Generator().manual_seed(0)
    b = next(iter(d.loader("test", 32, shuffle=True, generator=g)))
    st = b.starts.numpy()
    assert np.array_equal(b.y[:, :, :, 0].numpy(), values[st[:, None] + np.arange(12, 24)])
    # last observed speed, repeated: a sane, finite baseline in mph
    last = d.target_scaler.inverse_transform(b.x[:, -1:]).expand_as(b.y)
    r = horizon_metrics(last, b.y, d.null_value)
    assert 0 < r["horizons"]["3"]["mae"] < r["horizons"]["12"]["mae"] < 30


# --------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(T=st.integers(2, 300), i=st.integers(1, 20), h=st.integers(1, 20), stride=st.integers(1, 7))
def test_windows_cover_series_exactly(T, i, h, stride):
    if T < i + h:
        with pytest.raises(SeriesError):
            WindowIndex(T, i, h, stride)
        return
    w = WindowIndex(T, i, h, stride)
    s = w.starts
    assert s[0] == 0 and np.all(np.diff(s) == stride)
    assert s[-1] + w.span <= T < s[-1] + stride + w.span  # the last window fits, one more would not


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 5000), a=st.integers(1, 98), b=st.integers(1, 98))
def test_ratio_split_partitions_in_order(n, a, b):
    if a + b >= 100:
        return
    ratios = (a / 100, b / 100, (100 - a - b) / 100)
    sp = split_by_ratio(np.arange(n), ratios)
    assert np.array_equal(np.concatenate([sp.train, sp.val, sp.test]), np.arange(n))
    assert len(sp.test) == round(n * ratios[2])
