"""POST /forecast for a run trained with a text reports file: the window's reports are posted as records
(``covariates.<name>.reports``) and give forecast_at's numbers for that window; a report published after the last
step changes nothing; bad records are a 422 naming the record."""
import csv

import numpy as np
import pytest
from fastapi.testclient import TestClient

import stgraph
from stgraph.serve import create_app


@pytest.fixture(scope="module")
def texty(tmp_path_factory):
    """``(run, files, client)``: stgt trained a few steps on 6 synthetic sensors with incidents.csv and reports.csv."""
    from stgraph.synth.events import write_events

    root = tmp_path_factory.mktemp("texty")
    files = write_events(root / "ev", num_sensors=6, days=2, seed=3, rain=False, incidents=True, reports=True,
                         incident_rate=4.0)
    run = stgraph.train(data=files["data"], graph=files["adj"], model="stgt", epochs=1, out=root / "run",
                        covariates=[str(files["incidents"]), str(files["reports"])], progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 2, "train.patience": 0,
                                   "data.locations": str(files["locations"])})
    with TestClient(create_app(run)) as c:
        yield run, files, c


def _records(path, until) -> list[dict]:
    """The rows of reports.csv published by ``until`` as request records, by hand."""
    out = []
    for r in csv.DictReader(open(path)):
        if np.datetime64(r["timestamp"]) <= until:
            out.append({k: (float(v) if k in ("lat", "lon") else v) for k, v in r.items() if v != ""})
    return out


def _incidents(path, first, last) -> dict:
    rows = list(csv.reader(open(path)))
    return {"timestamps": [r[0] for r in rows[1 + first:2 + last]], "columns": rows[0][1:],
            "values": [[float(v) for v in r[1:]] for r in rows[1 + first:2 + last]]}


def test_posted_reports_equal_forecast_at(texty, window_body):
    from stgraph.forecast import forecast_at

    run, files, c = texty
    T = run.data.input_len
    tokens = run.data.exogenous.reports["reports"]
    reached = np.flatnonzero((tokens.slots[..., 0] >= 0).any(1).numpy())
    end = int(reached[len(reached) // 2])                      # a window whose last input step a report reaches
    at = run.series.timestamps[end]
    records = _records(files["reports"], at)
    assert records and any(np.datetime64(r["timestamp"]) > at - np.timedelta64(1, "h") for r in records)
    body = {**window_body(run, end), "covariates": {"incidents": _incidents(files["incidents"], end - T + 1, end),
                                                    "reports": {"reports": records}}}
    r = c.post("/forecast", json=body)
    assert r.status_code == 200, r.text
    want = forecast_at(run, str(np.datetime_as_string(at, unit="s"))).mean
    got = np.asarray(r.json()["forecast"], np.float32)
    assert np.array_equal(got, want)
    later = {**body, "covariates": {**body["covariates"], "reports": {"reports": records + [
        {"timestamp": str(np.datetime_as_string(at + np.timedelta64(5, "m"), unit="m")), "sensor": "700001",
         "text": "all lanes blocked expect 90 minutes"}]}}}
    assert np.array_equal(np.asarray(c.post("/forecast", json=later).json()["forecast"], np.float32), got)
    none = {**body, "covariates": {**body["covariates"], "reports": {"reports": []}}}
    assert not np.allclose(np.asarray(c.post("/forecast", json=none).json()["forecast"], np.float32), got)


def test_bad_report_records_name_their_field(texty, window_body):
    run, files, c = texty
    end = 200
    base = {**window_body(run, end), "covariates": {"incidents": _incidents(files["incidents"], end - 11, end)}}

    def field(reports):
        r = c.post("/forecast", json={**base, "covariates": {**base["covariates"], **reports}})
        assert r.status_code == 422, r.text
        d = r.json()["detail"][0]
        return d["loc"][-1], d["msg"]

    f, msg = field({})
    assert f == "covariates.reports" and "text reports" in msg and "missing" in msg
    assert c.get("/forecast/latest").status_code == 200          # the run's own series and reports file
    csv_body = "timestamp," + ",".join(base["sensors"]) + "\n" + "".join(
        t + "," + ",".join("" if v is None else repr(v) for v in row) + "\n"
        for t, row in zip(base["timestamps"], base["values"]))
    r = c.post("/forecast", content=csv_body.encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "covariates" and "CSV" in r.text
    ok = {"timestamp": "2012-03-01 10:00", "sensor": "700002", "text": "crash"}
    f, msg = field({"reports": {"reports": [ok, {**ok, "sensor": "999"}]}})
    assert f == "covariates.reports.reports[1]" and "'999' is not a sensor" in msg
    f, msg = field({"reports": {"reports": [ok, {**ok, "timestamp": "soon"}]}})
    assert f == "covariates.reports.reports[1]" and "no publication time" in msg
    f, msg = field({"reports": {"reports": [{**ok, "lat": 34.0}]}})
    assert f == "covariates.reports.reports[0]" and "both or neither" in msg
    f, msg = field({"reports": {"reports": [{**ok, "lat": 10.0, "lon": 10.0, "sensor": None}]}})
    assert f == "covariates.reports.reports[0]" and "outside the network" in msg
