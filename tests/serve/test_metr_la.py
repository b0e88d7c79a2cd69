"""On a run trained on the real METR-LA week, POST /forecast answers with exactly the numbers of
`stgraph predict` for the same window (207 sensors, zeros = missing readings sent as null)."""
import csv

import numpy as np
from fastapi.testclient import TestClient

import stgraph
from stgraph.cli.main import main
from stgraph.serve import create_app


def test_metr_la_week_forecast_equals_predict(metr_week_dir, tmp_path, window_body):
    from stgraph.forecast import forecast_at

    run = stgraph.train(data=metr_week_dir / "metr-la-week.h5", graph=metr_week_dir / "adj_mx.pkl", model="stid",
                        epochs=1, out=tmp_path / "stid", progress=False,
                        overrides={"train.max_batches": 3, "train.patience": 0})
    from stgraph.io.series import Series

    s = run.series
    end = len(s.timestamps) - 100
    at = str(np.datetime_as_string(s.timestamps[end], unit="s"))
    body = window_body(run, end)
    holes = dict(body, values=[[None if (t + n) % 7 == 0 else v for n, v in enumerate(row)]
                               for t, row in enumerate(body["values"])])
    with TestClient(create_app(tmp_path / "stid")) as c:
        a = c.post("/forecast", json=body).json()
        b = c.post("/forecast", json=holes).json()
        sensors = c.get("/sensors").json()["sensors"]
    # missing readings follow the run's null convention (METR-LA: 0 = missing)
    vals = s.values.copy()
    t, n = np.meshgrid(np.arange(12), np.arange(207), indexing="ij")
    vals[end - 11:end + 1][(t + n) % 7 == 0] = 0.0
    zeroed = Series(vals, s.timestamps, s.sensor_ids, s.channels, s.null_value)
    assert np.array_equal(np.asarray(b["forecast"], np.float32), forecast_at(run, at, series=zeroed).mean)
    assert b["forecast"] != a["forecast"]
    assert len(a["sensors"]) == 207 and all(s["lat"] is not None for s in sensors)  # graph_sensor_locations.csv
    assert np.array_equal(np.asarray(a["forecast"], np.float32), forecast_at(run, at).mean)
    out = tmp_path / "fc.csv"
    assert main(["predict", str(tmp_path / "stid"), "--at", at, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 207 * 12
    pos = {s: i for i, s in enumerate(a["sensors"])}
    for r in rows:
        v = a["forecast"][int(r["horizon"]) - 1][pos[r["sensor_id"]]][0]
        assert np.float32(r["forecast"]) == np.round(np.float32(v), 4)
