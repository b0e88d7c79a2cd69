"""Issue 26: edge tables read as the user meant them (stgraph.graph.edges and every reader that takes them)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from stgraph.cli.main import main
from stgraph.errors import DataFormatError, GraphError, StgraphWarning
from stgraph.graph import edge_similarity, from_edge_list, read_edge_table, read_graph, to_pyg

# three days of a mobility table: one row per region pair and day
MOBILITY = """date,source,target,flow
2020-04-01,a,b,4321
2020-04-01,b,c,10
2020-04-01,c,a,700
2020-04-02,a,b,100
2020-04-02,b,c,20
2020-04-02,c,a,800
2020-04-03,a,b,1009
2020-04-03,c,a,900
"""


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def mobility(tmp_path):
    p = tmp_path / "mobility.csv"
    p.write_text(MOBILITY)
    return p


def test_mobility_table_is_an_error_without_flags_and_right_with_them(mobility):
    with pytest.raises(DataFormatError) as e:
        from_edge_list(mobility)
    msg = str(e.value)
    assert "mobility.csv" in msg and "['date', 'flow']" in msg and "row 1: 2020-04-01,a,b,4321" in msg
    assert "--weight-column flow --weights flow --aggregate sum" in msg
    assert "With a time column (date) the file is also a graph that changes over time" in msg
    with pytest.raises(DataFormatError, match="--weight-column flow needs --weights"):
        from_edge_list(mobility, weight_column="flow", aggregate="sum")
    g = from_edge_list(mobility, weight_column="flow", weights="flow", aggregate="sum")
    assert g.number_of_edges() == 3 and g.graph["weight_meaning"] == "flow"
    assert g["a"]["b"]["weight"] == 4321 + 100 + 1009 and g["b"]["c"]["weight"] == 30
    assert g["c"]["a"]["weight"] == 2400
    assert "date: not read (rows aggregated over it by sum)" in g.graph["columns"]


def test_repeated_pair_is_an_error_and_aggregates_by_hand(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("source,target,weight\na,b,0.2\nb,a,0.5\na,b,0.6\na,b,0.1\n")
    with pytest.raises(GraphError) as e:
        from_edge_list(p)  # was: the last row (0.1) silently won
    msg = str(e.value)
    assert "'a' -> 'b' is listed 3 times" in msg and "row 1: a,b,0.2; row 3: a,b,0.6; row 4: a,b,0.1" in msg
    assert "--aggregate sum|mean|max|last" in msg and "w.csv" in msg
    expect = {"sum": 0.2 + 0.6 + 0.1, "mean": (0.2 + 0.6 + 0.1) / 3, "max": 0.6, "last": 0.1}
    for how, value in expect.items():
        g = from_edge_list(p, aggregate=how)
        assert g["a"]["b"]["weight"] == pytest.approx(value) and g["b"]["a"]["weight"] == 0.5
    assert list(from_edge_list(p, aggregate="sum").edges) == [("a", "b"), ("b", "a")]  # file order


def test_flows_rank_like_flows_not_as_distances(mobility):
    g = from_edge_list(mobility, weight_column="flow", weights="flow", aggregate="sum")
    data = to_pyg(g, ["a", "b", "c"])
    src, dst = data.edge_index.tolist()
    w = {(src[k], dst[k]): float(data.edge_weight[k]) for k in range(len(src))}
    flows = {(0, 1): 5430.0, (1, 2): 30.0, (2, 0): 2400.0}
    for pair, f in flows.items():  # log1p(flow) / log1p(largest flow), by hand
        assert w[pair] == pytest.approx(np.log1p(f) / np.log1p(5430.0), rel=1e-6)
    assert sorted(w, key=w.get) == sorted(flows, key=flows.get)  # more flow = a stronger link
    # undeclared, the same numbers would be distances (weaker link for more flow): warned, naming the fix
    with pytest.warns(StgraphWarning, match="--weights similarity"):
        sim, done = edge_similarity(np.array(list(flows.values())))
    assert "read as distances" in done and np.argmax(sim) == 1


def test_time_column_keeps_a_row_per_pair_and_time(mobility):
    t = read_edge_table(mobility, weight_column="flow", weights="flow", time_column="date")
    assert t.time.tolist()[:3] == ["2020-04-01"] * 3 and t.weight.tolist()[-1] == 900 and len(t.src) == 8
    assert t.ids == ["a", "b", "c"] and t.meaning == "flow"
    bad = mobility.parent / "twice.csv"
    bad.write_text(MOBILITY + "2020-04-03,c,a,5\n")
    with pytest.raises(GraphError, match="at time '2020-04-03' is listed 2 times"):
        read_edge_table(bad, weight_column="flow", weights="flow", time_column="date")


def test_plain_tables_read_as_before(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("a,b,0.5\nb,c,0.25\n")  # headerless source,target,weight
    g = from_edge_list(p)
    assert g["a"]["b"]["weight"] == 0.5 and "weight_meaning" not in g.graph
    p.write_text("a,b,0.5,7\n")
    with pytest.raises(DataFormatError, match="4 unnamed columns"):
        from_edge_list(p)
    d = tmp_path / "d.csv"
    d.write_text("source,target,weight,distance\na,b,0.5,120\n")
    assert from_edge_list(d)["a"]["b"] == {"weight": 0.5, "distance": 120.0}


def test_graph_build_prints_columns_and_train_reader_takes_the_flags(mobility, tmp_path, capsys):
    out = tmp_path / "g.json"
    rc, _, err = run(capsys, "graph", "build", "--edges", mobility, "--out", out)
    assert rc == 2 and "--weight-column" in err and "--aggregate" in err
    rc, text, err = run(capsys, "graph", "build", "--edges", mobility, "--weight-column", "flow", "--weights", "flow",
                        "--aggregate", "sum", "--out", out)
    assert rc == 0, err
    assert "column flow: weight, flow (sum over 3 repeated pairs)" in text and "column date: not read" in text
    assert "log1p(flow)" in text
    g = read_graph(out)  # the meaning travels with the file
    assert g.graph["weight_meaning"] == "flow" and g["a"]["b"]["weight"] == 5430
    # what train / federated / update read: the run config's data fields, re-read identically
    from stgraph.config import RunConfig, with_fields
    from stgraph.training.prepare import load_series_and_graph
    series = tmp_path / "cases.csv"
    series.write_text("timestamp,a,b,c\n" + "".join(f"2020-04-0{d},1,2,3\n" for d in range(1, 10)))
    modes = tmp_path / "modes.csv"  # a mode column (bus, rail) instead of a date: one static graph, flows summed
    modes.write_text(MOBILITY.replace("date", "mode").replace("2020-04-0", "mode"))
    rc, text, err = run(capsys, "graph", "info", modes, "--weight-column", "flow", "--weights", "flow", "--aggregate",
                        "sum")
    assert rc == 0 and "flows 30 .. 5430 (declared) turned into similarities log1p(flow)" in text, err
    cfg = with_fields(RunConfig(), {"data.path": str(series), "data.graph": str(modes)})
    with pytest.raises(DataFormatError, match="not read by default"):
        load_series_and_graph(cfg)
    cfg = with_fields(cfg, {"data.graph_weight_column": "flow", "data.graph_weights": "flow",
                            "data.graph_aggregate": "sum"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", StgraphWarning)  # declared: no guess, no warning
        _, nx_graph, pyg = load_series_and_graph(cfg)
    assert nx_graph["a"]["b"]["weight"] == 5430 and float(pyg.edge_weight.max()) == pytest.approx(1.0)
    from stgraph.config import load_run_config
    cfg.to_yaml(tmp_path / "config.yaml")
    again = load_run_config(tmp_path / "config.yaml")
    assert again.data.graph_aggregate == "sum"
    assert load_series_and_graph(again)[2].edge_weight.tolist() == pyg.edge_weight.tolist()
    with pytest.raises(DataFormatError, match=r"aggregate='median' \(--aggregate\); expected one of"):
        load_series_and_graph(with_fields(cfg, {"data.graph_aggregate": "median"}))


def test_distance_table_with_more_columns_is_refused(tmp_path):
    from stgraph.graph import from_distances
    p = tmp_path / "dist.csv"
    p.write_text("from,to,cost\na,b,100\nb,a,200\n")
    assert from_distances(p, ["a", "b"], kernel="binary")["a"]["b"]["distance"] == 100  # as before
    p.write_text("date,from,to,cost\n2020-01-01,a,b,100\n2020-01-02,a,b,300\n")
    with pytest.raises(DataFormatError, match=r"column\(s\) \['date'\] besides from, to and cost.*--weight-column cost "
                                              r"--weights distance --aggregate"):
        from_distances(p, ["a", "b"])
    g = from_edge_list(p, weight_column="cost", weights="distance", aggregate="mean")
    assert g["a"]["b"]["weight"] == 200 and g.graph["weight_meaning"] == "distance"
