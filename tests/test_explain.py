"""stgraph.explain: integrated gradients are complete (they sum to f(x) - f(baseline)) for every model kind,
attention into a sensor sums to one over its in-edges, bad requests name their field; the CLI and /explain."""
import json

import numpy as np
import pytest
import torch

import stgraph
from stgraph.errors import RequestError
from stgraph.explain import explain, integrated_gradients


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    quick = {"train.max_batches": 3, "train.patience": 0}
    out = {}
    for name, extra in (("stgt", {"probabilistic": True, "overrides": {"model.params.hidden": 16, **quick}}),
                        ("stid", {"overrides": quick}), ("last", {})):
        out[name] = stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model=name, epochs=1,
                                  out=root / name, progress=False, **extra)
    return out


@pytest.mark.parametrize("name", ["stgt", "stid", "last"])
def test_completeness(runs, name):
    run = runs[name]
    r = explain(run, run.series, sensor="700004", step=3, alphas=64)
    c = r["completeness"]
    assert c["sum"] == pytest.approx(float(np.sum(r["attribution"])))
    assert abs(c["gap"]) <= 1e-2 * abs(c["difference"]) + 2e-3, c
    assert np.asarray(r["attribution"]).shape == (12, 10)
    from stgraph.forecast import forecast_at
    assert r["forecast"] == pytest.approx(float(forecast_at(run).mean[2, 3, 0]), rel=1e-5, abs=1e-4)


def test_after_a_forecast(runs):
    """A forecast first (its graph caches built under inference mode), then an explanation: still differentiable."""
    from stgraph.forecast import forecast_at

    run = runs["stgt"]
    forecast_at(run)
    r = explain(run, run.series, sensor="700002", step=12, alphas=8)
    assert np.abs(r["attribution"]).sum() > 0
    forecast_at(run)  # and forecasts go on after it


def test_last_value_by_hand(runs):
    """The last-value model forecasts the last reading: all of f(x) - f(x0) is that one reading's."""
    run = runs["last"]
    x, cov, _ = run.data.window_at(run.series, None)
    attr, fx, f0, _ = integrated_gradients(run, x, cov, (5, 2, 0), alphas=8)
    assert fx == pytest.approx(float(run.series.values[-1, 2, 0]), rel=1e-5)
    expect = np.zeros_like(attr)
    expect[-1, 2, 0] = fx - f0
    np.testing.assert_allclose(attr, expect, atol=1e-4)


def test_attention_views(runs):
    run = runs["stgt"]
    r = explain(run, run.series, sensor="700002", step=2)
    ei = run.graph.edge_index.numpy()
    ids = list(run.series.sensor_ids)
    senders = {ids[s] for s, d in zip(*ei) if d == 1} | {"700002"}  # its in-edges and its self loop
    assert {s["sensor"] for s in r["spatial"]} == senders
    assert sum(s["weight"] for s in r["spatial"]) == pytest.approx(1.0, abs=1e-4)
    assert sum(t["weight"] for t in r["temporal"]) == pytest.approx(1.0, abs=1e-4)
    assert explain(runs["stid"], runs["stid"].series, sensor="700002", step=2)["spatial"] is None


def test_bad_requests(runs):
    run = runs["stid"]
    with pytest.raises(RequestError, match="unknown sensor 'x'") as e:
        explain(run, run.series, sensor="x", step=1)
    assert e.value.field == "sensor"
    with pytest.raises(RequestError, match="from 1 to 12") as e:
        explain(run, run.series, sensor="700001", step=13)
    assert e.value.field == "step"
    with pytest.raises(RequestError) as e:
        explain(run, run.series, sensor="700001", step=1, at="2012-03-01T00:10:00")
    assert e.value.field == "at" and "needs 12 steps" in str(e.value)


def test_cli_and_endpoint(runs, tmp_path, capsys):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from stgraph.cli.main import main
    from stgraph.serve import create_app

    run_dir = str(runs["stgt"].files.root)
    png = tmp_path / "why.png"
    assert main(["explain", run_dir, "--sensor", "700004", "--step", "3", "--plot", str(png), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["explain", run_dir, "--sensor", "700004", "--step", "3"]) == 0
    text = capsys.readouterr().out
    assert "attributions sum to" in text and "spatial attention into the sensor" in text
    with TestClient(create_app(runs["stgt"])) as c:
        r = c.get("/explain", params={"sensor": "700004", "step": 3}).json()
        assert r["attribution"] == cli["attribution"] and r["spatial"] == cli["spatial"]
        bad = c.get("/explain", params={"sensor": "nope", "step": 3})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "sensor"
        assert c.get("/explain", params={"sensor": "700004", "step": 0}).status_code == 422
    assert torch.is_grad_enabled()


def test_a_run_with_text_reports(tmp_path):
    """A run with a report file: the window's text (a dict of tensors, not a tensor) goes to the device and is
    repeated for the alpha steps by joining it (it failed on ``.to()`` of the dict); attributions stay complete."""
    from stgraph.cli.main import main
    from stgraph.forecast import forecast_at

    d = tmp_path / "d"
    assert main(["data", "synth", "--out", str(d), "--sensors", "6", "--days", "2", "--incidents", "--reports",
                 "--seed", "5"]) == 0
    run = stgraph.train(data=d / "synthetic.h5", graph=d / "adj_mx.pkl", model="stgt", out=tmp_path / "run", epochs=1,
                        covariates=[str(d / "incidents.csv"), str(d / "reports.csv")], progress=False,
                        overrides={"data.locations": str(d / "graph_sensor_locations.csv"), "model.params.hidden": 8,
                                   "train.max_batches": 3})
    x, cov, _ = run.data.window_at(run.series, None)
    assert isinstance(cov.get("text"), dict)
    sensor = str(run.data.sensor_ids[1])
    r = explain(run, run.series, sensor=sensor, step=3, alphas=16)
    c = r["completeness"]
    assert abs(c["gap"]) <= 1e-2 * abs(c["difference"]) + 2e-3, c
    assert r["forecast"] == pytest.approx(float(forecast_at(run).mean[2, 1, 0]), rel=1e-5, abs=1e-4)
