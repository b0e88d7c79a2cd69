"""stgraph serve's app through FastAPI's TestClient (no socket): forecasts equal `stgraph predict`'s, every
class of bad input is a JSON 4xx naming its field, the watched file, sensors, model facts, the token."""
import csv
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from stgraph.serve import create_app


@pytest.fixture(scope="module")
def client(stgt_run):
    with TestClient(create_app(stgt_run, max_body=200_000)) as c:
        yield c


def _fields(r, status=422):
    assert r.status_code == status, r.text
    d = r.json()["detail"][0]
    return d["loc"][-1], d["msg"]


def test_forecast_equals_predict(served, stgt_run, client, window_body, tmp_path):
    """The same window: /forecast's numbers are forecast_at's exactly, and `stgraph predict`'s CSV (4 decimals)."""
    from stgraph.cli.main import main
    from stgraph.forecast import forecast_at

    run = stgt_run
    end = len(run.series.timestamps) - 30
    at = str(np.datetime_as_string(run.series.timestamps[end], unit="s"))
    a = client.post("/forecast", json=window_body(run, end)).json()
    fc = forecast_at(run, at)
    for key, ref in (("forecast", fc.mean), ("q05", fc.q05), ("q95", fc.q95), ("std", fc.std)):
        assert np.array_equal(np.asarray(a[key], dtype=np.float32), ref), key
    assert a["q50"] == a["forecast"] and a["probabilistic"] and a["issued_at"] == at
    assert a["steps"] == [str(t) for t in np.datetime_as_string(fc.timestamps, unit="s")]
    out = tmp_path / "fc.csv"
    assert main(["predict", str(served["stgt"]), "--at", at, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    ids = a["sensors"]
    for r in rows:
        t, n = int(r["horizon"]) - 1, ids.index(r["sensor_id"])
        for key in ("forecast", "q05", "q95"):  # predict writes np.round(float32, 4)
            assert np.float32(r[key]) == np.round(np.float32(a[key][t][n][0]), 4)
    assert len(rows) == len(ids) * run.data.horizon


def test_csv_body_same_answer(stgt_run, client, window_body):
    body = window_body(stgt_run)
    order = body["sensors"][::-1]  # sensors by id, any column order
    lines = ["timestamp," + ",".join(order)]
    for t, row in zip(body["timestamps"], body["values"]):
        by = dict(zip(body["sensors"], row))
        lines.append(t.replace("T", " ") + "," + ",".join("" if by[s] is None else repr(by[s]) for s in order))
    r = client.post("/forecast", content="\n".join(lines).encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["forecast"] == client.post("/forecast", json=body).json()["forecast"]


def test_bad_inputs_name_their_field(stgt_run, client, window_body):
    ok = window_body(stgt_run)
    ids = ok["sensors"]
    post = lambda b: client.post("/forecast", json=b)  # noqa: E731
    field, msg = _fields(post(dict(ok, sensors=ids[:-1] + ["nope"])))
    assert field == "sensors" and "'nope'" in msg and "unknown" in msg
    field, msg = _fields(post(dict(ok, sensors=ids[:-1], values=[r[:-1] for r in ok["values"]])))
    assert field == "sensors" and ids[-1] in msg and "missing" in msg
    field, msg = _fields(post(dict(ok, values=[r[:-2] for r in ok["values"]])))
    assert field == "values" and "shape [12, 8, 1]" in msg and "N=10" in msg
    field, msg = _fields(post(dict(ok, values=ok["values"][:3] + [ok["values"][3][:4]] + ok["values"][4:])))
    assert field == "values" and "rectangular" in msg
    field, msg = _fields(post(dict(ok, timestamps=ok["timestamps"][::-1], values=ok["values"][::-1])))
    assert field == "timestamps[1]" and "not after" in msg
    stamps = list(ok["timestamps"])
    stamps[5:] = [s[:14] + "%02d" % ((int(s[14:16]) + 5) % 60) + s[16:] for s in stamps[5:]]  # a 10-minute step
    field, msg = _fields(post(dict(ok, timestamps=stamps)))
    assert field == "timestamps[5]" and "10min after" in msg and "5min" in msg
    field, msg = _fields(post(dict(ok, timestamps=ok["timestamps"][1:], values=ok["values"][1:])))
    assert field == "timestamps" and "needs the latest 12" in msg
    field, msg = _fields(post(dict(ok, timestamps=["yesterday"] + ok["timestamps"][1:])))
    assert field == "timestamps[0]"
    field, msg = _fields(post({k: v for k, v in ok.items() if k != "values"}))
    assert field == "values" and "required" in msg
    field, msg = _fields(post(dict(ok, values=[["fast"] * 10] * 12)))
    assert field.startswith("values[0][0]")
    raw = json.dumps(ok)
    i = raw.index('"values": [[') + len('"values": [[')
    for literal in ("NaN", "Infinity"):
        r = client.post("/forecast", content=raw[:i] + literal + ", " + raw[i:].split(",", 1)[1],
                        headers={"content-type": "application/json"})
        field, msg = _fields(r)
        assert field == "values" and literal in msg and "null" in msg
    field, msg = _fields(client.post("/forecast", content=b"{not json", headers={"content-type": "application/json"}))
    assert field == "body" and "not JSON" in msg
    field, msg = _fields(client.post("/forecast", content=b"x" * 200_001,
                                     headers={"content-type": "application/json"}), 413)
    assert field == "body" and "200000" in msg
    chunks = (b"[" + b"0," * 50_000 for _ in range(3))  # no Content-Length: cut off while it streams
    field, msg = _fields(client.post("/forecast", content=chunks, headers={"content-type": "application/json"}), 413)
    assert field == "body" and "over 200000 bytes" in msg
    field, msg = _fields(client.post("/forecast", content=b"<a/>", headers={"content-type": "application/xml"}), 415)
    assert field == "body"
    csv_body = "timestamp,nope\n2012-03-01 00:00:00,1\n".encode()
    field, msg = _fields(client.post("/forecast", content=csv_body, headers={"content-type": "text/csv"}))
    assert field in ("sensors", "timestamps") and ("nope" in msg or "12" in msg)


def test_all_missing_window_refused(stgt_run, client, window_body):
    ok = window_body(stgt_run)
    field, msg = _fields(client.post("/forecast", json=dict(ok, values=[[None] * 10] * 12)))
    assert field == "values" and "reading" in msg


def test_sensors_model_health(stgt_run, client):
    s = client.get("/sensors").json()
    assert [r["id"] for r in s["sensors"]] == list(stgt_run.series.sensor_ids)
    ei = stgt_run.graph.edge_index.numpy()
    ei = ei[:, ei[0] != ei[1]]
    assert sorted(map(tuple, s["edges"])) == sorted(zip(ei[0].tolist(), ei[1].tolist()))
    assert [r["in_degree"] for r in s["sensors"]] == np.bincount(ei[1], minlength=10).tolist()
    assert all(r["lat"] is not None and 30 < r["lat"] < 40 for r in s["sensors"])  # graph_sensor_locations.csv
    m = client.get("/model").json()
    ev = stgt_run.evaluate("test", horizons=list(range(1, 13)))
    assert m["model"] == "stgt" and m["probabilistic"] and m["horizon"] == 12 and m["interval"] == "5min"
    assert m["test_mae"] == {h: ev["horizons"][h]["mae"] for h in ev["horizons"]}
    assert m["fingerprint"]["data"] and m["trained_at"]
    assert client.get("/health").json() == {"status": "ok", "model": "stgt", "sensors": 10}
    assert "/forecast" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs").text                         # Swagger UI from this machine's files, not a CDN
    assert "/static/docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200


def test_latest_rereads_the_file_when_it_changes(stgt_run, tmp_path):
    from stgraph.forecast import forecast_at
    from stgraph.io.hdf5_write import write_series
    from stgraph.io.series import Series

    s = stgt_run.series
    feed = tmp_path / "feed.h5"

    def write(upto):
        write_series(Series(s.values[:upto], s.timestamps[:upto], s.sensor_ids, s.channels, s.null_value), feed)

    write(300)
    with TestClient(create_app(stgt_run, data=feed)) as c:
        a = c.get("/forecast/latest").json()
        engine = c.app.state.engine
        first = engine._latest
        assert c.get("/forecast/latest").json() == a and engine._latest is first  # cached per file version
        assert a["issued_at"] == str(np.datetime_as_string(s.timestamps[299], unit="s"))
        assert np.array_equal(np.asarray(a["forecast"], np.float32), forecast_at(stgt_run, a["issued_at"]).mean)
        assert len(a["history"]) == 12 and a["truth"][0][0][0] is None  # the feed has no reading after it yet
        write(320)
        b = c.get("/forecast/latest").json()
        assert b["issued_at"] == str(np.datetime_as_string(s.timestamps[319], unit="s"))
        bad = c.get("/forecast/latest", params={"at": "2031-01-01T00:00:00"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "at"
        older = c.get("/forecast/latest", params={"at": a["issued_at"]}).json()
        assert older["forecast"] == a["forecast"]
        v = s.values[300, 0, 0]
        assert older["truth"][0][0][0] == (None if v == 0 else pytest.approx(float(v)))


def test_data_file_checked_at_start(stgt_run, tmp_path):
    from stgraph.errors import RequestError

    with pytest.raises(RequestError, match="cannot be read") as e:
        create_app(stgt_run, data=tmp_path / "none.h5")
    assert e.value.field == "data"


def test_token_required_off_loopback(stgt_run, window_body):
    with TestClient(create_app(stgt_run, token="t" * 32)) as c:
        field, msg = _fields(c.post("/forecast", json=window_body(stgt_run)), 401)
        assert field == "Authorization" and "Bearer" in msg
        assert c.get("/sensors", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/sensors", headers={"Authorization": "Bearer " + "t" * 32}).status_code == 200
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200


def test_tiles_setting(stgt_run):
    from stgraph.errors import ConfigError

    with pytest.raises(ConfigError, match=r"holding \{z\}, \{x\} and \{y\}"):
        create_app(stgt_run, tiles="https://tiles.example.org/tile.png")
    with pytest.raises(ConfigError, match="https://"):
        create_app(stgt_run, tiles="file:///etc/{z}/{x}/{y}")
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    with TestClient(create_app(stgt_run, tiles=url)) as c:
        assert c.get("/sensors").json()["tiles"] == url


def test_answer_json_without_orjson(stgt_run, monkeypatch):
    """The answer reads back to the same float32 numbers whether orjson (the serve extra) or json writes it."""
    import sys

    from stgraph.serve.engine import Engine, dumps

    answer = Engine(stgt_run).latest()
    fast = json.loads(dumps(answer))
    monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson -> ImportError
    slow = json.loads(dumps(answer))
    assert fast.keys() == slow.keys()
    for key in ("forecast", "q05", "q95", "std"):
        assert np.array_equal(np.asarray(fast[key], np.float32), np.asarray(slow[key], np.float32))
        assert np.array_equal(np.asarray(slow[key], np.float32), answer[key])
    assert fast["history"] == slow["history"] and fast["steps"] == slow["steps"]
