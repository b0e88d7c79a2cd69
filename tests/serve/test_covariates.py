"""A run trained with a covariate file (rain): GET /forecast/latest forecasts from the run's own series with its
covariates, equal to forecast_at; a POST cannot carry covariates yet and says so naming the field."""
import numpy as np
from fastapi.testclient import TestClient

import stgraph
from stgraph.serve import create_app


def test_covariate_run(served, window_body, tmp_path):
    from stgraph.forecast import forecast_at

    syn = served["synth"]
    ts = stgraph.open_run(served["stid"]).series.timestamps
    rain = tmp_path / "rain.csv"
    hours = np.arange(ts[0], ts[-1] + np.timedelta64(1, "h"), np.timedelta64(1, "h"))
    rain.write_text("timestamp,rain\n" + "".join(f"{str(t)[:16].replace('T', ' ')},{i % 4 * 0.5}\n"
                                                 for i, t in enumerate(hours)))
    run = stgraph.train(data=syn["data"], graph=syn["adj"], model="stgt", covariates=[str(rain)], epochs=1,
                        out=tmp_path / "rainy", progress=False,
                        overrides={"model.params.hidden": 16, "train.max_batches": 2, "train.patience": 0})
    with TestClient(create_app(run)) as c:
        a = c.get("/forecast/latest").json()
        assert np.array_equal(np.asarray(a["forecast"], np.float32), forecast_at(run).mean)
        r = c.post("/forecast", json=window_body(run))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "covariates"
        assert "GET /forecast/latest" in r.json()["detail"][0]["msg"]
