"""Dynamic graphs: reading a timestamp,source,target,weight table, as-of alignment, compact storage,
per-window gathers, the mean graph, info, round trip and errors naming the file and line."""
import numpy as np
import pytest
import torch

from stgraph.errors import DataFormatError, GraphError, SeriesError
from stgraph.graph.dynamic import is_dynamic_table, read_dynamic_graph, write_dynamic_graph

TABLE = """timestamp,source,target,weight
2020-01-01,a,b,0.5
2020-01-01,b,c,1.0
2020-01-03,a,c,0.25
2020-01-03,a,b,0.75
"""


def days(first, last):
    return np.arange(first, last, dtype="datetime64[D]").astype("datetime64[ns]")


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "mobility.csv"
    p.write_text(TABLE)
    return p


def test_periods_stored_once_and_aligned_as_of(table):
    g = read_dynamic_graph(table, ["a", "b", "c"])
    assert is_dynamic_table(table) and g.num_periods == 2 and g.ptr.tolist() == [0, 2, 4]
    assert g.edge_index.shape == (2, 4)  # one edge list per period, not one per step
    a = g.aligned(days("2019-12-31", "2020-01-06"))  # 12-31 (before the first period) .. 01-05
    assert a.step_period.tolist() == [-1, 0, 0, 1, 1, 1]  # a period holds until the next one starts
    ei, w = a.edges_at(2)  # 2020-01-02 takes the graph of 01-01
    assert ei.tolist() == [[0, 1], [1, 2]] and w.tolist() == [0.5, 1.0]
    assert a.edges_at(0)[0].shape == (2, 0)
    hourly = g.aligned(np.arange("2020-01-02T22", "2020-01-03T02", dtype="datetime64[h]").astype("datetime64[ns]"))
    assert hourly.step_period.tolist() == [0, 0, 1, 1]
    with pytest.raises(SeriesError, match="mobility.csv"):
        g.aligned(days("2019-01-01", "2019-01-05"))


def test_window_graphs_are_a_disjoint_union(table):
    a = read_dynamic_graph(table, ["a", "b", "c"]).aligned(days("2019-12-31", "2020-01-05"))
    wg = a.window_graphs(torch.tensor([3, 0, 1]))  # periods 1, none, 0
    assert wg.num_windows == 3 and wg.num_nodes == 3
    assert wg.edge_index.tolist() == [[0, 0, 6, 7], [1, 2, 7, 8]]  # window 2's nodes start at 2 * 3
    assert wg.edge_weight.tolist() == [0.75, 0.25, 0.5, 1.0]
    assert wg.window(2)[0].tolist() == [[0, 1], [1, 2]]
    ei, w, m = wg.node_major()  # n * B + b
    assert m == 9 and ei[:, 2].tolist() == [0 * 3 + 2, 1 * 3 + 2]


def test_mean_graph_and_info_by_hand(table):
    a = read_dynamic_graph(table, ["a", "b", "c"]).aligned(days("2019-12-31", "2020-01-05"))
    ei, w = a.mean_graph()  # 5 steps: none, p0, p0, p1, p1
    got = {(int(s), int(d)): round(float(x), 6) for s, d, x in zip(ei[0], ei[1], w)}
    assert got == {(0, 1): round((0.5 * 2 + 0.75 * 2) / 5, 6), (1, 2): 0.4, (0, 2): 0.1}
    info = a.info()
    assert info["periods"] == 2 and info["edges_per_period"] == {"min": 2, "mean": 2.0, "max": 2}
    assert info["churn"] == 0.5  # a->c is new in period 1, a->b is not
    assert info["steps_without_graph"] == 1 and info["distinct_pairs"] == 3


def test_round_trip(table, tmp_path):
    g = read_dynamic_graph(table, ["a", "b", "c"])
    back = read_dynamic_graph(write_dynamic_graph(tmp_path / "out.csv", g), ["a", "b", "c"], weights="similarity")
    assert np.array_equal(back.times, g.times) and torch.equal(back.ptr, g.ptr)
    assert torch.equal(back.edge_index, g.edge_index) and torch.allclose(back.edge_weight, g.edge_weight)


def test_flows_above_one_follow_the_declared_meaning(tmp_path):
    p = tmp_path / "flows.csv"
    p.write_text("date,source,target,weight\n2020-01-01,a,b,10\n2020-01-02,a,b,40\n")
    g = read_dynamic_graph(p, ["a", "b"], weights="similarity")
    assert g.edge_weight.tolist() == [0.25, 1.0]  # one scale over all periods: comparable over time


def test_a_flow_column_is_read_only_when_declared(tmp_path):
    p = tmp_path / "mobility.csv"  # the table: date,source,target,flow
    p.write_text("date,source,target,flow\n2020-01-01,a,b,9\n2020-01-01,b,a,99\n2020-01-02,a,b,999\n")
    with pytest.raises(DataFormatError, match="flow"):
        read_dynamic_graph(p, ["a", "b"])
    g = read_dynamic_graph(p, ["a", "b"], weight_column="flow", weights="flow")
    assert g.num_periods == 2 and g.ptr.tolist() == [0, 2, 3]
    assert np.allclose(g.edge_weight.numpy(), np.log1p([9, 99, 999]) / np.log1p(999))  # log1p, one scale


@pytest.mark.parametrize("text, error, match", [
    ("timestamp,source,target,weight\n2020-01-01,a,b,1\n2020-01-01,a,b,0.5\n", GraphError,
     "'a' -> 'b' at time '2020-01-01' is listed 2 times"),
    ("timestamp,source,target,weight\n2020-01-01,a,b,1\n2020-01-01,a,x,1\n", GraphError,
     "edge 2 \\(a -> x at 2020-01-01\\), target 'x' is not a sensor"),
    ("timestamp,source,target,weight\nsoon,a,b,1\n", DataFormatError, "row 1, column 'timestamp': 'soon'"),
    ("source,target,weight\na,b,1\n", DataFormatError, "needs a time column"),
])
def test_errors_name_the_file_and_row(tmp_path, text, error, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(error, match=match) as e:
        read_dynamic_graph(p, ["a", "b", "c"])
    assert "bad.csv" in str(e.value)
