"""A run trained with covariate files (the synthetic rain, shared and known ahead, and incident flags, per sensor
and observed): GET /forecast/latest forecasts from the run's own series with its covariates, and POST /forecast
with the covariate rows of a window (JSON ``covariates``) gives forecast_at's and `stgraph predict`'s numbers for
that window; every bad covariate table is a 422 naming its field."""
import csv
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import stgraph
from stgraph.serve import create_app


@pytest.fixture(scope="module")
def rainy(tmp_path_factory):
    """``(run, files, client)``: stgt trained a few steps on 6 synthetic sensors with rain.csv and incidents.csv."""
    from stgraph.synth.events import write_events

    root = tmp_path_factory.mktemp("rainy")
    files = write_events(root / "ev", num_sensors=6, days=2, seed=3, rain=True, incidents=True)
    run = stgraph.train(data=files["data"], graph=files["adj"], model="stgt", epochs=1, out=root / "run",
                        covariates=[str(files["rain"]), str(files["incidents"])], progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 2, "train.patience": 0})
    with TestClient(create_app(run)) as c:
        yield run, files, c


def _table(path, first: int, last: int) -> dict:
    """Rows ``first..last`` (series rows: the synthetic files have one row per step) of a covariate CSV as a
    request's table, by hand."""
    rows = list(csv.reader(open(path)))
    return {"timestamps": [r[0] for r in rows[1 + first:2 + last]], "columns": rows[0][1:],
            "values": [[float(v) for v in r[1:]] for r in rows[1 + first:2 + last]]}


def _body(run, files, window_body, end: int) -> dict:
    """The request of the window ending at series row ``end``: readings, rain over the input and forecast steps,
    incidents over the input steps."""
    T, H = run.data.input_len, run.data.horizon
    return {**window_body(run, end), "covariates": {"rain": _table(files["rain"], end - T + 1, end + H),
                                                    "incidents": _table(files["incidents"], end - T + 1, end)}}


def _fields(r):
    assert r.status_code == 422, r.text
    d = r.json()["detail"][0]
    return d["loc"][-1], d["msg"]


def test_latest_forecasts_from_the_runs_series(rainy, window_body):
    from stgraph.forecast import forecast_at

    run, _, c = rainy
    a = c.get("/forecast/latest").json()
    assert np.array_equal(np.asarray(a["forecast"], np.float32), forecast_at(run).mean)
    field, msg = _fields(c.post("/forecast", json=window_body(run)))  # readings without the covariates
    assert field == "covariates" and "GET /forecast/latest" in msg and "'covariates'" in msg
    schema = c.get("/openapi.json").json()["paths"]["/forecast"]["post"]["requestBody"]["content"]
    text = json.dumps(schema["application/json"])  # the covariate table drawn in place at /docs
    assert '"covariates"' in text and '"columns"' in text and "$ref" not in text


def test_post_with_covariates_equals_forecast_at_and_predict(rainy, window_body, tmp_path):
    from stgraph.cli.main import main
    from stgraph.forecast import forecast_at

    run, files, c = rainy
    flags = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(open(files["incidents"])))[1:]])
    end = int(np.flatnonzero(flags.any(1))[0]) + 3  # an incident in the input steps
    at = str(np.datetime_as_string(run.series.timestamps[end], unit="s"))
    body = _body(run, files, window_body, end)
    assert np.any(body["covariates"]["rain"]["values"]) and np.any(body["covariates"]["incidents"]["values"])
    r = c.post("/forecast", json=body)
    assert r.status_code == 200, r.text
    a = r.json()
    fc = forecast_at(run, at)
    assert np.array_equal(np.asarray(a["forecast"], np.float32), fc.mean) and a["issued_at"] == at
    out = tmp_path / "fc.csv"
    assert main(["predict", str(run.files.root), "--at", at, "--out", str(out)]) == 0
    for row in csv.DictReader(out.open()):  # predict writes np.round(float32, 4)
        t, n = int(row["horizon"]) - 1, a["sensors"].index(row["sensor_id"])
        assert np.float32(row["forecast"]) == np.round(np.float32(a["forecast"][t][n][0]), 4)
    # rain is known ahead: its forecast-step rows are read; incidents are observed: held at the last input step
    wet = json.loads(json.dumps(body))
    wet["covariates"]["rain"]["values"][-1] = [50.0]
    assert not np.array_equal(np.asarray(c.post("/forecast", json=wet).json()["forecast"], np.float32), fc.mean)
    held = json.loads(json.dumps(body))
    held["covariates"]["incidents"]["timestamps"].append(iso_after(body["covariates"]["incidents"]["timestamps"]))
    held["covariates"]["incidents"]["values"].append([1.0] * 6)
    assert np.array_equal(np.asarray(c.post("/forecast", json=held).json()["forecast"], np.float32), fc.mean)
    # a missing value is null, as an empty cell of the file; columns in any order; static sources need nothing
    gap = json.loads(json.dumps(body))
    gap["covariates"]["rain"]["values"][0] = [None]
    inc = gap["covariates"]["incidents"]
    inc["columns"], inc["values"] = inc["columns"][::-1], [v[::-1] for v in inc["values"]]
    assert c.post("/forecast", json=gap).status_code == 200


def iso_after(stamps: list) -> str:
    t = np.datetime64(stamps[-1]) + (np.datetime64(stamps[-1]) - np.datetime64(stamps[-2]))
    return str(np.datetime_as_string(t, unit="s"))


def test_bad_covariates_name_their_field(rainy, window_body, served):
    run, files, c = rainy
    ok = _body(run, files, window_body, 300)

    def post(change, text=lambda raw: raw):
        body = json.loads(json.dumps(ok))
        change(body["covariates"])
        json_type = {"content-type": "application/json"}
        return _fields(c.post("/forecast", content=text(json.dumps(body)), headers=json_type))

    field, msg = post(lambda cov: cov.pop("incidents"))
    assert field == "covariates.incidents" and "missing" in msg and "incidents" in msg
    field, msg = post(lambda cov: cov.update(snow=cov["rain"]))
    assert field == "covariates.snow" and "not a covariate source" in msg and "rain" in msg
    # a row holds for the file's interval (5 min), as when the run's file was aligned: one row short is covered
    field, msg = post(lambda cov: [cov["rain"][k].__delitem__(slice(-2, None)) for k in ("timestamps", "values")])
    assert field == "covariates.rain.timestamps" and "forecast step 2012-03-02T02:00:00" in msg and "known ahead" in msg
    assert "at most 5min before" in msg
    field, msg = post(lambda cov: [cov["incidents"][k].pop(0) for k in ("timestamps", "values")])
    assert field == "covariates.incidents.timestamps" and "input step" in msg
    field, msg = post(lambda cov: cov["incidents"]["columns"].__setitem__(2, "999999"))
    assert field == "covariates.incidents.columns[2]" and "'999999'" in msg and "not a sensor" in msg
    field, msg = post(lambda cov: cov["incidents"]["columns"].__setitem__(1, cov["incidents"]["columns"][0]))
    assert field == "covariates.incidents.columns" and "more than once" in msg and "700001" in msg
    field, msg = post(lambda cov: cov["rain"]["columns"].__setitem__(0, "snow_cm"))
    assert field == "covariates.rain.columns[0]" and "rain_mm_h" in msg
    field, msg = post(lambda cov: cov["rain"]["timestamps"].__setitem__(3, cov["rain"]["timestamps"][1]))
    assert field == "covariates.rain.timestamps[3]" and "not after" in msg
    field, msg = post(lambda cov: cov["rain"]["timestamps"].__setitem__(0, "soon"))
    assert field == "covariates.rain.timestamps[0]"
    field, msg = post(lambda cov: cov["incidents"]["values"].pop())
    assert field == "covariates.incidents.values" and "shape" in msg
    field, msg = post(lambda cov: cov["rain"].pop("columns"))
    assert field == "covariates.rain.columns" and "required" in msg.lower()
    field, msg = post(lambda cov: cov["rain"]["values"].__setitem__(2, [12345.5]),  # JSON's overflow: infinity
                      lambda raw: raw.replace("12345.5", "1e400"))
    assert field == "covariates.rain.values[2][0]" and "infinite" in msg
    raw = json.dumps(ok)
    i = raw.index('"rain_mm_h"], "values": [[') + len('"rain_mm_h"], "values": [[')
    for literal in ("NaN", "-Infinity"):
        field, msg = _fields(c.post("/forecast", content=raw[:i] + literal + raw[raw.index("]", i):],
                                    headers={"content-type": "application/json"}))
        assert field == "covariates.rain.values[0][0]" and literal in msg and "null" in msg


def test_csv_body_and_runs_without_covariates(rainy, window_body, served):
    run, _, c = rainy
    body = window_body(run)
    lines = ["timestamp," + ",".join(body["sensors"])] + [
        t + "," + ",".join("" if v is None else repr(v) for v in row)
        for t, row in zip(body["timestamps"], body["values"])]
    field, msg = _fields(c.post("/forecast", content="\n".join(lines).encode(), headers={"content-type": "text/csv"}))
    assert field == "covariates" and "CSV" in msg
    plain = stgraph.open_run(served["stid"])
    with TestClient(create_app(plain)) as c2:
        field, msg = _fields(c2.post("/forecast", json={**window_body(plain), "covariates": {
            "rain": {"timestamps": ["2012-03-01T00:00:00"], "columns": ["rain_mm_h"], "values": [[0.0]]}}}))
    assert field == "covariates" and "without covariate files" in msg


def test_events_static_and_declared_known_ahead(rainy, tmp_path, window_body):
    """Calendar events are posted as 0/1 flags, one row per step; static features are the run's own; a per-sensor
    file declared ':forecast' needs its forecast-step rows, rain declared ':observed' only the input steps."""
    from stgraph.forecast import forecast_at

    _, files, _ = rainy
    events = tmp_path / "events.csv"
    events.write_text("start,end,kind\n2012-03-01T12:30:00,2012-03-01T14:00:00,game\n"
                      "2012-03-01T13:40:00,2012-03-01T13:50:00,parade\n")
    static = tmp_path / "road.csv"
    static.write_text("sensor_id,lanes,road_class\n" + "".join(f"70000{i},{i % 3 + 1},{'ab'[i % 2]}\n"
                                                                 for i in range(1, 7)))
    run = stgraph.train(data=files["data"], graph=files["adj"], model="stgt", epochs=1, out=tmp_path / "run",
                        covariates=[f"{files['rain']}:observed", f"{files['incidents']}:forecast", str(events),
                                    str(static)], progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 2, "train.patience": 0})
    end, T, H = 160, run.data.input_len, run.data.horizon  # 13:20: the game and the parade in the horizon
    times = run.series.timestamps[end - T + 1:end + H + 1]
    flags = [[1.0 if np.datetime64("2012-03-01T12:30") <= t < np.datetime64("2012-03-01T14:00") else 0.0,
              1.0 if np.datetime64("2012-03-01T13:40") <= t < np.datetime64("2012-03-01T13:50") else 0.0]
             for t in times]
    stamps = [str(np.datetime_as_string(t, unit="s")) for t in times]
    body = {**window_body(run, end), "covariates": {
        "rain": _table(files["rain"], end - T + 1, end), "incidents": _table(files["incidents"], end - T + 1, end + H),
        "events": {"timestamps": stamps, "columns": ["game", "parade"], "values": flags}}}
    with TestClient(create_app(run)) as c:
        r = c.post("/forecast", json=body)
        assert r.status_code == 200, r.text
        at = str(np.datetime_as_string(run.series.timestamps[end], unit="s"))
        assert np.array_equal(np.asarray(r.json()["forecast"], np.float32), forecast_at(run, at).mean)
        calm = json.loads(json.dumps(body))  # the posted flags are what the forward reads
        calm["covariates"]["events"]["values"] = [[0.0, 0.0]] * len(stamps)
        assert c.post("/forecast", json=calm).json()["forecast"] != r.json()["forecast"]
        short = json.loads(json.dumps(body))
        short["covariates"]["incidents"] = _table(files["incidents"], end - T + 1, end)
        field, msg = _fields(c.post("/forecast", json=short))
        assert field == "covariates.incidents.timestamps" and "forecast step" in msg and "known ahead" in msg
        gap = json.loads(json.dumps(body))
        for k in ("timestamps", "values"):
            del gap["covariates"]["events"][k][5]
        field, msg = _fields(c.post("/forecast", json=gap))
        assert field == "covariates.events.timestamps" and "a row at that time" in msg and stamps[5] in msg
        extra = json.loads(json.dumps(body))
        extra["covariates"]["road"] = {"timestamps": stamps[:1], "columns": ["lanes"], "values": [[2.0]]}
        field, msg = _fields(c.post("/forecast", json=extra))
        assert field == "covariates.road" and "static" in msg


def test_concurrent_covariate_requests_batched(rainy, window_body):
    """Windows with their own covariates share a forward and each gets its own window's forecast."""
    import asyncio

    import httpx

    from stgraph.forecast import forecast_at

    run, files, _ = rainy
    ends = [200 + 9 * k for k in range(12)]
    bodies = [_body(run, files, window_body, e) for e in ends]
    app = create_app(run)

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            out = await asyncio.gather(*(c.post("/forecast", json=b) for b in bodies))
        await app.state.batcher.stop()
        return out

    answers = asyncio.run(go())
    assert max(app.state.batcher.batches) > 1
    for r, e in zip(answers, ends):
        at = str(np.datetime_as_string(run.series.timestamps[e], unit="s"))
        np.testing.assert_allclose(r.json()["forecast"], forecast_at(run, at).mean, rtol=1e-5, atol=1e-4)


def test_static_features_only_need_nothing_posted(rainy, tmp_path, window_body):
    from stgraph.forecast import forecast_at

    _, files, _ = rainy
    static = tmp_path / "road.csv"
    static.write_text("sensor_id,lanes\n" + "".join(f"70000{i},{i % 3 + 1}\n" for i in range(1, 7)))
    run = stgraph.train(data=files["data"], graph=files["adj"], model="stgt", epochs=1, out=tmp_path / "run",
                        covariates=[str(static)], progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 2, "train.patience": 0})
    end = 300
    at = str(np.datetime_as_string(run.series.timestamps[end], unit="s"))
    with TestClient(create_app(run)) as c:
        r = c.post("/forecast", json=window_body(run, end))
        assert r.status_code == 200, r.text
        assert np.array_equal(np.asarray(r.json()["forecast"], np.float32), forecast_at(run, at).mean)
        body = window_body(run, end)
        lines = ["timestamp," + ",".join(body["sensors"])] + [
            t + "," + ",".join("" if v is None else repr(v) for v in row)
            for t, row in zip(body["timestamps"], body["values"])]
        assert c.post("/forecast", content="\n".join(lines).encode(), headers={"content-type": "text/csv"}).json() \
            == r.json()
        body["covariates"] = {"road": {"timestamps": body["timestamps"][:1], "columns": ["lanes"], "values": [[1]]}}
        field, msg = _fields(c.post("/forecast", json=body))
    assert field == "covariates.road" and "static" in msg
