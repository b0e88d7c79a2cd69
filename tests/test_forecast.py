"""Forecasts of a trained run: the window at a timestamp, the forecast itself, and the files it is written to."""
import csv

import h5py
import numpy as np
import pytest
import torch

from stgraph.config import RunConfig, with_fields
from stgraph.errors import ConfigError, SeriesError
from stgraph.forecast import check_forecast_path, forecast_at, write_forecast
from stgraph.training.run import Run, train


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    """A last-value run and a VAR run (both fitted in closed form, so quick) on the tiny network."""
    out = {}
    root = tmp_path_factory.mktemp("forecast_runs")
    for name in ("last", "var"):
        cfg = with_fields(RunConfig(), {"data.path": str(tiny_synth["data"]), "data.graph": str(tiny_synth["adj"]),
                                        "model.name": name, "train.progress": False})
        train(cfg, root / name)
        out[name] = Run.open(root / name)
    return out


def test_window_at_is_the_batch_of_the_window_ending_there(runs):
    run = runs["var"]
    data, series = run.data, run.series
    end = 300
    x, cov, future = data.window_at(series, str(series.timestamps[end]))
    batch = data.batch(torch.tensor([end - data.input_len + 1]))
    assert x.shape == (1, data.input_len, data.num_nodes, data.in_channels)
    assert torch.equal(x, batch.x)  # scaled and masked exactly as a training batch
    for key in ("tod_in", "dow_in", "tod_out", "dow_out"):
        assert torch.equal(cov[key], batch.covariates[key]), key
    step = series.timestamps[1] - series.timestamps[0]
    assert list(future) == [series.timestamps[end] + k * step for k in range(1, data.horizon + 1)]


def test_forecast_equals_the_model_on_that_window(runs):
    run = runs["var"]
    at = str(run.series.timestamps[250])
    fc = forecast_at(run, at)
    batch = run.data.batch(torch.tensor([250 - run.data.input_len + 1]))
    with torch.no_grad():
        expected = run.forecaster.to_units(run.model.eval()(batch.x, run.graph, batch.covariates))[0].numpy()
    assert fc.mean.shape == (run.data.horizon, run.data.num_nodes, 1) and fc.std is None
    np.testing.assert_allclose(fc.mean, expected, rtol=0, atol=1e-5)
    assert fc.issued_at == run.series.timestamps[250] and fc.channels == ["speed"]
    assert fc.sensor_ids == list(run.series.sensor_ids)


def test_last_value_forecast_repeats_the_reading_at_at(runs):
    run = runs["last"]
    series = run.series
    fc = forecast_at(run)  # the series' last step
    assert fc.issued_at == series.timestamps[-1]
    last = series.values[-1, :, 0]
    valid = last != series.null_value
    mean, _ = run.data.target_stats()
    for h in range(run.data.horizon):
        np.testing.assert_allclose(fc.mean[h, valid, 0], last[valid], atol=1e-4)
        np.testing.assert_allclose(fc.mean[h, ~valid, 0], mean[0], atol=1e-4)  # a null reads as the mean


def test_forecast_from_a_short_file_of_recent_readings(runs):
    run = runs["var"]
    s = run.series
    recent = type(s)(values=s.values[-run.data.input_len:].copy(), timestamps=s.timestamps[-run.data.input_len:],
                     sensor_ids=list(s.sensor_ids), channels=list(s.channels), null_value=s.null_value)
    np.testing.assert_allclose(forecast_at(run, series=recent).mean, forecast_at(run).mean, atol=1e-6)


def test_bad_times_and_other_sensors_are_refused_naming_them(runs):
    run = runs["var"]
    s = run.series
    with pytest.raises(ConfigError, match=r"at='noon' is not a timestamp"):
        forecast_at(run, "noon")
    with pytest.raises(SeriesError, match=r"at=2012-03-01T00:02: no such step in .* every 5min"):
        forecast_at(run, "2012-03-01T00:02")
    with pytest.raises(SeriesError, match=r"a forecast needs 12 steps up to it, only 3 exist"):
        forecast_at(run, str(s.timestamps[2]))
    other = type(s)(values=s.values[:, ::-1].copy(), timestamps=s.timestamps, sensor_ids=list(s.sensor_ids)[::-1],
                    channels=list(s.channels), null_value=s.null_value)
    with pytest.raises(SeriesError, match="the same sensors in another order"):
        forecast_at(run, series=other)


def test_written_files_round_trip(runs, tmp_path):
    fc = forecast_at(runs["var"])
    T, N, C = fc.mean.shape
    path = write_forecast(fc, tmp_path / "fc.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == T * N * C and set(rows[0]) == {"timestamp", "sensor_id", "horizon", "channel", "forecast"}
    first = [r for r in rows if r["horizon"] == "1"]
    assert [r["sensor_id"] for r in first] == fc.sensor_ids
    np.testing.assert_allclose([float(r["forecast"]) for r in first], fc.mean[0, :, 0], atol=1e-4)
    with h5py.File(write_forecast(fc, tmp_path / "fc.h5"), "r") as f:
        np.testing.assert_array_equal(f["forecast"][()], fc.mean)
        assert [s.decode() for s in f["sensor_ids"][()]] == fc.sensor_ids
        assert f["timestamps"][()].tolist() == fc.timestamps.astype("datetime64[ns]").astype(np.int64).tolist()
    with pytest.raises(ConfigError, match=r"expected a .csv or .h5 file \(suffix '.txt'\)"):
        check_forecast_path(tmp_path / "fc.txt")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        check_forecast_path(tmp_path / "dir.csv")


def test_bf16_forecast_is_close_to_the_float32_one(runs, tmp_path, capsys):
    from stgraph.cli.main import main
    run = runs["var"]
    a, b = forecast_at(run).mean, forecast_at(run, amp="bf16").mean
    assert not np.array_equal(a, b)  # bfloat16 was used: 8 bits of mantissa
    assert np.abs(a - b).max() <= 0.02 * np.abs(a).max()
    with pytest.raises(ConfigError, match=r"amp = 'fp16': expected one of \['auto', 'bf16', 'off'\]"):
        forecast_at(run, amp="fp16")
    out = tmp_path / "fc16.csv"
    assert main(["predict", str(run.files.root), "--out", str(out), "--amp", "bf16", "--threads", "1"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == b.size and float(rows[0]["forecast"]) == pytest.approx(float(b[0, 0, 0]), abs=1e-3)
    assert main(["predict", str(run.files.root), "--out", str(out), "--threads", "0"]) == 2
    assert "--threads = 0: expected a positive integer" in capsys.readouterr().err


def test_csv_text_cells_are_spreadsheet_safe_and_read_back_as_written(tmp_path):
    """A sensor id or channel that a spreadsheet would run as a formula (=, +, -, @, tab, CR) is written with a
    leading apostrophe; numbers are untouched; stgraph's CSV reader gives the original ids back."""
    from stgraph.cells import read_cell, safe_cell
    from stgraph.forecast import Forecast
    from stgraph.io.csv import read_rows

    ids = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2", "@SUM(A1)", "\t=1", "\r=1", "'quoted", "'=x", "plain", "7"]
    T, N = 2, len(ids)
    mean = -np.arange(T * N, dtype=float).reshape(T, N, 1) - 0.5
    fc = Forecast(mean=mean, std=None, timestamps=np.array(["2020-01-01T00:05", "2020-01-01T00:10"],
                  dtype="datetime64[s]"), sensor_ids=ids, channels=["=cmd"], issued_at=np.datetime64("2020-01-01"))
    path = write_forecast(fc, tmp_path / "fc.csv")
    with open(path, newline="") as fh:
        raw = list(csv.reader(fh))
    written = [r[1] for r in raw[1:N + 1]]
    assert written == ["'" + i for i in ids[:8]] + ["plain", "7"]
    assert all(r[3] == "'=cmd" for r in raw[1:])
    assert [float(r[4]) for r in raw[1:N + 1]] == list(mean[0, :, 0])  # numbers: no apostrophe, negative kept
    assert not any(c.startswith(("=", "+", "@", "\t", "\r")) or (c.startswith("-") and i in (1, 3))
                   for row in raw for i, c in enumerate(row))
    rows, _ = read_rows(path)
    back = [r[1] for r in rows[1:N + 1]]  # (the reader reads a CR inside a quoted cell as a newline)
    assert back[:5] + back[6:] == ids[:5] + ids[6:] and back[5] == "\n=1" and rows[1][3] == "=cmd"
    assert all(read_cell(safe_cell(i)) == i for i in ids) and safe_cell(-1.5) == -1.5


def test_partition_file_round_trips_formula_like_sensor_ids(tmp_path):
    from stgraph.federated.partition import read_partition, write_partition

    ids = ["=1+1", "-5", "@a", "ok"]
    path = write_partition(tmp_path / "p.csv", ids, np.array([0, 1, 0, 1]))
    assert "'=1+1" in path.read_text() and "\n'-5," in path.read_text()
    assert list(read_partition(path, ids)) == [0, 1, 0, 1]
