"""One graph per period in HDF5 (stgraph.graph.dynamic_h5): round trip, node order, read through --graph, errors."""
import h5py
import numpy as np
import pytest
import torch

from stgraph.errors import DataFormatError, GraphError
from stgraph.graph.dynamic import is_dynamic_table, read_dynamic_graph
from stgraph.graph.dynamic_h5 import is_dynamic_h5, read_dynamic_h5, write_dynamic_h5


@pytest.fixture
def graph(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("timestamp,source,target,weight\n2020-01-01,a,b,0.5\n2020-01-01,b,c,1\n2020-01-03,a,c,0.25\n")
    return read_dynamic_graph(p, ["a", "b", "c"])


def test_round_trip_and_node_order(graph, tmp_path):
    path = write_dynamic_h5(tmp_path / "g.h5", graph)
    assert is_dynamic_h5(path) and is_dynamic_table(path)
    back = read_dynamic_graph(path, ["a", "b", "c"])  # the one entry point reads either format
    assert np.array_equal(back.times, graph.times) and torch.equal(back.ptr, graph.ptr)
    assert torch.equal(back.edge_index, graph.edge_index) and torch.equal(back.edge_weight, graph.edge_weight)
    other = read_dynamic_graph(path, ["c", "b", "a"])  # a series with another sensor order
    assert other.edge_index.tolist() == [[2, 1, 2], [1, 0, 0]]  # a->b, b->c, a->c in the new positions
    assert read_dynamic_h5(path)["sensor_ids"] == ["a", "b", "c"]


def test_bad_files_are_refused(graph, tmp_path):
    path = write_dynamic_h5(tmp_path / "g.h5", graph)
    with pytest.raises(GraphError, match="nodes \\['c'\\] are not sensors"):
        read_dynamic_h5(path, ["a", "b"])
    with h5py.File(path, "a") as f:
        del f["ptr"]
        f["ptr"] = np.array([0, 3, 2])
    with pytest.raises(DataFormatError, match="g.h5.*expected ptr"):
        read_dynamic_h5(path)


def test_train_reads_the_hdf5_graph_as_the_csv_one(tmp_path):
    import stgraph
    from stgraph.synth.mobility import write_mobility

    syn = write_mobility(tmp_path / "mob", num_regions=8, days=60, seed=2)
    ids = [f"r{i}" for i in range(8)]
    h5 = write_dynamic_h5(tmp_path / "mobility.h5", read_dynamic_graph(syn["graph"], ids))
    small = {"data.input_len": 7, "data.horizon": 3, "train.batch_size": 8, "model.params.hidden": 8}
    runs = [stgraph.train(data=syn["data"], graph=g, model="dcrnn", epochs=1, overrides=small) for g in (syn["graph"], h5)]
    assert all(r.data.dynamic_graph is not None for r in runs)
    a, b = (stgraph.evaluate(r, "test", write=False)["average"]["mae"] for r in runs)
    assert a == pytest.approx(b, rel=1e-6)
