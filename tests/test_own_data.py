"""Issue 11: your own data, right by default -- null convention, time units, evaluate steps, edge-weight
meaning, projected coordinates, graph build --sensors, plots, small items, seasonal residual for stgt."""
import json
import math

import h5py
import networkx as nx
import numpy as np
import pytest
import torch

from stgraph.cli.main import main
from stgraph.errors import ConfigError, DataFormatError, GraphError, StgraphWarning
from stgraph.io import Series, read_series, write_series
from stgraph.io.series import duration_text, horizon_text, null_convention, parse_null_value


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def counts_csv(path, hours=48, n=3, seed=0):
    """Hourly counts with real zeros (every night hour) and one empty cell."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    rate = np.where((t % 24 >= 6) & (t % 24 < 22), 4.0, 0.0)
    v = rng.poisson(rate[:, None] * np.ones(n)).astype(float)
    stamps = np.datetime64("2020-01-06T00:00") + t * np.timedelta64(1, "h")
    lines = ["timestamp," + ",".join(f"s{i}" for i in range(n))]
    for k in range(hours):
        cells = [str(int(x)) for x in v[k]]
        if k == 10:
            cells[0] = ""  # the one missing reading
        lines.append(f"{stamps[k]}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return v


# ============================================================ 1. null convention
def test_item1_csv_zeros_are_readings_by_default(tmp_path):
    p = tmp_path / "counts.csv"
    v = counts_csv(p)
    s = read_series(p)
    assert math.isnan(s.null_value) and "CSV" in s.null_origin
    assert s.missing_mask().sum() == 1  # only the empty cell, not the zeros
    zeros = float((v == 0).mean())
    info = s.summary()
    assert info["missing_ratio"] == pytest.approx(1 / v.size, abs=1e-6)
    assert info["zero_ratio"] == pytest.approx((v == 0).sum() / v.size - (v[10, 0] == 0) / v.size, abs=1e-6)
    assert f"{100 * info['zero_ratio']:.1f}% of the readings are 0" in info["null_convention"]
    assert "zeros are readings" in info["null_convention"] and "--null-value 0" in info["null_convention"]
    assert zeros > 0.3
    s0 = read_series(p, null_value="0")
    assert s0.null_value == 0.0 and s0.missing_mask().sum() == (s0.values == 0).sum() + 0
    assert "dropped from the loss and the metrics" in null_convention(s0.zero_ratio, 0.0, "as given")


def test_item1_format_defaults(tmp_path, metr_week_dir):
    s = Series(np.array([[0.0, 1.0], [2.0, 0.0]]), np.array(["2020-01-01T00:00", "2020-01-01T01:00"],
               dtype="datetime64[ns]"), ["a", "b"], null_value=0.0)
    write_series(s, tmp_path / "frame.h5", layout="pandas")
    with h5py.File(tmp_path / "frame.h5", "a") as f:  # a METR-LA-like frame: no stgraph attribute
        del f["df"].attrs["stgraph_null_value"]
    frame = read_series(tmp_path / "frame.h5")
    assert frame.null_value == 0.0 and "METR-LA" in frame.null_origin
    write_series(s, tmp_path / "plain.h5")
    with h5py.File(tmp_path / "plain.h5", "a") as f:
        del f.attrs["null_value"]
    plain = read_series(tmp_path / "plain.h5")
    assert math.isnan(plain.null_value) and plain.missing_mask().sum() == 0
    np.savez(tmp_path / "x.npz", data=np.zeros((4, 2, 1)))
    assert math.isnan(read_series(tmp_path / "x.npz", start="2020-01-01", freq="1h").null_value)
    metr = read_series(metr_week_dir / "metr-la-week.h5")
    assert metr.null_value == 0.0  # the documented METR-LA convention is kept


@pytest.mark.parametrize("text, expected", [("nan", "nan"), ("none", "nan"), (".nan", "nan"), ("NaN", "nan"),
                                            ("0", 0.0), ("-1", -1.0), ("9999", 9999.0), ("auto", None)])
def test_item1_one_spelling_everywhere(text, expected, tmp_path, capsys):
    got = parse_null_value(text)
    assert (math.isnan(got) if expected == "nan" else got == expected)
    from stgraph.config import RunConfig, apply_override
    cfg = apply_override(RunConfig(), f"data.null_value={text}")
    assert (math.isnan(cfg.data.null_value) if expected == "nan" else cfg.data.null_value == expected)
    p = tmp_path / "c.csv"
    counts_csv(p)
    rc, out, err = run(capsys, "data", "info", p, f"--null-value={text}", "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert ("zeros are readings" in info["null_convention"]) == (expected in ("nan", None))


def test_item1_bad_null_value_is_one_line(tmp_path, capsys):
    p = tmp_path / "c.csv"
    counts_csv(p)
    with pytest.raises(SystemExit) as e:
        main(["data", "info", str(p), "--null-value", "zero"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "--null-value = 'zero': expected nan (or none" in err
    with pytest.raises(ConfigError, match=r"data.null_value = 'zero': expected nan"):
        from stgraph.config import RunConfig, apply_override
        apply_override(RunConfig(), "data.null_value=zero")
    for cmd in (["train", "--help"], ["bench", "--help"], ["data", "info", "--help"]):
        with pytest.raises(SystemExit):
            main(cmd)
        assert "--null-value {nan,none,0,NUMBER}" in capsys.readouterr().out


def test_item1_metrics_count_zeros_when_nan_is_null():
    from stgraph.metrics import MetricAccumulator, valid_mask
    y = torch.tensor([[[0.0], [2.0]], [[float("nan")], [4.0]]])[None]  # [1, 2 steps, 2 sensors, 1]
    p = torch.tensor([[[1.0], [2.0]], [[5.0], [1.0]]])[None]
    acc = MetricAccumulator(2, float("nan"))
    acc.update(p, y)
    r = acc.compute([1, 2])
    assert r["horizons"]["1"]["mae"] == pytest.approx(0.5)  # |1-0| and |2-2|: the zero counts
    assert r["horizons"]["2"]["mae"] == pytest.approx(3.0)  # NaN skipped
    assert valid_mask(y, 0.0).sum() == 2 and valid_mask(y, float("nan")).sum() == 3


# ============================================================ 2. time units
def test_item2_horizons_in_the_data_unit():
    assert horizon_text(3, 5) == "15 min" and horizon_text(12, 5) == "60 min"
    assert horizon_text(3, 60) == "3 h" and horizon_text(12, 60) == "12 h"
    assert horizon_text(1, 10080) == "1 week" and horizon_text(4, 10080) == "4 weeks"
    assert horizon_text(2, 1440) == "2 days" and horizon_text(3, None) == "step 3"
    assert duration_text(90) == "90 s"
    from stgraph.cli.runs import format_table

    class Hourly:
        interval_minutes = 60.0
    res = {"horizons": {"3": {"mae": 1.0, "rmse": 2.0, "mape": 3.0}}, "average": {"mae": 1.0, "rmse": 2.0, "mape": 3.0}}
    table = format_table(res, Hourly())
    assert "3 (3 h)" in table and "min" not in table


def test_item2_bench_columns_and_axis_in_the_data_unit(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from stgraph.bench import markdown, plot_horizons
    res = {"horizons": {str(h): {"mae": float(h), "rmse": float(h), "mape": 1.0} for h in range(1, 13)},
           "average": {"mae": 6.5, "rmse": 6.5, "mape": 1.0}}
    rows = [{"model": "ha", "seed": 0, "result": res, "parameters": 10, "seeds": 1}]
    md = markdown([{"model": "ha", "parameters": 10, "seeds": 1, "h3_mae": 3.0}], step_minutes=60, steps=[3, 12])
    assert "MAE 3 h" in md and "MAE 12 h" in md and "min" not in md  # (default: only the steps held, issue 26)
    shown = []
    monkeypatch.setattr(plt, "close", lambda fig=None: shown.append(fig))
    plot_horizons(rows, tmp_path / "h.png", step_minutes=10080)
    ax = shown[0].axes[0]
    assert ax.get_xlabel() == "horizon (weeks)" and list(ax.lines[0].get_xdata()) == list(range(1, 13))


# ============================================================ 3. evaluate steps, MAPE
def test_item3_default_steps_and_mape_note():
    from stgraph.metrics import MetricAccumulator, default_steps, parse_steps
    assert default_steps(12, 5) == [3, 6, 12]
    assert default_steps(4, 10080) == [1, 2, 3, 4] and default_steps(12, 60) == [1, 3, 6, 12]  # issue 26: first,
    assert default_steps(24, 60) == [1, 3, 6, 12, 24] and default_steps(14, 1440) == [1, 3, 6, 7, 12, 14]  # middle, last
    assert parse_steps("1, 2,4", 4) == [1, 2, 4]
    with pytest.raises(ConfigError, match=r"horizons \[5\] exceed the 4 predicted steps"):
        parse_steps("1,5", 4)
    with pytest.raises(ConfigError, match=r"steps='a': expected comma-separated step numbers"):
        parse_steps("a", 4)
    z = torch.tensor([-1.0, 0.5, 2.0, -0.3]).reshape(1, 1, 4, 1)
    acc = MetricAccumulator(1, float("nan"))
    acc.update(z + 0.1, z)
    assert "50.0% of the true values are negative" in acc.compute()["mape_note"]
    c = torch.tensor([0.0, 0.0, 3.0, 1.0]).reshape(1, 1, 4, 1)
    acc = MetricAccumulator(1, float("nan"))
    acc.update(c + 1, c)
    assert "50.0% of the true values are 0" in acc.compute()["mape_note"]
    acc = MetricAccumulator(1, 0.0)  # METR-LA: zeros are nulls, MAPE stays
    acc.update(c + 1, c)
    assert "mape_note" not in acc.compute()


def test_item3_bench_table_leaves_mape_out_for_counts_with_zeros():
    """The bench table prints no MAPE column where MAPE is undefined (counts with zeros), and says why."""
    from stgraph.bench import aggregate, markdown
    from stgraph.metrics import MetricAccumulator
    c = torch.tensor([0.0, 0.0, 3.0, 1.0]).reshape(1, 1, 4, 1).expand(1, 12, 4, 1)
    acc = MetricAccumulator(12, float("nan"))
    acc.update(c + 1, c)
    counts = acc.compute()
    acc = MetricAccumulator(12, 0.0)  # zeros as nulls (METR-LA): MAPE is meaningful and stays
    acc.update(c + 1, c)
    speeds = acc.compute()
    rows = [{"model": m, "seed": 0, "parameters": 1, "result": r} for m, r in (("ha", counts), ("last", counts))]
    agg = aggregate(rows)
    assert agg[0]["mape_note"].startswith("MAPE left out: 50.0% of the true values are 0")
    md = markdown(agg, step_minutes=60)
    header = md.splitlines()[0]
    assert "MAPE" not in header and "MAE 3 h" in header and "RMSE avg" in header
    assert md.splitlines()[2].count("|") == header.count("|")  # rows match the header
    assert md.rstrip().endswith("read MAE / RMSE.") and "are 0, where a percentage error is undefined" in md
    kept = markdown(aggregate([{"model": "ha", "seed": 0, "parameters": 1, "result": speeds}]), step_minutes=5)
    assert "MAPE % 15 min" in kept.splitlines()[0] and "left out" not in kept


def test_items3_8_evaluate_steps_notice_predict_params(tmp_path, capsys):
    p = tmp_path / "counts.csv"
    counts_csv(p, hours=24 * 21, n=4)
    rc, out, err = run(capsys, "train", "--data", p, "--model", "var", "--out", tmp_path / "var",
                       "--set", "data.input_len=6", "--set", "data.horizon=4", "--no-progress")
    assert rc == 0, err
    assert "zeros are readings" in out  # train says which convention is in force
    info = json.loads((tmp_path / "var" / "run.json").read_text())
    F, H = 6 * 4 * 1, 4 * 4 * 1  # T_in * N * C_in, T_out * N * C_out (full VAR)
    assert info["parameters"] == F * H + H  # VAR's coefficients, no longer 0
    rc, out, _ = run(capsys, "evaluate", tmp_path / "var")
    assert rc == 0
    for h in (1, 2, 3, 4):
        assert f"{h} ({h} h)" in out  # every step of a short horizon, in hours
    assert "MAPE left out" in out and "MAPE " not in out.splitlines()[1]
    assert "null convention: missing = empty cells / NaN" in out
    rc, out, _ = run(capsys, "evaluate", tmp_path / "var", "--steps", "1,4", "--json")
    assert set(json.loads(out)["horizons"]) == {"1", "4"}
    rc, out, _ = run(capsys, "predict", tmp_path / "var", "--out", tmp_path / "fc.h5")
    assert rc == 0 and ".000000000" not in out and "2020-01-26T23:00:00 to" in out
    with h5py.File(tmp_path / "fc.h5") as f:
        assert f.attrs["issued_at"] == "2020-01-26T23:00:00"


def test_item8_early_stopping_announced_and_unfinished_run_noticed(tmp_path, capsys):
    p = tmp_path / "counts.csv"
    counts_csv(p, hours=24 * 14, n=3)
    rc, out, err = run(capsys, "train", "--data", p, "--model", "stgt", "--out", tmp_path / "s", "--epochs", "5",
                       "--lr", "1e-12", "--no-progress", "--set", "train.patience=1", "--set", "train.max_batches=1",
                       "--set", "model.params.hidden=8", "--set", "data.input_len=4", "--set", "data.horizon=2",
                       "--batch-size", "8")
    assert rc == 0, err
    assert "early stopping: validation MAE did not improve for train.patience = 1 epochs, so training stopped " \
           "after epoch 2 of 5" in out
    rc, out, _ = run(capsys, "evaluate", tmp_path / "s")
    assert "note: early stopping ended the run at epoch 2 of 5" in out
    ck_path = tmp_path / "s" / "checkpoints" / "last.pt"
    ck = torch.load(ck_path, weights_only=True)
    ck["trainer"]["finished"], ck["trainer"]["epoch"] = False, 1
    torch.save(ck, ck_path)
    rc, out, _ = run(capsys, "evaluate", tmp_path / "s")
    assert rc == 0 and f"note: the run in '{tmp_path / 's'}' did not finish: 1 of 5 epoch(s) done" in out
    assert f"Continue it with --resume (train into '{tmp_path / 's'}' again)" in out


# ============================================================ 4. edge-weight meaning
def test_item4_weights_get_a_meaning():
    from stgraph.graph import edge_similarity
    d = np.array([100.0, 200.0, 300.0])
    sigma = d.std()
    w, done = edge_similarity(d, "distance")
    np.testing.assert_allclose(w, np.exp(-(d / sigma) ** 2))
    assert "distances 100 .. 300 (declared)" in done and f"sigma = {sigma:.4g}" in done
    same, done = edge_similarity(np.array([0.2, 1.0]))
    np.testing.assert_array_equal(same, [0.2, 1.0])
    assert "used as is" in done
    with pytest.warns(StgraphWarning, match=r"undeclared weights above 1 \(24 .. 1991\) read as distances"):
        w, _ = edge_similarity(np.array([24.0, 1991.0]))
    assert w[0] > w[1] and w.max() <= 1  # near = similar
    with pytest.warns(StgraphWarning, match=r"similarities 2 .. 4 divided by the largest, 4"):
        w, _ = edge_similarity(np.array([2.0, 4.0]), "similarity")
    np.testing.assert_array_equal(w, [0.5, 1.0])
    with pytest.raises(GraphError, match=r"weight_meaning is 'metres'; expected one of"):
        edge_similarity(np.array([1.0]), "metres")


def test_item4_metre_weights_no_longer_starve_self_loops(tmp_path, capsys):
    from stgraph.graph import read_graph, to_pyg
    g = nx.DiGraph()
    for a, b, d in [("a", "b", 24.0), ("b", "c", 1991.0), ("c", "a", 700.0), ("b", "a", 24.0)]:
        g.add_edge(a, b, weight=d)
    nx.write_graphml(g, tmp_path / "g.graphml")
    with pytest.warns(StgraphWarning, match="read as distances"):
        data = to_pyg(read_graph(tmp_path / "g.graphml"), ["a", "b", "c"])
    assert float(data.edge_weight.max()) <= 1.0 and float(data.edge_weight.min()) >= 0.0
    rc, out, _ = run(capsys, "graph", "info", tmp_path / "g.graphml", "--json")
    info = json.loads(out)
    assert info["weights"] == "24 .. 1991" and info["weight_meaning"].startswith("undeclared weights above 1")
    rc, out, _ = run(capsys, "graph", "build", "--graph", tmp_path / "g.graphml", "--weights", "distance",
                     "--out", tmp_path / "g.json")
    assert rc == 0 and "distances 24 .. 1991 (declared)" in out
    assert read_graph(tmp_path / "g.json").graph["weight_meaning"] == "distance"


def test_item4_self_loops_keep_attention_with_metre_weights():
    """Raw metres as the attention bias starve every self loop (the reported failure); the same graph
    through edge_similarity leaves each sensor a real share of attention to itself."""
    from torch_geometric.data import Data

    from stgraph.graph import edge_similarity
    from stgraph.models.stgt import STGT
    torch.manual_seed(0)
    n, rng = 30, np.random.default_rng(0)
    pairs = [(int(j), i) for i in range(n) for j in rng.choice(n, 3, replace=False) if j != i]
    d = rng.uniform(24, 1991, len(pairs))
    model = STGT(n, 1, 1, 12, 12, hidden=16).eval()
    x = torch.randn(2, 12, n, 1)
    cov = {"tod_in": torch.rand(2, 12), "dow_in": torch.zeros(2, 12, dtype=torch.long),
           "tod_out": torch.rand(2, 12), "dow_out": torch.zeros(2, 12, dtype=torch.long)}
    share = {}
    for name, w in (("metres", d), ("similarity", edge_similarity(d, "distance")[0])):
        g = Data(edge_index=torch.tensor(pairs).T, edge_weight=torch.tensor(w, dtype=torch.float32), num_nodes=n)
        with torch.no_grad():
            _, att = model(x, g, cov, return_attention=True)
        ei = att["spatial_edge_index"]
        share[name] = att["spatial"].mean(-1)[ei[0] == ei[1]]
    assert (share["metres"] < 1e-3).all()  # what the issue saw: no self attention at all
    assert (share["similarity"] > 0.1).all()


# ============================================================ 5. projected coordinates
UTM = "sensor_id,lat,lon\na,3768000,385000\nb,3771000,389000\nc,3768000,389000\n"


def test_item5_projected_coordinates_everywhere(tmp_path, capsys):
    from stgraph.graph import axis_labels, from_coordinates, read_graph, read_locations
    p = tmp_path / "utm.csv"
    p.write_text(UTM)
    with pytest.raises(DataFormatError, match=r"expected degrees. For projected metres .* pass --crs projected"):
        read_locations(p)
    ids, y, x = read_locations(p, "projected")
    g = from_coordinates(ids, y, x, k=1, crs="projected")
    # Euclidean km: a-c 4 km, c-b 3 km, a-b 5 km (the 3-4-5 triangle)
    assert g.graph["crs"] == "projected"
    assert g["c"]["b"]["distance"] == pytest.approx(3.0) and g["c"]["a"]["distance"] == pytest.approx(4.0)
    node_link = {"directed": True, "multigraph": False, "graph": {}, "nodes": [
        {"id": s, "lat": float(a), "lon": float(b)} for s, a, b in zip(ids, y, x)],
        "links": [{"source": "a", "target": "b", "weight": 0.5}, {"source": "b", "target": "c", "weight": 0.5}]}
    (tmp_path / "g.json").write_text(json.dumps(node_link))
    with pytest.raises(DataFormatError, match=r"'.*g.json': sensors \['a', 'b', 'c'\] have coordinates outside "
                                              r"latitude"):
        read_graph(tmp_path / "g.json")  # refused the same way as the CSV
    assert read_graph(tmp_path / "g.json", crs="projected").graph["crs"] == "projected"
    rc, out, err = run(capsys, "graph", "build", "--locations", p, "--crs", "projected", "--k", "1",
                       "--out", tmp_path / "utm.json")
    assert rc == 0, err
    assert read_graph(tmp_path / "utm.json").graph["crs"] == "projected"  # the file says what it holds
    assert axis_labels("projected") == ("easting (m)", "northing (m)")
    assert axis_labels("degrees") == ("longitude (degrees)", "latitude (degrees)")
    try:
        import pyproj  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'stgraph\[geo\]'"):
            read_locations(p, "EPSG:32611")
    else:
        _, lat, lon = read_locations(p, "EPSG:32611")
        assert 33 < lat.min() < lat.max() < 35 and -119 < lon.min() < lon.max() < -117


# ============================================================ 6. graph build --sensors
def test_item6_sensors_from_a_series_csv_with_every_builder(tmp_path, capsys):
    from stgraph.graph import read_graph
    series = tmp_path / "series.csv"
    series.write_text("timestamp,c,a\n2020-01-01 00:00,1,2\n2020-01-01 01:00,3,4\n")
    edges = tmp_path / "edges.csv"
    edges.write_text("source,target,weight\na,c,0.5\nc,a,0.5\n")
    rc, out, err = run(capsys, "graph", "build", "--edges", edges, "--sensors", series, "--out", tmp_path / "e.json")
    assert rc == 0, err
    g = read_graph(tmp_path / "e.json")
    assert sorted(g.nodes, key=lambda u: g.nodes[u]["index"]) == ["c", "a"]  # the series' order
    loc = tmp_path / "loc.csv"
    loc.write_text("sensor_id,latitude,longitude\na,34.0,-118.0\nb,34.01,-118.0\nc,34.02,-118.0\n")
    rc, out, err = run(capsys, "graph", "build", "--locations", loc, "--k", "1", "--sensors", series,
                       "--out", tmp_path / "l.json")
    assert rc == 0, err
    assert set(read_graph(tmp_path / "l.json").nodes) == {"a", "c"}  # honoured, not ignored
    ids = tmp_path / "ids.txt"
    ids.write_text("a\nc\nz\n")
    rc, out, err = run(capsys, "graph", "build", "--edges", edges, "--sensors", ids, "--out", tmp_path / "x.json")
    x = read_graph(tmp_path / "x.json")
    assert rc == 0 and list(x.nodes) == ["a", "c", "z"] and x.degree("z") == 0  # a sensor without links
    rc, out, err = run(capsys, "graph", "build", "--graph", tmp_path / "e.json", "--sensors", ids,
                       "--out", tmp_path / "x2.json")
    assert rc == 2 and "in the series but not the graph: ['z']" in err
    rc, out, err = run(capsys, "graph", "build", "--locations", loc, "--k", "1", "--sensors", ids,
                       "--out", tmp_path / "y.json")
    assert rc == 2 and "has no row for 1 sensor(s) of --sensors" in err and "['z']" in err


# ============================================================ 7. plots
def _figures(monkeypatch):
    import stgraph.plot as P
    figs = []
    monkeypatch.setattr(P, "save_figure", lambda fig, path: figs.append(fig) or path)
    return figs


def test_item7_plots_for_weekly_data(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    weeks = 80
    v = rng.normal(0, 1, (weeks, 3))  # a weekly z-scored case series
    stamps = np.datetime64("2018-01-01") + np.arange(weeks) * np.timedelta64(7, "D")
    p = tmp_path / "weekly.csv"
    p.write_text("timestamp,north,south,east\n" + "".join(
        f"{stamps[k]},{v[k, 0]:.3f},{v[k, 1]:.3f},{v[k, 2]:.3f}\n" for k in range(weeks)))
    rc, out, err = run(capsys, "train", "--data", p, "--model", "stgt", "--out", tmp_path / "w", "--epochs", "1",
                       "--no-progress", "--set", "model.params.hidden=8", "--set", "data.input_len=4",
                       "--set", "data.horizon=2", "--batch-size", "8")
    assert rc == 0, err
    figs = _figures(monkeypatch)
    from stgraph.plot import plot_run
    plot_run(tmp_path / "w", tmp_path / "f.png")
    forecast, errors, attention = figs
    assert ": 2 weeks ahead (test MAE " in forecast.axes[-1].get_title()  # not "20160 min"
    assert ": 1 week ahead (test MAE " in forecast.axes[0].get_title()  # every step of a 2-step horizon (issue 26)
    bars, tod = errors.axes[0], errors.axes[1]
    assert sorted(t.get_text() for t in bars.get_xticklabels()) == ["east", "north", "south"]  # named sensors
    assert not tod.lines and "not several times a day" in tod.texts[0].get_text()  # no 12 h dot
    for ax in attention.axes:
        if ax.images:
            ticks = list(ax.get_xticks()) + list(ax.get_yticks())
            assert all(float(t).is_integer() for t in ticks)


# ============================================================ 9. counts network, seasonal residual
def test_item9_synthetic_counts_network(tmp_path, capsys):
    rc, out, err = run(capsys, "data", "synth", "--kind", "counts", "--sensors", "20", "--days", "14",
                       "--out", tmp_path)
    assert rc == 0, err
    s = read_series(tmp_path / "counts.csv")
    v = s.values[:, :, 0]
    assert s.shape == (14 * 24, 20, 1) and format(s.interval) and math.isnan(s.null_value)
    assert (v == 0).mean() > 0.25 and (v == np.round(v)).all() and v.min() == 0  # real zeros, whole counts
    hour = (np.arange(v.shape[0]) % 24)
    day = np.arange(v.shape[0]) // 24  # 2012-03-05 is a Monday
    weekday = day % 7 < 5
    assert v[weekday & (hour == 8)].mean() > 10 * v[weekday & (hour == 3)].mean()  # daily profile
    assert v[~weekday].mean() < 0.6 * v[weekday].mean()  # weekly profile
    from stgraph.graph import read_graph
    g = read_graph(tmp_path / "graph.json")
    assert g.graph["weight_meaning"] == "distance" and min(w for *_, w in g.edges(data="weight")) > 1


def test_item9_residual_choice_and_blend_start(tmp_path, metr_week_dir):
    from stgraph.config import RunConfig, with_fields
    from stgraph.models.seasonal import choose_residual
    from stgraph.models.stgt import STGT
    from stgraph.synth import write_synthetic_counts
    from stgraph.training.prepare import closed_form_data, prepare

    paths = write_synthetic_counts(tmp_path, num_sensors=20, days=28)
    cfg = with_fields(RunConfig(), {"data.path": str(paths["data"]), "data.graph": str(paths["graph"])})
    prep = prepare(cfg)
    data = prep.data
    choice, last_mae, ha_mae, windows, split, reason = choose_residual(closed_form_data(data))
    assert choice == "blend" and ha_mae < 0.8 * last_mae and split == "val" and windows >= 30
    assert "more than 2 standard errors" in reason
    speeds = with_fields(RunConfig(), {  # the real METR-LA week: last value wins, stgt stays exactly as it was
        "data.path": str(metr_week_dir / "metr-la-week.h5"), "data.graph": str(metr_week_dir / "adj_mx.pkl")})
    choice, last_mae, ha_mae, *_ = choose_residual(closed_form_data(prepare(speeds).data))
    assert choice == "last" and last_mae == pytest.approx(3.79, abs=0.01) and ha_mae > last_mae
    # residual='last' is the model as it was: no seasonal weights, the persistence gate trains
    plain = STGT(20, 1, 1, 12, 12, steps_per_day=24, hidden=8)
    assert not any("seasonal" in k for k in plain.state_dict()) and plain.persistence_gate.requires_grad
    blend = STGT(20, 1, 1, 12, 12, steps_per_day=24, hidden=8, residual="blend")
    from stgraph.training.trainer import fit_closed_form
    fit_closed_form(blend, data)
    b = next(iter(data.loader("val", 64)))
    with torch.no_grad():
        out = blend.eval()(b.x, prep.graph, b.covariates)  # untrained: exactly the fitted blend
        last = b.x[:, -1:, :, :1]
        ha = blend.seasonal.average(None, None, b.covariates)
        want = blend.seasonal.gate_last[:, None, :] * last + blend.seasonal.gate_seasonal[:, None, :] * ha
    torch.testing.assert_close(out, want)
    assert (blend.seasonal.gate_seasonal > 0.3).all()  # the seasonal average carries the forecast
    with pytest.raises(ValueError, match="residual is 'mean'; expected 'last' or 'blend'"):
        STGT(20, 1, 1, 12, 12, residual="mean")


def test_item9_stgt_default_matches_the_best_closed_form_on_counts(tmp_path):
    """A short CPU run at default settings (width 16 to keep it short): stgt matches or beats the best of
    last / HA / VAR at every step on the synthetic counts network (within 1%)."""
    from stgraph.config import RunConfig, with_fields
    from stgraph.training.run import train
    from stgraph.synth import write_synthetic_counts

    paths = write_synthetic_counts(tmp_path, num_sensors=30, days=35)
    maes = {}
    for name in ("last", "ha", "var", "stgt"):
        cfg = with_fields(RunConfig(), {
            "data.path": str(paths["data"]), "data.graph": str(paths["graph"]), "model.name": name,
            "train.progress": False, "train.epochs": 1, "train.max_batches": 8,
            **({"model.params": {"hidden": 16}} if name == "stgt" else {})})
        tr = train(cfg, None)
        maes[name] = {int(k): v["mae"] for k, v in tr.evaluate("test", horizons=range(1, 13))["horizons"].items()}
        if name == "stgt":
            assert tr.model.residual == "blend"
    for h in range(1, 13):
        best = min(maes[m][h] for m in ("last", "ha", "var"))
        assert maes["stgt"][h] <= 1.01 * best, (h, maes)
