"""Tests for stgraph.graph: safe pickles, builders, conversion, files, summary."""
from __future__ import annotations

import math
import pickle

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stgraph.errors import (
    DataFormatError,
    GraphError,
    MissingFileError,
    UnsafePickleError,
)
from stgraph.graph import (
    attach_locations,
    distance_kernel,
    from_adj_pickle,
    from_adjacency,
    from_coordinates,
    from_distances,
    from_edge_list,
    graph_info,
    haversine_km,
    read_graph,
    read_locations,
    safe_load_pickle,
    safe_loads,
    to_adjacency,
    to_pyg,
    validate_graph,
    write_graph,
)

# 1 degree of arc on a sphere of radius 6371.0088 km
KM_PER_DEG = 6371.0088 * math.pi / 180


def _raw_pickle(metr_week_dir):
    """The METR-LA pickle read independently of the package (a trusted fixture)."""
    with open(metr_week_dir / "adj_mx.pkl", "rb") as fh:
        return pickle.load(fh)


def _offdiag(adj):
    off = np.asarray(adj, dtype=np.float64).copy()
    np.fill_diagonal(off, 0.0)
    return off


# ================================================================ safe pickle
class _Eval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch SHOULD_NOT_EXIST')",))


class _Exec:
    def __reduce__(self):
        return (exec, ("open('SHOULD_NOT_EXIST', 'w').close()",))


def test_pickle_calling_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    bad = tmp_path / "adj_mx.pkl"
    bad.write_bytes(payload)
    with pytest.raises(UnsafePickleError) as err:
        safe_load_pickle(bad)
    msg = str(err.value)
    assert "'os.system'" in msg and str(bad) in msg
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        from_adj_pickle(bad)
    assert not marker.exists()


@pytest.mark.parametrize("cls, name", [(_Eval, "builtins.eval"), (_Exec, "builtins.exec")])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_calling_eval_or_exec_is_refused(tmp_path, monkeypatch, cls, name, protocol):
    monkeypatch.chdir(tmp_path)
    data = pickle.dumps([1, cls()], protocol=protocol)
    with pytest.raises(UnsafePickleError, match=name.replace(".", r"\.")):
        safe_loads(data, source="x.pkl")
    assert not (tmp_path / "SHOULD_NOT_EXIST").exists()


def test_pickle_codecs_only_allowed_for_latin1():
    data = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="latin1"):
        safe_loads(data)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_pickle_rebuilds_numpy_and_builtins(protocol):
    obj = [
        ["a", "b"], {"a": 0}, np.arange(6, dtype=np.float32).reshape(2, 3),
        np.float64(2.5), np.int64(3), (1, 2), {1, 2}, frozenset([3]), b"xy", 1 + 2j,
        np.arange(4).reshape(2, 2).T,
    ]
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert back[:2] == obj[:2]
    np.testing.assert_array_equal(back[2], obj[2])
    assert back[2].dtype == np.float32
    assert back[3] == 2.5 and back[4] == 3
    assert back[5:10] == obj[5:10]
    np.testing.assert_array_equal(back[10], obj[10])


def test_safe_pickle_errors(tmp_path):
    with pytest.raises(MissingFileError, match="absent.pkl"):
        safe_load_pickle(tmp_path / "absent.pkl")
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(pickle.dumps([1, 2, 3])[:-3])
    with pytest.raises(DataFormatError, match="trunc.pkl"):
        safe_load_pickle(trunc)


def test_python2_pickle_falls_back_to_latin1(shared_graphs_dir):
    # DCRNN's PEMS-BAY pickle is protocol 0 from Python 2; ASCII decoding fails.
    path = shared_graphs_dir / "pems-bay_adj_mx.pkl"
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())
    ids, mapping, adj = safe_load_pickle(path)
    assert len(ids) == 325 and adj.shape == (325, 325)
    assert all(mapping[s] == i for i, s in enumerate(ids))


# ============================================================ DCRNN adj_mx.pkl
def test_metr_la_pickle(metr_week_dir):
    ids, _, adj = _raw_pickle(metr_week_dir)
    g = from_adj_pickle(metr_week_dir / "adj_mx.pkl")
    assert np.count_nonzero(adj) == 1722
    assert g.number_of_nodes() == 207 and g.number_of_edges() == 1515
    assert list(g.nodes) == ids
    assert all(isinstance(u, str) for u in g.nodes)
    assert [g.nodes[s]["index"] for s in ids] == list(range(207))
    assert g.nodes[ids[5]]["sensor_id"] == ids[5]
    for u, v, w in g.edges(data="weight"):
        assert w == float(adj[ids.index(u), ids.index(v)])
    # direction: adj[i, j] != 0 is the edge i -> j
    i, j = next((a, b) for a, b in zip(*np.nonzero(_offdiag(adj))) if adj[b, a] == 0)
    assert g.has_edge(ids[i], ids[j]) and not g.has_edge(ids[j], ids[i])


def test_pems_bay_pickle(shared_graphs_dir):
    g = from_adj_pickle(shared_graphs_dir / "pems-bay_adj_mx.pkl")
    assert g.number_of_nodes() == 325
    assert g.number_of_edges() == 2694 - 325  # non-zeros minus the diagonal
    assert nx.number_of_selfloops(g) == 0


@pytest.mark.parametrize(
    "content, error, needle",
    [
        ({"a": 1}, DataFormatError, "expected a list"),
        ([["a", "b"], {"a": 0, "b": 1}], DataFormatError, "length 2"),
        ([["a", "b"], {"a": 0, "b": 1}, np.zeros((3, 3))], DataFormatError, "[2, 2]"),
        ([["a", "b"], {"a": 1, "b": 0}, np.ones((2, 2))], DataFormatError, "disagrees"),
        ([["a", "a"], {"a": 0}, np.ones((2, 2))], GraphError, "duplicate"),
        ([["a", "b"], {"a": 0, "b": 1}, np.array([[1, -1.0], [0, 1]])], GraphError, "negative"),
        ([["a", "b"], {"a": 0, "b": 1}, np.array([[1, np.nan], [0, 1]])], GraphError, "non-finite"),
        ([["a", "b"], {"a": 0, "b": 1}, np.eye(2)], GraphError, "no edges"),
    ],
)
def test_adj_pickle_structure_errors(tmp_path, content, error, needle):
    path = tmp_path / "adj_mx.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(error) as err:
        from_adj_pickle(path)
    assert needle in str(err.value) and "adj_mx.pkl" in str(err.value)


def test_adj_pickle_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        from_adj_pickle(tmp_path / "nope.pkl")


# ==================================================================== to_pyg
def test_to_pyg_matches_matrix_in_sensor_order(metr_week_dir):
    ids, _, adj = _raw_pickle(metr_week_dir)
    g = from_adj_pickle(metr_week_dir / "adj_mx.pkl")
    perm = np.random.default_rng(0).permutation(len(ids))
    order = [ids[p] for p in perm]
    off = _offdiag(adj)[np.ix_(perm, perm)]
    data = to_pyg(g, order)
    assert data.num_nodes == 207 and data.sensor_ids == order
    assert data.edge_index.dtype == torch.long and data.edge_index.shape == (2, 1515)
    assert data.edge_weight.dtype == torch.float32
    src, dst = np.nonzero(off)
    key = np.lexsort((src, dst))  # by target, then source
    np.testing.assert_array_equal(data.edge_index.numpy(), np.stack([src[key], dst[key]]))
    np.testing.assert_array_equal(data.edge_weight.numpy(), off[src[key], dst[key]].astype(np.float32))
    assert not hasattr(data, "edge_distance") or data.edge_distance is None
    # dense round trip
    np.testing.assert_array_equal(to_adjacency(g, order), off.astype(np.float32))


def test_to_pyg_mismatched_ids_are_listed(metr_week_dir):
    g = from_adj_pickle(metr_week_dir / "adj_mx.pkl")
    ids = list(g.nodes)
    series_ids = ids[3:] + [f"fake{k}" for k in range(25)]
    with pytest.raises(GraphError) as err:
        to_pyg(g, series_ids)
    msg = str(err.value)
    assert "in the series but not the graph" in msg and "'fake0'" in msg and "(25 in all)" in msg
    assert "'fake19'" in msg and "'fake20'" not in msg  # first 20 only
    assert "in the graph but not the series" in msg and all(repr(s) in msg for s in ids[:3])
    assert "(3 in all)" in msg
    with pytest.raises(GraphError, match="repeat"):
        to_pyg(g, ids + ids[:1])


def test_to_pyg_drop_extra_and_distance():
    g = from_distances([("a", "b", 1.0), ("b", "c", 2.0), ("c", "a", 1.5)], ["a", "b", "c"],
                       kernel="inverse")
    data = to_pyg(g, ["c", "b", "a"])
    # positions: c=0, b=1, a=2; edges a->b (2,1), b->c (1,0), c->a (0,2); sorted by target
    assert data.edge_index.tolist() == [[1, 2, 0], [0, 1, 2]]
    np.testing.assert_allclose(data.edge_weight.numpy(), [0.5, 1.0, 1 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(data.edge_distance.numpy(), [2.0, 1.0, 1.5])
    sub = to_pyg(g, ["a", "b"], drop_extra=True)
    assert sub.num_nodes == 2 and sub.edge_index.tolist() == [[0], [1]]
    g.add_edge("a", "c", weight=1.0)  # no distance
    assert getattr(to_pyg(g, ["a", "b", "c"]), "edge_distance", None) is None
    with pytest.raises(GraphError, match="distance"):
        to_pyg(g, ["a", "b", "c"], distance=True)


# ========================================================== distance tables
HAND_ROWS = [("A", "B", 100.0), ("B", "C", 200.0), ("A", "C", 300.0), ("C", "A", 50.0), ("A", "A", 0.0)]
# distances [100, 200, 300, 50, 0]: mean 130, population variance
# (30^2 + 70^2 + 170^2 + 80^2 + 130^2) / 5 = 11600
HAND_SIGMA2 = 11600.0


def test_gaussian_kernel_hand_values(tmp_path):
    csv = tmp_path / "distances.csv"
    csv.write_text("from,to,cost\n" + "".join(f"{a},{b},{d}\n" for a, b, d in HAND_ROWS))
    g = from_distances(csv, ["A", "B", "C", "D"])
    assert g.graph["sigma"] == pytest.approx(math.sqrt(HAND_SIGMA2))
    # 200 -> exp(-40000/11600) = 0.0318 and 300 -> 0.0004 fall below 0.1
    assert sorted(g.edges) == [("A", "B"), ("C", "A")]
    assert g["A"]["B"]["weight"] == pytest.approx(math.exp(-10000 / HAND_SIGMA2))  # 0.42229
    assert g["C"]["A"]["weight"] == pytest.approx(math.exp(-2500 / HAND_SIGMA2))  # 0.80612
    assert g["A"]["B"]["distance"] == 100.0
    assert "D" in g and g.degree("D") == 0  # listed sensors without rows stay
    # explicit sigma and threshold
    g2 = from_distances(HAND_ROWS, ["A", "B", "C"], sigma=200.0, threshold=0.5)
    assert sorted(g2.edges) == [("A", "B"), ("C", "A")]
    assert g2["A"]["B"]["weight"] == pytest.approx(math.exp(-0.25))
    g3 = from_distances(HAND_ROWS, ["A", "B", "C"], sigma=200.0, threshold=0.0)
    assert g3["A"]["C"]["weight"] == pytest.approx(math.exp(-2.25))


def test_inverse_and_binary_kernels():
    inv = from_distances(HAND_ROWS, ["A", "B", "C"], kernel="inverse")
    assert {e: inv.edges[e]["weight"] for e in inv.edges} == pytest.approx(
        {("A", "B"): 0.01, ("B", "C"): 0.005, ("A", "C"): 1 / 300, ("C", "A"): 0.02})
    binary = from_distances(HAND_ROWS, ["A", "B", "C"], kernel="binary")
    assert sorted(binary.edges) == [("A", "B"), ("A", "C"), ("B", "C"), ("C", "A")]
    assert {w for _, _, w in binary.edges(data="weight")} == {1.0}
    assert "sigma" not in binary.graph
    np.testing.assert_allclose(
        distance_kernel([0.0, 1.0, np.inf], sigma=2.0), [1.0, math.exp(-0.25), 0.0])
    with pytest.raises(GraphError, match="d > 0"):
        from_distances([("A", "B", 0.0)], ["A", "B"], kernel="inverse")
    with pytest.raises(GraphError, match="kernel"):
        from_distances(HAND_ROWS, ["A", "B", "C"], kernel="cosine")


def test_distance_table_errors_and_options(tmp_path):
    rows = HAND_ROWS + [("X", "A", 5.0), ("B", "Y", 5.0)]
    with pytest.raises(GraphError) as err:
        from_distances(rows, ["A", "B", "C"])
    assert "['X', 'Y'] (2 in all)" in str(err.value) and "ignore_unknown" in str(err.value)
    g = from_distances(rows, ["A", "B", "C"], ignore_unknown=True, kernel="binary")
    assert g.number_of_edges() == 4
    # a repeated pair keeps the shorter distance
    g = from_distances([("A", "B", 90.0), ("A", "B", 60.0), ("B", "A", 80.0)], ["A", "B"],
                       kernel="inverse")
    assert g["A"]["B"]["distance"] == 60.0
    with pytest.raises(DataFormatError, match="negative"):
        from_distances([("A", "B", -1.0)], ["A", "B"])
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to,speed\nA,B,3\n")
    with pytest.raises(DataFormatError, match="bad.csv.*from,to,cost"):
        from_distances(bad, ["A", "B"])
    bad.write_text("from,to,cost\nA,B,far\n")
    with pytest.raises(DataFormatError, match="'cost'.*far"):
        from_distances(bad, ["A", "B"])
    with pytest.raises(GraphError, match="no edge survives"):
        from_distances([("A", "B", 100.0), ("B", "A", 300.0)], ["A", "B"], sigma=10.0)
    with pytest.raises(GraphError, match="sigma"):
        from_distances([("A", "B", 100.0)], ["A", "B"])  # std of one distance is 0
    with pytest.raises(MissingFileError):
        from_distances(tmp_path / "absent.csv", ["A"])


def test_distances_recover_metr_la_weights(metr_week_dir):
    """adj_mx.pkl holds exp(-(d/sigma)^2); invert it and rebuild the graph."""
    ids, _, adj = _raw_pickle(metr_week_dir)
    off = _offdiag(adj)
    src, dst = np.nonzero(off)
    sigma = 1000.0
    dist = sigma * np.sqrt(-np.log(off[src, dst]))
    ids_arr = np.asarray(ids)
    table = np.empty((src.size + len(ids), 3), dtype=object)
    table[: src.size, 0], table[: src.size, 1], table[: src.size, 2] = ids_arr[src], ids_arr[dst], dist
    table[src.size:, 0] = table[src.size:, 1] = ids_arr  # DCRNN's self pairs, distance 0
    table[src.size:, 2] = 0.0
    g = from_distances(table, ids, sigma=sigma, threshold=0.1)
    assert g.number_of_edges() == 1515
    assert set(g.edges) == {(ids[a], ids[b]) for a, b in zip(src, dst)}
    np.testing.assert_allclose(to_adjacency(g, ids), off, atol=1e-6)


def test_pems04_and_pems08_tables(shared_graphs_dir):
    p04, p08 = shared_graphs_dir / "pems04_distance.csv", shared_graphs_dir / "pems08_distance.csv"
    b04 = from_distances(p04, range(307), kernel="binary")
    assert b04.number_of_nodes() == 307 and b04.number_of_edges() == 340
    assert list(b04.nodes)[:3] == ["0", "1", "2"]
    assert b04["73"]["5"] == {"weight": 1.0, "distance": 352.6}  # first row: 73,5,352.6
    b08 = from_distances(p08, [str(i) for i in range(170)], kernel="binary")
    assert b08.number_of_nodes() == 170
    assert b08.number_of_edges() == 277  # 295 rows, 18 exact duplicates
    assert b08["9"]["153"]["distance"] == 310.6
    g04 = from_distances(p04, range(307))
    d = np.loadtxt(p04, delimiter=",", skiprows=1)
    assert g04.graph["sigma"] == pytest.approx(d[:, 2].std())
    w = np.exp(-np.square(d[:, 2] / d[:, 2].std()))
    assert g04.number_of_edges() == int((w >= 0.1).sum())
    with pytest.raises(GraphError, match="not in sensor_ids"):
        from_distances(p04, range(300))


# ============================================================== coordinates
def test_haversine_hand_values():
    assert haversine_km(0, 0, 0, 1) == pytest.approx(KM_PER_DEG)
    assert haversine_km(0, 0, 1, 0) == pytest.approx(KM_PER_DEG)
    assert haversine_km(0, 0, 90, 0) == pytest.approx(90 * KM_PER_DEG)
    assert haversine_km(0, 0, 0, 180) == pytest.approx(180 * KM_PER_DEG)


def test_coordinates_knn_and_radius_hand():
    ids, lat, lon = ["a", "b", "c", "d"], [0, 0, 0, 0], [0, 1, 3, 7]
    g = from_coordinates(ids, lat, lon, k=1, symmetric=False)
    # nearest: a<-b, b<-a, c<-b (2 deg vs 4), d<-c; edges neighbour -> sensor
    assert sorted(g.edges) == [("a", "b"), ("b", "a"), ("b", "c"), ("c", "d")]
    assert g["b"]["c"]["distance"] == pytest.approx(2 * KM_PER_DEG)
    assert all(deg == 1 for _, deg in g.in_degree())
    assert g.nodes["c"]["lat"] == 0.0 and g.nodes["c"]["lon"] == 3.0
    s = from_coordinates(ids, lat, lon, k=1)
    assert sorted(s.edges) == [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("c", "d"), ("d", "c")]
    # sigma = std of the 6 edge distances (1, 1, 2, 2, 4, 4 degrees)
    sig = np.std([1, 1, 2, 2, 4, 4]) * KM_PER_DEG
    assert s.graph["sigma"] == pytest.approx(sig)
    assert s["a"]["b"]["weight"] == pytest.approx(math.exp(-(KM_PER_DEG / sig) ** 2))
    r = from_coordinates(ids, lat, lon, radius_km=250, sigma=100)
    assert sorted(r.edges) == [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")]
    assert r["a"]["b"]["weight"] == pytest.approx(math.exp(-(KM_PER_DEG / 100) ** 2))
    with pytest.raises(GraphError, match="k="):
        from_coordinates(ids, lat, lon)
    with pytest.raises(GraphError, match="1 <= k < 4"):
        from_coordinates(ids, lat, lon, k=4)
    with pytest.raises(GraphError, match="swapped"):
        from_coordinates(ids, [0, 0, 0, 95], lon, k=1)
    with pytest.raises(GraphError, match="111.195 km"):
        from_coordinates(ids, lat, lon, radius_km=50)


def test_metr_la_locations_knn(metr_week_dir):
    ids, lat, lon = read_locations(metr_week_dir / "graph_sensor_locations.csv")
    assert len(ids) == 207 and ids[:2] == ["773869", "767541"]
    assert lat[0] == 34.15497 and lon[0] == -118.31829
    g = from_coordinates(ids, lat, lon, k=5, symmetric=False)
    assert g.number_of_edges() == 207 * 5
    assert {d for _, d in g.in_degree()} == {5}
    s = from_coordinates(ids, lat, lon, k=5)
    assert min(d for _, d in s.in_degree()) >= 5
    assert all(s.has_edge(v, u) for u, v in s.edges)
    pk = from_adj_pickle(metr_week_dir / "adj_mx.pkl")
    assert not graph_info(pk)["has_coordinates"]
    attach_locations(pk, metr_week_dir / "graph_sensor_locations.csv")
    assert graph_info(pk)["has_coordinates"]
    assert pk.nodes["773869"]["lat"] == 34.15497
    pk.add_node("999", sensor_id="999", index=207)
    with pytest.raises(GraphError, match="'999'"):
        attach_locations(pk, (ids, lat, lon))
    attach_locations(pk, (ids, lat, lon), strict=False)
    assert "lat" not in pk.nodes["999"]


# ================================================================ edge lists
def test_edge_list_files(tmp_path):
    ws = tmp_path / "edges.txt"
    ws.write_text("# comment\n007 7\n7   8\n8 007\n")
    g = from_edge_list(ws)
    assert list(g.nodes) == ["007", "7", "8"]
    assert sorted(g.edges) == [("007", "7"), ("7", "8"), ("8", "007")]
    assert g["7"]["8"]["weight"] == 1.0
    csv = tmp_path / "edges.csv"
    csv.write_text("source,target,weight\n1,2,0.5\n2,3,0.25\n")
    g = from_edge_list(csv, sensor_ids=["3", "2", "1"])
    assert list(g.nodes) == ["3", "2", "1"] and g.nodes["1"]["index"] == 2
    assert g["1"]["2"]["weight"] == 0.5 and g["2"]["3"]["weight"] == 0.25
    with pytest.raises(GraphError, match=r"\['3'\]"):
        from_edge_list(csv, sensor_ids=["1", "2"])
    assert from_edge_list(csv, sensor_ids=["1", "2"], ignore_unknown=True).number_of_edges() == 1
    assert from_edge_list([(1, 2, 3.0)])["1"]["2"]["weight"] == 3.0


# ================================================================ validation
def test_validate_graph_rejects_bad_graphs():
    with pytest.raises(GraphError, match="empty"):
        validate_graph(nx.DiGraph(), "g.json")
    g = nx.DiGraph()
    g.add_nodes_from(["a", "b"])
    with pytest.raises(GraphError, match="no edges"):
        validate_graph(g)
    g.add_edge("a", "a", weight=1.0)
    with pytest.raises(GraphError, match="self loops"):
        validate_graph(g)
    g.add_edge("a", "b", weight=-0.5)
    with pytest.raises(GraphError, match=r"'g.json'.*\('a', 'b', -0.5\)"):
        validate_graph(g, "g.json")
    g["a"]["b"]["weight"] = float("inf")
    with pytest.raises(GraphError, match="not finite"):
        validate_graph(g)
    g["a"]["b"]["weight"] = 0.5
    assert validate_graph(g) is g
    with pytest.raises(GraphError, match="not strings"):
        validate_graph(nx.DiGraph([(1, 2)]))


def test_graph_info_hand():
    g = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("d", "e"), ("e", "e")])
    g.add_node("f")
    info = graph_info(g)
    # total degrees: a2 b2 c2 d1 e3 (self loop counts twice) f0
    assert info == {
        "nodes": 6, "edges": 5, "components": 3, "min_degree": 0, "max_degree": 3,
        "mean_degree": 10 / 6, "self_loops": 1, "has_coordinates": False,
        "weights": "1 .. 1", "weight_meaning": "similarity (all in [0, 1]; 1 .. 1), used as is", "coordinates": "none",
    }
    assert graph_info(nx.DiGraph())["components"] == 0


# ======================================================================= files
def _located_graph():
    g = from_distances([("007", "7", 120.0), ("7", "8", 80.0), ("8", "007", 100.0)],
                       ["8", "007", "7"], sigma=150.0)
    attach_locations(g, (["007", "7", "8"], [34.1, 34.2, 34.3], [-118.1, -118.2, -118.3]))
    return g


@pytest.mark.parametrize("suffix", [".json", ".graphml"])
def test_json_and_graphml_round_trip(tmp_path, suffix):
    g = _located_graph()
    path = write_graph(g, tmp_path / f"g{suffix}")
    back = read_graph(path)
    assert list(back.nodes) == ["8", "007", "7"]  # ids stay strings, order kept
    assert all(isinstance(u, str) for u in back.nodes)
    for u in g.nodes:
        assert back.nodes[u]["sensor_id"] == u and isinstance(back.nodes[u]["sensor_id"], str)
        assert back.nodes[u]["index"] == g.nodes[u]["index"]
        assert back.nodes[u]["lat"] == g.nodes[u]["lat"] and back.nodes[u]["lon"] == g.nodes[u]["lon"]
    assert set(back.edges) == set(g.edges)
    for u, v, a in g.edges(data=True):
        assert back[u][v]["weight"] == a["weight"] and back[u][v]["distance"] == a["distance"]
    assert back.graph["sigma"] == 150.0


def test_node_link_file_is_networkx_node_link_and_locations_round_trip(tmp_path):
    import json

    from stgraph.graph import adj_mx, write_locations

    g = _located_graph()
    doc = json.loads(write_graph(g, tmp_path / "g.json").read_text())
    assert [n["id"] for n in doc["nodes"]] == ["8", "007", "7"] and doc["directed"] and not doc["multigraph"]
    back = nx.node_link_graph(doc, edges="edges")  # networkx reads stgraph's file as its own
    assert set(back.edges) == set(g.edges) and back["8"]["007"]["weight"] == g["8"]["007"]["weight"]
    nx_doc = nx.node_link_data(nx.DiGraph([("a", "b", {"weight": 2.5})]), edges="links")
    (tmp_path / "nx.json").write_text(json.dumps(nx_doc))
    assert read_graph(tmp_path / "nx.json")["a"]["b"]["weight"] == 2.5  # and networkx's (old 'links' key)
    (tmp_path / "dangling.json").write_text(json.dumps({"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "z"}]}))
    with pytest.raises(DataFormatError, match=r"dangling\.json.*'a' -> 'z' names a node missing"):
        read_graph(tmp_path / "dangling.json")

    path = write_locations(g, tmp_path / "loc.csv")
    assert path.read_text().splitlines()[:2] == ["index,sensor_id,latitude,longitude", "0,8,34.300000,-118.300000"]
    ids, lat, lon = read_locations(path)
    assert ids == ["8", "007", "7"] and lat.tolist() == [34.3, 34.1, 34.2] and lon.tolist() == [-118.3, -118.1, -118.2]
    assert write_locations(g, tmp_path / "loc3.csv", index=False).read_text().splitlines()[1] == "8,34.300000,-118.300000"
    g.add_node("9")
    with pytest.raises(GraphError, match=r"\['9'\] have no lat/lon"):
        write_locations(g, tmp_path / "loc4.csv")

    ids, pos, w = adj_mx(from_distances([("a", "b", 100.0), ("b", "a", 50.0)], ["b", "a"], sigma=100.0))
    assert ids == ["b", "a"] and pos == {"b": 0, "a": 1} and w.dtype == np.float32
    np.testing.assert_allclose(w, [[0, math.exp(-0.25)], [math.exp(-1), 0]], rtol=1e-6)


def test_real_graph_round_trips(tmp_path, metr_week_dir):
    g = from_adj_pickle(metr_week_dir / "adj_mx.pkl")
    attach_locations(g, metr_week_dir / "graph_sensor_locations.csv")
    ids = list(g.nodes)
    want = to_adjacency(g, ids)
    for name in ("g.json", "g.graphml", "g.pkl", "g.csv"):
        back = read_graph(write_graph(g, tmp_path / name), sensor_ids=ids if name.endswith(".csv") else None)
        assert sorted(back.nodes) == sorted(ids), name
        np.testing.assert_array_equal(to_adjacency(back, ids), want, err_msg=name)
    assert read_graph(tmp_path / "g.graphml").nodes["773869"]["lon"] == -118.31829


def test_read_graph_detection(tmp_path, metr_week_dir, shared_graphs_dir):
    g = read_graph(metr_week_dir / "adj_mx.pkl")
    assert g.number_of_edges() == 1515
    # suffix unknown: sniff the content
    (tmp_path / "graph.bin").write_bytes((metr_week_dir / "adj_mx.pkl").read_bytes())
    assert read_graph(tmp_path / "graph.bin").number_of_edges() == 1515
    write_graph(g, tmp_path / "g.json")
    (tmp_path / "g.dat").write_text((tmp_path / "g.json").read_text())
    assert read_graph(tmp_path / "g.dat").number_of_edges() == 1515
    with pytest.raises(GraphError, match="sensor_ids"):
        read_graph(shared_graphs_dir / "pems04_distance.csv")
    d = read_graph(shared_graphs_dir / "pems04_distance.csv", sensor_ids=range(307), kernel="binary")
    assert d.number_of_edges() == 340
    ids = list(g.nodes)
    los = read_graph(metr_week_dir / "los_adj.csv", sensor_ids=ids)  # dense 207 x 207
    dense = np.loadtxt(metr_week_dir / "los_adj.csv", delimiter=",")
    np.testing.assert_array_equal(to_adjacency(los, ids), _offdiag(dense).astype(np.float32))
    with pytest.raises(MissingFileError):
        read_graph(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"nodes": 3}')
    with pytest.raises(DataFormatError, match="bad.json"):
        read_graph(tmp_path / "bad.json")
    with pytest.raises(DataFormatError, match=".yaml"):
        write_graph(g, tmp_path / "g.yaml")


def test_from_adjacency_direct():
    g = from_adjacency(np.array([[1, 0.5, 0], [0, 1, 0], [0.2, 0, 1]]), [10, 11, 12])
    assert list(g.nodes) == ["10", "11", "12"]
    assert sorted(g.edges(data="weight")) == [("10", "11", 0.5), ("12", "10", 0.2)]
    with pytest.raises(DataFormatError, match=r"\[2, 2\]"):
        from_adjacency(np.ones((3, 3)), ["a", "b"])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 8), seed=st.integers(0, 2**32 - 1), density=st.floats(0.2, 0.9))
def test_matrix_graph_pyg_round_trip(n, seed, density):
    rng = np.random.default_rng(seed)
    # similarities in (0, 1]: weights above 1 would be read as distances (edge_similarity)
    adj = np.where(rng.random((n, n)) < density, rng.random((n, n)).astype(np.float32) * 0.99 + 0.01, 0.0)
    adj[0, 1] = 0.5  # at least one off-diagonal edge
    ids = [f"s{k:02d}" for k in range(n)]
    g = from_adjacency(adj, ids)
    off = _offdiag(adj)
    np.testing.assert_array_equal(to_adjacency(g, ids), off.astype(np.float32))
    data = to_pyg(g, ids[::-1])
    rev = off[::-1, ::-1]
    src, dst = np.nonzero(rev)
    key = np.lexsort((src, dst))
    np.testing.assert_array_equal(data.edge_index.numpy(), np.stack([src[key], dst[key]]))
    np.testing.assert_array_equal(data.edge_weight.numpy(), rev[src[key], dst[key]].astype(np.float32))


def test_graph_tables_stgraph_writes_are_spreadsheet_safe_and_read_back_as_the_ids(tmp_path):
    """Sensor ids that a spreadsheet would run as formulas are written with a leading apostrophe in the edge
    list and the locations table, and read back as the original ids."""
    from stgraph.graph.locations import write_locations

    ids = ["=HYPERLINK(\"x\")", "+1", "@SUM(A1)", "-7", "'quoted", "plain"]
    g = nx.DiGraph()
    for i, s in enumerate(ids):
        g.add_node(s, index=i, sensor_id=s, lat=34.0 + i / 100, lon=-118.0 - i / 100)
    for a, b in zip(ids, ids[1:]):
        g.add_edge(a, b, weight=0.5)
    edges = write_graph(g, tmp_path / "edges.csv")
    text = edges.read_text()
    assert "\n'=HYPERLINK" in text and ",'+1," in text and "\n'@SUM(A1)" in text and "''quoted" in text
    assert not any(line.startswith(("=", "+", "-", "@")) for line in text.splitlines())
    back = read_graph(edges, sensor_ids=ids)
    assert sorted(back.edges()) == sorted(g.edges())
    locs = write_locations(g, tmp_path / "locations.csv")
    assert all(not cell.startswith(("=", "+", "-", "@")) for line in locs.read_text().splitlines()
               for cell in line.split(",")[:2])
    got, lat, lon = read_locations(locs)
    assert got == ids and np.allclose(lat, [34.0 + i / 100 for i in range(6)])
