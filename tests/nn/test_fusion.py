"""Covariate files, the gated fusion embedding and synthetic rain (issue 17)."""
import numpy as np
import pytest
import torch

from stgraph.config import RunConfig, with_fields
from stgraph.data import ForecastData
from stgraph.io.covariates import align_times, read_covariates
from stgraph.errors import ConfigError, SeriesError
from stgraph.io.series import Series
from stgraph.models.registry import build_model, exogenous_models
from stgraph.nn.fusion import GatedFusion


def _series(steps=48, sensors=("a", "b", "c"), start="2012-03-01"):
    ts = np.datetime64(start, "ns") + np.arange(steps) * np.timedelta64(5, "m")
    v = 50 + np.arange(steps * len(sensors), dtype=np.float32).reshape(steps, len(sensors)) % 7
    return Series(v[:, :, None], ts, list(sensors), ["speed"], 0.0)


def test_align_as_of_with_tolerance():
    hourly = np.array(["2012-03-01T00:00", "2012-03-01T01:00"], dtype="datetime64[ns]")
    five = np.datetime64("2012-03-01T00:00", "ns") + np.arange(26) * np.timedelta64(5, "m")  # 00:00 .. 02:05
    rows = align_times(hourly, five, None, "rain.csv")
    # an hourly reading holds for its hour (tolerance = the file's interval, 1 h)
    assert rows[:12].tolist() == [0] * 12 and rows[12:25].tolist() == [1] * 13 and rows[25] == -1
    rows = align_times(hourly, five, np.timedelta64(10, "m"), "rain.csv")
    assert rows[:3].tolist() == [0, 0, 0] and rows[3] == -1 and rows[12] == 1


def test_unalignable_file_is_an_error_naming_both_time_ranges(tmp_path):
    s = _series()
    p = tmp_path / "weather.csv"
    p.write_text("timestamp,rain\n2013-01-01 00:00,1\n2013-01-01 01:00,2\n")
    with pytest.raises(SeriesError) as e:
        read_covariates([str(p)], s)
    msg = str(e.value)
    assert "weather.csv" in msg and "2013-01-01" in msg and "2012-03-01" in msg and "cannot be aligned" in msg


def test_kinds_are_read_from_content(tmp_path):
    s = _series()
    t = [str(x).replace("T", " ")[:16] for x in s.timestamps]
    (tmp_path / "rain.csv").write_text("timestamp,rain\n" + "".join(f"{x},{i % 3}\n" for i, x in enumerate(t)))
    (tmp_path / "inc.csv").write_text("timestamp,a,c\n" + "".join(f"{x},{i % 2},0\n" for i, x in enumerate(t)))
    (tmp_path / "road.csv").write_text("sensor_id,lanes,class\na,3,freeway\nb,2,ramp\nc,4,freeway\n")
    (tmp_path / "hol.csv").write_text("start,end,kind\n2012-03-01 01:00,2012-03-01 02:00,holiday\n")
    src = {x.name: x for x in read_covariates([str(tmp_path / f) for f in
                                                ("rain.csv", "inc.csv", "road.csv", "hol.csv")], s)}
    assert src["rain"].kind == "shared" and src["rain"].values.shape == (48, 1)
    assert src["inc"].kind == "sensor" and src["inc"].values.shape == (48, 3, 1)
    assert np.isnan(src["inc"].values[:, 1]).all()  # sensor b not in the file: missing
    assert src["road"].kind == "static" and src["road"].channels == ["lanes", "class=freeway", "class=ramp"]
    assert src["road"].values.tolist() == [[3, 1, 0], [2, 0, 1], [4, 1, 0]]
    assert src["hol"].kind == "event" and src["hol"].values[:, 0].sum() == 12 and src["hol"].values[12, 0] == 1


def test_per_sensor_file_with_foreign_columns_is_refused(tmp_path):
    s = _series()
    t = [str(x)[:16] for x in s.timestamps]
    (tmp_path / "inc.csv").write_text("timestamp,a,zz\n" + "".join(f"{x},1,0\n" for x in t))
    with pytest.raises(SeriesError, match=r"\['zz'\] are not sensors"):
        read_covariates([str(tmp_path / "inc.csv")], s)


def _temperature_and_incident_data(tmp_path):
    """48 steps of 3 sensors with a shared temperature equal to the row index and an incident flag at
    sensor a on row 10: ``(series, timestamps as text, ForecastData, Exogenous)``."""
    s = _series()
    t = [str(x)[:16] for x in s.timestamps]
    (tmp_path / "temp.csv").write_text("timestamp,temp\n" + "".join(f"{x},{i}\n" for i, x in enumerate(t)))
    (tmp_path / "inc.csv").write_text("timestamp,a,b,c\n" + "".join(f"{x},{int(i == 10)},0,0\n"
                                                                     for i, x in enumerate(t)))
    data = ForecastData.from_series(s, input_len=4, horizon=3, split=(0.5, 0.25, 0.25), covariates=read_covariates(
        [str(tmp_path / "temp.csv"), str(tmp_path / "inc.csv")], s))
    return s, t, data, data.exogenous


def test_batches_gather_known_ahead_and_held_sources(tmp_path):
    s, t, data, exo = _temperature_and_incident_data(tmp_path)
    assert exo.layout == [["temp", 1], ["inc", 1]]
    b = data.batch(torch.tensor([7, 0]))
    assert b.exo_in.shape == (2, 4, 3, 2) and b.exo_out.shape == (2, 3, 3, 2)
    mean, std = exo.stats["temp"]["mean"][0], exo.stats["temp"]["std"][0]
    rows = np.arange(0, data.split["train"][-1] + 7)
    assert mean == pytest.approx(rows.mean()) and std == pytest.approx(rows.std(), rel=1e-5)
    # shared temperature is known ahead: the forecast steps carry rows 11, 12, 13 (same for every sensor)
    assert torch.allclose(b.exo_out[0, :, 1, 0], (torch.tensor([11.0, 12, 13]) - mean) / std)
    # the incident flag (a 0/1 flag: not scaled) is held at its last observed value: row 10 -> 1 at sensor a
    assert b.exo_in[0, :, 0, 1].tolist() == [0, 0, 0, 1] and b.exo_out[0, :, 0, 1].tolist() == [1, 1, 1]
    assert b.exo_out[0, :, 1, 1].tolist() == [0, 0, 0]
    assert set(b.covariates) >= {"exo_in", "exo_out"}


def test_forecast_window_carries_the_covariates_of_its_batch(tmp_path):
    """A forecast (``window_at``) gets the same covariates as the batch of that window; past the end of the
    data the known-ahead temperature holds its last reading; another series is refused with a message."""
    s, t, data, exo = _temperature_and_incident_data(tmp_path)
    x, cov, _ = data.window_at(s, t[10])  # the window of rows 7..10, i.e. start 7
    b = data.batch(torch.tensor([7]))
    assert torch.equal(x, b.x) and torch.equal(cov["exo_in"], b.exo_in) and torch.equal(cov["exo_out"], b.exo_out)
    _, cov, _ = data.window_at(s)  # issued at the last row (47): forecast rows 48..50 do not exist
    mean, std = exo.stats["temp"]["mean"][0], exo.stats["temp"]["std"][0]
    assert torch.allclose(cov["exo_out"][0, :, 0, 0], torch.full((3,), (47.0 - mean) / std))
    with pytest.raises(ConfigError, match=r"aligned to its own data .*48 steps.*40 steps"):
        data.window_at(_series(steps=40))


def test_models_without_exogenous_inputs_refuse_them():
    assert "stgt" in exogenous_models() and "gwnet" not in exogenous_models()
    sizes = dict(num_nodes=3, in_channels=1, out_channels=1, input_len=4, horizon=3, steps_per_day=288,
                 target_channels=(0,), probabilistic=False, exogenous=[["rain", 1]])
    with pytest.raises(ConfigError, match=r"'gwnet' takes no covariate files.*\['stgt'"):
        build_model("gwnet", sizes)
    m = build_model("stgt", sizes, {"hidden": 8, "heads": 2})
    assert m.gates()["rain"]["horizon"] == [pytest.approx(0.1192, abs=1e-4)] * 3


def test_stgt_without_covariates_draws_the_same_weights():
    sizes = dict(num_nodes=3, in_channels=1, out_channels=1, input_len=4, horizon=3)
    torch.manual_seed(0)
    a = build_model("stgt", sizes, {"hidden": 8, "heads": 2})
    torch.manual_seed(0)
    b = build_model("stgt", {**sizes, "exogenous": None}, {"hidden": 8, "heads": 2})
    assert a.fusion is None and not any("fusion" in k for k in a.state_dict())
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_shut_gate_removes_a_source():
    f = GatedFusion([["rain", 1], ["noise", 2]], dim=8, horizon=3)
    with torch.no_grad():
        f.gate_out[:, 1] = -100.0  # noise switched off
    exo = torch.randn(2, 3, 4, 3)
    other = exo.clone()
    other[..., 1:] = torch.randn(2, 3, 4, 2)
    assert torch.allclose(f.decode(exo), f.decode(other), atol=1e-6)
    assert not torch.allclose(f.encode(exo), f.encode(other))
    with pytest.raises(ValueError, match="2 channels; the model was built for 3"):
        f.decode(exo[..., :2])


def _rain_hours_mae(trainer, rain):
    """MAE over the test windows' forecast steps where it rains (> 0.5 mm/h) and the reading is valid."""
    err, wet = [], []
    for out, y, starts in trainer.predictions("test"):
        rows = starts[:, None] + trainer.data.input_len + torch.arange(trainer.data.horizon)  # [B, T_out]
        err.append((out - y).abs()[..., 0])
        wet.append((torch.from_numpy(rain)[rows] > 0.5)[..., None] & (y[..., 0] != 0))
    err, wet = torch.cat(err), torch.cat(wet)
    return float(err[wet].mean())


def test_rain_helps_on_rainy_hours_and_its_gate_opens(tmp_path):
    from stgraph.synth.events import rain_series, write_events
    from stgraph.training.run import train

    paths = write_events(tmp_path / "ev", num_sensors=12, days=7, seed=3, incidents=False, episodes_per_day=2.0)
    ts = np.datetime64("2012-03-01", "ns") + np.arange(7 * 288) * np.timedelta64(5, "m")
    rng = np.random.default_rng(5)
    (tmp_path / "noise.csv").write_text("timestamp,noise\n" + "".join(
        f"{str(t)[:19]},{v:.3f}\n" for t, v in zip(ts, rng.normal(size=ts.size))))
    rain = rain_series(ts, 3, 2.0)
    got = {}
    for name, cov in (("none", []), ("rain", [str(paths["rain"]), str(tmp_path / "noise.csv")])):
        cfg = with_fields(RunConfig(), {
            "data.path": str(paths["data"]), "data.graph": str(paths["adj"]), "data.covariates": cov,
            "model.params": dict(hidden=16, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0, residual="last"),
            "train.epochs": 4, "train.batch_size": 32, "train.lr": 3e-3, "train.progress": False, "train.threads": 1,
            "train.seed": 0, "train.patience": 0, "train.device": "cpu"})
        tr = train(cfg, None)
        got[name] = (_rain_hours_mae(tr, rain), tr.model.gates())
    assert got["rain"][0] < 0.8 * got["none"][0], got
    gates = got["rain"][1]
    rain_gate, noise_gate = np.mean(gates["rain"]["horizon"]), np.mean(gates["noise"]["horizon"])
    assert rain_gate > 0.18 and rain_gate > 1.5 * noise_gate, gates


def test_cli_refuses_covariates_for_a_model_without_them(tmp_path, capsys):
    from stgraph.cli.main import main
    from stgraph.synth.events import write_events

    paths = write_events(tmp_path / "ev", num_sensors=6, days=2, seed=0, rain=True, incidents=True)
    assert paths["incidents"].read_text().splitlines()[0].count(",") == 6  # timestamp + one column per sensor
    rc = main(["train", "--data", str(paths["data"]), "--graph", str(paths["adj"]), "--model", "last",
               "--covariates", str(paths["rain"]), "--out", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2 and "'last' takes no covariate files" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_run_config_from_before_covariates_still_loads(tmp_path):
    import yaml

    from stgraph.config import load_run_config

    d = RunConfig().to_dict()
    del d["data"]["covariates"], d["data"]["covariate_tolerance"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(d))
    cfg = load_run_config(tmp_path / "config.yaml")
    assert cfg.data.covariates == [] and cfg.data.covariate_tolerance is None
