"""Covariates honest about time (issue 27): id-like columns that match no sensor, known-ahead declared per
file, time zones converted explicitly, values that overflow the scaler refused."""
import logging

import numpy as np
import pytest
import torch

from stgraph.data import ForecastData
from stgraph.data.covariates import Exogenous
from stgraph.errors import ConfigError, DataFormatError, SeriesError
from stgraph.io.covariate_specs import parse_specs
from stgraph.io.covariates import read_covariates
from stgraph.io.series import Series


def _series(steps=48, sensors=("700001", "700002", "700003")):
    ts = np.datetime64("2012-03-01", "ns") + np.arange(steps) * np.timedelta64(5, "m")
    v = 50 + np.arange(steps * len(sensors), dtype=np.float32).reshape(steps, len(sensors)) % 7
    return Series(v[:, :, None], ts, list(sensors), ["speed"], 0.0)


def _times(s):
    return [str(x).replace("T", " ")[:16] for x in s.timestamps]


def test_id_like_columns_matching_no_sensor_are_refused_not_read_as_shared(tmp_path):
    """The leak: the target of the series written with ids as floats would be a 'shared' series known ahead."""
    s = _series()
    p = tmp_path / "target.csv"
    p.write_text("timestamp,700001.0,700002.0,700003.0\n" + "".join(
        f"{t},{v[0]},{v[1]},{v[2]}\n" for t, v in zip(_times(s), s.values[:, :, 0])))
    with pytest.raises(SeriesError) as e:
        read_covariates([str(p)], s)
    msg = str(e.value)
    assert "target.csv" in msg and "['700001.0', '700002.0', '700003.0']" in msg and "match no sensor" in msg
    assert "700001.0 would be sensor 700001" in msg
    other = tmp_path / "other.csv"  # incident flags of another network
    other.write_text("timestamp,800001,800002\n" + "".join(f"{t},0,1\n" for t in _times(s)))
    with pytest.raises(SeriesError, match=r"\['800001', '800002'\] look like sensor ids"):
        read_covariates([str(other)], _series())
    named = tmp_path / "shaped.csv"  # ids shaped like the series' (S + digits)
    named.write_text("timestamp,S9,S10\n" + "".join(f"{t},0,1\n" for t in _times(s)))
    with pytest.raises(SeriesError, match=r"\['S9', 'S10'\] look like sensor ids"):
        read_covariates([str(named)], _series(sensors=("S1", "S2", "S3")))
    rain = tmp_path / "rain.csv"  # a real shared series still reads
    rain.write_text("timestamp,rain_mm_h\n" + "".join(f"{t},1\n" for t in _times(s)))
    assert read_covariates([str(rain)], s)[0].kind == "shared"


def _rain_and_flags(tmp_path, rain_known, flag_known):
    s = _series()
    t = _times(s)
    (tmp_path / "rain.csv").write_text("timestamp,rain\n" + "".join(f"{x},{i}\n" for i, x in enumerate(t)))
    (tmp_path / "inc.csv").write_text("timestamp,700001,700002,700003\n" + "".join(
        f"{x},{int(i == 9)},0,0\n" for i, x in enumerate(t)))
    specs = [str(tmp_path / "rain.csv") + rain_known, str(tmp_path / "inc.csv") + flag_known]
    return s, read_covariates(specs, s)


def test_declared_observed_rain_is_held_at_the_last_input_step(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="stgraph"):
        s, src = _rain_and_flags(tmp_path, ":observed", ":forecast")
    text = caplog.text
    assert "covariate rain" in text and "shared series" in text and "observed (held at the last input step)" in text
    assert "covariate inc" in text and "per-sensor series" in text and "known ahead (forecast)" in text
    data = ForecastData.from_series(s, input_len=4, horizon=3, split=(0.5, 0.25, 0.25), covariates=src)
    exo = data.exogenous
    assert exo.stats["rain"]["known_ahead"] is False and exo.stats["inc"]["known_ahead"] is True
    b = data.batch(torch.tensor([6]))  # input rows 6..9, forecast rows 10..12
    mean, std = exo.stats["rain"]["mean"][0], exo.stats["rain"]["std"][0]
    # by hand: rain at row r is r; observed only -> every forecast step holds row 9's value
    assert torch.allclose(b.exo_in[0, :, 2, 0], (torch.tensor([6.0, 7, 8, 9]) - mean) / std)
    assert torch.allclose(b.exo_out[0, :, 2, 0], torch.full((3,), (9.0 - mean) / std))
    # the flag declared known ahead (a planned closure) shows rows 10..12 at the forecast steps, not row 9's 1
    assert b.exo_in[0, :, 0, 1].tolist() == [0, 0, 0, 1] and b.exo_out[0, :, 0, 1].tolist() == [0, 0, 0]
    # the default (no suffix) keeps the kind's rule: rain known ahead -> rows 10, 11, 12
    s, src = _rain_and_flags(tmp_path, "", "")
    data = ForecastData.from_series(s, input_len=4, horizon=3, split=(0.5, 0.25, 0.25), covariates=src)
    b = data.batch(torch.tensor([6]))
    mean, std = data.exogenous.stats["rain"]["mean"][0], data.exogenous.stats["rain"]["std"][0]
    assert torch.allclose(b.exo_out[0, :, 2, 0], (torch.tensor([10.0, 11, 12]) - mean) / std)
    assert b.exo_out[0, :, 0, 1].tolist() == [1, 1, 1]


def test_a_run_reopened_with_another_known_ahead_choice_is_refused(tmp_path):
    s, src = _rain_and_flags(tmp_path, ":observed", "")
    stats = Exogenous(src, s.num_nodes, np.arange(20)).state_dict()
    _, ahead = _rain_and_flags(tmp_path, ":forecast", "")
    with pytest.raises(ConfigError, match=r"rain.*observed \(this file: known ahead\)"):
        Exogenous(ahead, s.num_nodes, stats=stats)
    old = {k: {kk: vv for kk, vv in v.items() if kk != "known_ahead"} for k, v in stats.items()}
    Exogenous(src, s.num_nodes, stats=old)  # a checkpoint from before the field opens with the kind's default


def test_yaml_spec_and_static_refusal(tmp_path):
    s = _series()
    (tmp_path / "rain.csv").write_text("timestamp,rain\n" + "".join(f"{x},1\n" for x in _times(s)))
    (tmp_path / "cov.yaml").write_text("- file: rain.csv\n  known: observed\n")
    assert parse_specs([str(tmp_path / "cov.yaml")]) == [(str(tmp_path / "rain.csv"), "observed",
                                                          f"{tmp_path / 'cov.yaml'}#1")]
    assert read_covariates([str(tmp_path / "cov.yaml")], s)[0].known_ahead is False
    (tmp_path / "bad.yaml").write_text("- file: rain.csv\n  known: maybe\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*entry 1 \(rain.csv\): known = 'maybe'"):
        read_covariates([str(tmp_path / "bad.yaml")], s)
    (tmp_path / "road.csv").write_text("sensor_id,lanes\n700001,3\n700002,2\n700003,4\n")
    with pytest.raises(ConfigError, match="static features do not change over time"):
        read_covariates([str(tmp_path / "road.csv") + ":observed"], s)


def test_offsets_are_converted_to_the_series_clock_with_a_message(tmp_path, caplog):
    s = _series()
    # the same instants as the series' steps at +01:00, written at +02:00: one hour later on the file's clock
    t = s.timestamps + np.timedelta64(1, "h")
    p = tmp_path / "rain.csv"
    p.write_text("timestamp,rain\n" + "".join(f"{str(x)[:16]}+02:00,{i}\n" for i, x in enumerate(t)))
    with pytest.raises(ConfigError, match=r"rain.csv.*UTC offset \+02:00.*data.time_zone"):
        read_covariates([str(p)], s)
    with caplog.at_level(logging.INFO, logger="stgraph"):
        src = read_covariates([str(p)], s, time_zone="+01:00")[0]
    assert "UTC offset +02:00 converted to the series' clock (data.time_zone = +01:00)" in caplog.text
    assert src.values[:, 0].tolist() == list(range(48))  # row i lands on series step i, not shifted
    src = read_covariates([str(p)], s, time_zone="UTC")[0]  # 1 h earlier on a UTC clock: row i at step i - 12
    assert src.values[:36, 0].tolist() == list(range(12, 48))
    assert src.values[36, 0] == 47 and np.isnan(src.values[37:, 0]).all()  # the last reading holds its 5 min
    summer = read_covariates([str(p)], s, time_zone="Europe/Paris")[0]  # March: +01:00 (CET)
    assert summer.values[:, 0].tolist() == list(range(48))
    with pytest.raises(ConfigError, match="not a time zone"):
        read_covariates([str(p)], s, time_zone="Mars/Olympus")


def test_a_reports_file_with_offsets_is_converted_once_ends_too(tmp_path, caplog):
    s = _series()
    p = tmp_path / "notes.csv"
    p.write_text("timestamp,sensor,end,text\n"
                 f"2012-03-01 02:10+02:00,{s.sensor_ids[0]},2012-03-01 03:00+02:00,lane closed\n"
                 f"2012-03-01 02:20+02:00,{s.sensor_ids[1]},,crash expect 20 minutes\n")
    with caplog.at_level(logging.INFO, logger="stgraph"):
        table = read_covariates([str(p)], s, time_zone="UTC")[0].table
    assert caplog.text.count("converted to the series' clock") == 1
    assert (table.times == np.array(["2012-03-01T00:10", "2012-03-01T00:20"], "datetime64[ns]")).all()
    assert table.ends[0] == np.datetime64("2012-03-01T01:00", "ns") and np.isnat(table.ends[1])


def test_values_that_overflow_the_scaler_are_refused_naming_file_column_and_row(tmp_path):
    s = _series()
    rows = [f"{x},{1e39 if i == 5 else 1}\n" for i, x in enumerate(_times(s))]
    p = tmp_path / "rain.csv"
    p.write_text("timestamp,rain_mm_h\n" + "".join(rows))
    with pytest.raises(DataFormatError, match=r"rain.csv.*1e\+39 at step 5, sensor 'rain_mm_h' is beyond the float32"):
        read_covariates([str(p)], s)
    # training rows 0 / 2 (std 1); a finite float32 reading in the test rows whose z-score is not
    rows = [f"{x},{3.3e38 if i == 40 else 2 * (i % 2)}\n" for i, x in enumerate(_times(s))]
    p.write_text("timestamp,rain_mm_h\n" + "".join(rows))
    with pytest.raises(ConfigError, match=r"rain.csv, column 'rain_mm_h', series step 40.*overflows the scaler"):
        ForecastData.from_series(s, input_len=4, horizon=3, split=(0.5, 0.25, 0.25),
                                 covariates=read_covariates([str(p)], s))
