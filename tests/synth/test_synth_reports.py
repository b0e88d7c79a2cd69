"""Synthetic text reports (issue 27): words that carry severity and duration, planned events that slow the
venue's roads, noise, deterministic with the seed; and a run trained with them, re-read by predict/evaluate."""
import re

import numpy as np

from stgraph import synth
from stgraph.synth.disruptions import Incident
from stgraph.synth.reports import affected_mask, incident_reports, planned_events


def test_incident_words_carry_severity_and_duration():
    ts = np.datetime64("2012-03-01", "ns") + np.arange(100) * np.timedelta64(5, "m")
    incs = [Incident("s1", 10, 18, 0.7), Incident("s2", 20, 6, 0.3), Incident("s3", 30, 12, 0.5)]
    rows = incident_reports(incs, ts, 5.0, seed=4)
    assert [r[1] for r in rows] == ["s1", "s2", "s3"]
    for (when, _, _, _, end, text), inc, grade in zip(rows, incs, ("major", "minor", "moderate")):
        start = ts[inc.start_step]
        assert start <= when <= start + np.timedelta64(10, "m")          # published 0-10 min after it starts
        assert end == ""                                                 # no end column: only the words say
        minutes = int(re.search(r"(\d+) min", text).group(1))
        assert 0.8 * inc.duration_steps * 5 - 5 <= minutes <= 1.2 * inc.duration_steps * 5 + 5
        lanes = {"major": ("all lanes", "three lanes", "fully closed"), "minor": ("shoulder", "one lane", "partly"),
                 "moderate": ("two",)}[grade]
        assert grade in text.lower() or any(w in text for w in lanes), text
    assert incident_reports(incs, ts, 5.0, seed=4) == rows


def test_planned_events_slow_the_venue_after_the_stated_end(tmp_path):
    graph = synth.make_road_network(12, seed=2)
    series = synth.simulate_speeds(graph, days=4, seed=2, incident_rate=0.0, missing_ratio=0.0)
    out, notices, events = planned_events(series, graph, seed=2)
    assert notices and len(notices) == len(events)
    venue, a, b, reach, notice = events[0]
    when, sensor, lat, lon, end, text = notices[0]
    assert sensor == "" and lat and lon and re.search(r"\d\d:\d\d", text)
    day = np.datetime64(series.timestamps[a], "D")
    assert when == day and series.timestamps[notice] == day                # on the schedule from the day's start
    hhmm = re.search(r"(\d\d:\d\d)", text).group(1)
    clock = np.datetime64(f"{day}T{hhmm}")
    assert series.timestamps[a] == clock                                   # the crowds from the stated end on
    minutes = int(re.search(r"(\d+) min", text).group(1))
    assert np.datetime64(end) == clock + np.timedelta64(minutes, "m")      # end: the stated end of the crowds
    assert series.timestamps[b] == np.datetime64(end)
    ratio = out.values[a:b, venue, 0] / series.values[a:b, venue, 0]
    assert ratio.min() < 0.9 and (out.values[:a] == series.values[:a]).all()
    mask = affected_mask([], events, graph, series.num_steps, 5.0)
    assert mask[a:b, venue].all() and not mask[:a].any()
    since = affected_mask([], events, graph, series.num_steps, 5.0, reported=True)
    assert (since[a:b, venue] == notice).all()                            # foreseeable from the notice on


def test_synth_reports_cli_is_deterministic_and_a_text_run_is_re_read(tmp_path, capsys):
    from stgraph.cli.main import main

    for out in ("a", "b"):
        assert main(["data", "synth", "--out", str(tmp_path / out), "--sensors", "8", "--days", "2", "--incidents",
                     "--reports", "--seed", "5"]) == 0
    a, b = (tmp_path / x / "reports.csv" for x in "ab")
    assert a.read_bytes() == b.read_bytes() and a.read_text().startswith("timestamp,sensor,lat,lon,end,text")
    d = tmp_path / "a"
    assert main(["train", "--data", str(d / "synthetic.h5"), "--graph", str(d / "adj_mx.pkl"), "--model", "stgt",
                 "--out", str(tmp_path / "run"), "--covariates", str(d / "incidents.csv"), "--covariates",
                 str(a), "--epochs", "1", "--no-progress", "--set", f"data.locations={d / 'graph_sensor_locations.csv'}",
                 "--set", "model.params.hidden=8"]) == 0
    assert "covariate reports" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert "text reports" in capsys.readouterr().out                     # the report file re-read
    assert main(["predict", str(tmp_path / "run"), "--at", "2012-03-01T22:00", "--out", str(tmp_path / "f.csv")]) == 0
    assert "text reports" in capsys.readouterr().out and (tmp_path / "f.csv").exists()
