"""Batches of data with a dynamic graph carry each window's graph (that of its last input step) as a disjoint
union; data without one keeps batch.graph None and the same numbers."""
import numpy as np
import torch

from stgraph.data import ForecastData
from stgraph.graph.dynamic import read_dynamic_graph
from stgraph.io.series import Series

T, N = 40, 3


def series():
    ts = np.datetime64("2020-01-01", "ns") + np.arange(T) * np.timedelta64(1, "D")
    v = np.random.default_rng(0).random((T, N, 1)).astype(np.float32) + 1
    return Series(v, ts, ["a", "b", "c"], ["cases"], float("nan"))


def test_each_window_gets_the_graph_of_its_last_input_step(tmp_path):
    p = tmp_path / "g.csv"  # a -> b until 01-10, b -> c from 01-10 on
    p.write_text("timestamp,source,target,weight\n2020-01-01,a,b,1\n2020-01-10,b,c,0.5\n")
    s = series()
    dyn = read_dynamic_graph(p, s.sensor_ids).aligned(s.timestamps)
    data = ForecastData.from_series(s, input_len=4, horizon=2, split=(0.6, 0.2, 0.2), dynamic_graph=dyn)
    static = ForecastData.from_series(s, input_len=4, horizon=2, split=(0.6, 0.2, 0.2))
    starts = torch.tensor([5, 6, 0])  # last input steps 8 (01-09), 9 (01-10), 3
    b = data.batch(starts)
    assert b.graph.num_windows == 3 and b.graph.num_nodes == N
    assert b.graph.edge_index.tolist() == [[0, 3 + 1, 6 + 0], [1, 3 + 2, 6 + 1]]
    assert b.graph.edge_weight.tolist() == [1.0, 0.5, 1.0]
    sb = static.batch(starts)
    assert sb.graph is None and torch.equal(sb.x, b.x) and torch.equal(sb.y, b.y)  # the rest is unchanged
    moved = b.to("cpu")
    assert torch.equal(moved.graph.edge_index, b.graph.edge_index)
    loaded = next(iter(data.loader("train", 8, shuffle=False, workers=1)))  # through a worker process
    assert loaded.graph.num_windows == 8
