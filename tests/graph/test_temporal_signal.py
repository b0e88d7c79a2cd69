"""PyTorch Geometric Temporal interop: to and from the DynamicGraphTemporalSignal layout, by round trip."""
import numpy as np
import pytest
import torch

from stgraph.errors import SeriesError
from stgraph.graph.dynamic import read_dynamic_graph
from stgraph.graph.temporal_signal import from_temporal_signal, to_temporal_signal
from stgraph.io.series import Series


class Signal:  # the attributes of torch_geometric_temporal's DynamicGraphTemporalSignal
    def __init__(self, edge_indices, edge_weights, features, targets):
        self.edge_indices, self.edge_weights, self.features, self.targets = edge_indices, edge_weights, features, targets


@pytest.fixture
def pair(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("timestamp,source,target,weight\n2020-01-01,a,b,0.5\n2020-01-03,b,c,1\n2020-01-03,c,a,0.25\n")
    ts = np.datetime64("2020-01-01", "ns") + np.arange(5) * np.timedelta64(1, "D")
    s = Series(np.arange(15, dtype=np.float32).reshape(5, 3, 1), ts, ["a", "b", "c"], ["cases"], float("nan"))
    return s, read_dynamic_graph(p, s.sensor_ids).aligned(ts)


def test_layout_by_hand(pair):
    s, g = pair
    out = to_temporal_signal(s, g)
    assert [len(v) for v in out.values()] == [4, 4, 4, 4]  # T - 1 snapshots
    assert out["edge_indices"][1].tolist() == [[0], [1]] and out["edge_indices"][2].tolist() == [[1, 2], [2, 0]]
    assert out["features"][2].shape == (3, 1) and out["features"][2][:, 0].tolist() == [6, 7, 8]
    assert out["targets"][2].tolist() == [9, 10, 11]  # the next step


def test_round_trip(pair):
    s, g = pair
    out = to_temporal_signal(s, g)
    s2, g2 = from_temporal_signal(Signal(**out), start="2020-01-01", freq="1D", sensor_ids=s.sensor_ids,
                                  channels=s.channels)
    assert np.array_equal(s2.values, s.values) and np.array_equal(s2.timestamps, s.timestamps)
    assert g2.num_periods == 2  # four snapshots, two distinct graphs: stored once each
    for t in range(s.num_steps - 1):
        for a, b in zip(g2.edges_at(t), g.edges_at(t)):
            assert torch.equal(a, b)
    again = to_temporal_signal(s2, g2)
    for k in out:
        assert all(np.array_equal(a, b) for a, b in zip(again[k], out[k]))


def test_lists_of_different_lengths_are_refused():
    with pytest.raises(SeriesError, match="lengths \\[2, 2, 2, 1\\]"):
        from_temporal_signal(edge_indices=[np.zeros((2, 0))] * 2, edge_weights=[None] * 2,
                             features=[np.zeros((3, 1))] * 2, targets=[np.zeros(3)])
