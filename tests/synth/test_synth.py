"""The embedded synthetic road network and speed simulator (stgraph.synth)."""
from __future__ import annotations

import csv
import math
import pickle
import time

import networkx as nx
import numpy as np
import pytest

from stgraph import synth
from stgraph.errors import GraphError, SeriesError


@pytest.fixture(scope="module")
def net207():
    return synth.make_road_network(207, seed=0)


@pytest.fixture(scope="module")
def week207(net207):
    return synth.simulate_speeds(net207, days=7, seed=0, return_log=True)


def _road(graph) -> nx.DiGraph:
    r = nx.DiGraph()
    r.add_nodes_from(graph.nodes)
    r.add_edges_from((u, v) for u, v, *_ in graph.graph["road_links"])
    return r


def _edge_table(graph):
    return sorted((u, v, tuple(sorted(d.items()))) for u, v, d in graph.edges(data=True))


# ============================================================ road network
@pytest.mark.parametrize("n", [10, 11, 23, 50, 207, 601, 2000])
def test_exact_node_count_weakly_connected_and_attributes(n):
    g = synth.make_road_network(n, seed=n)
    assert g.number_of_nodes() == n
    assert nx.is_weakly_connected(g)
    ids = list(g.nodes)
    assert len(set(ids)) == n
    assert all(isinstance(s, str) and len(s) == 6 and s.isdigit() for s in ids)
    assert sorted(g.nodes[v]["index"] for v in g) == list(range(n))
    for v, a in g.nodes(data=True):
        assert a["sensor_id"] == v
        # around Los Angeles, within ~60 km
        assert abs(a["lat"] - 34.05) < 0.6 and abs(a["lon"] + 118.25) < 0.7
        assert a["kind"] in {"mainline", "on_ramp", "off_ramp"}
    # the road itself (every direct link) is connected too
    assert nx.is_weakly_connected(_road(g))


def test_too_few_sensors_is_an_error():
    with pytest.raises(GraphError, match="at least"):
        synth.make_road_network(3, seed=0)


def test_network_is_deterministic_and_seed_dependent():
    a = synth.make_road_network(120, seed=7)
    b = synth.make_road_network(120, seed=7)
    c = synth.make_road_network(120, seed=8)
    assert list(a.nodes(data=True)) == list(b.nodes(data=True))
    assert _edge_table(a) == _edge_table(b)
    assert a.graph["candidates"] == b.graph["candidates"]
    assert list(a.nodes(data=True)) != list(c.nodes(data=True))


def test_corridors_ramps_and_interchanges(net207):
    g = net207
    kinds = {}
    for _, _, _, kind in g.graph["road_links"]:
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds["mainline"] > 150 and kinds["ramp"] > 10 and kinds["interchange"] > 8
    corridors = {a["corridor"] for _, a in g.nodes(data=True)}
    assert len(corridors) >= 3
    road = _road(g)
    for c in corridors:
        for d in (0, 1):
            chain = [v for v, a in g.nodes(data=True)
                     if a["corridor"] == c and a["direction"] == d and a["kind"] == "mainline"]
            assert len(chain) >= 2
            # a directed mainline chain: a single path through all its sensors
            sub = road.subgraph(chain)
            assert nx.is_directed_acyclic_graph(sub)
            assert nx.dag_longest_path_length(sub) == len(chain) - 1
    # on-ramps only feed the mainline, off-ramps only leave it
    for v, a in g.nodes(data=True):
        if a["kind"] == "on_ramp":
            assert road.out_degree(v) == 1
        if a["kind"] == "off_ramp":
            assert road.in_degree(v) == 1
    # interchanges make the network mostly strongly connected, like a real one
    assert max(len(c) for c in nx.strongly_connected_components(road)) > 0.3 * g.number_of_nodes()


def test_distances_are_road_distances(net207):
    g = net207
    us, vs, d = zip(*[(u, v, dd["distance"]) for u, v, dd in g.edges(data=True)])
    lat = np.array([g.nodes[u]["lat"] for u in us]), np.array([g.nodes[v]["lat"] for v in vs])
    lon = np.array([g.nodes[u]["lon"] for u in us]), np.array([g.nodes[v]["lon"] for v in vs])
    straight = synth.haversine_m(lat[0], lon[0], lat[1], lon[1])
    d = np.asarray(d)
    assert (d > 0).all()
    assert (d >= straight - 0.1).all()          # never shorter than the straight line
    mainline = np.array([dd["distance"] for _, _, dd in g.edges(data=True)
                         if dd["kind"] == "mainline"])
    # detectors ~0.5-2 km apart along the corridor
    assert 400 < np.median(mainline) < 2000 and mainline.max() < 2600


@pytest.mark.parametrize("n,seed", [(10, 1), (50, 0), (207, 0), (207, 3), (1000, 2)])
def test_weights_are_dcrnn_thresholded_gaussian_kernel(n, seed):
    g = synth.make_road_network(n, seed=seed)
    cands = g.graph["candidates"]
    dist = np.array([c[2] for c in cands])
    sigma = float(dist.std())
    assert g.graph["sigma"] == pytest.approx(sigma)
    thr = g.graph["threshold"]
    assert thr == 0.1
    for u, v, d in g.edges(data=True):
        assert d["distance"] > 0
        assert 0 < d["weight"] <= 1
        assert d["weight"] == pytest.approx(math.exp(-(d["distance"] / sigma) ** 2), rel=1e-12)
    # every candidate above the threshold is an edge ...
    edges = set(g.edges)
    for u, v, dd in cands:
        if math.exp(-(dd / sigma) ** 2) >= thr:
            assert (u, v) in edges
    # ... and an edge below it is only there to keep the graph connected
    und = nx.Graph(g.to_undirected())
    bridges = {frozenset(e) for e in nx.bridges(und)}
    for u, v, d in g.edges(data=True):
        if d["weight"] < thr:
            assert frozenset((u, v)) in bridges


def test_dcrnn_adj_mx(net207):
    ids, ind, w = synth.dcrnn_adj_mx(net207)
    assert ids == sorted(net207.nodes, key=lambda v: net207.nodes[v]["index"])
    assert ind == {s: i for i, s in enumerate(ids)}
    assert w.dtype == np.float32 and w.shape == (207, 207)
    assert (np.diag(w) == 0).all()  # graph/io.py's convention: no diagonal of ones (DCRNN's readers drop it)
    assert (w > 0).sum() == net207.number_of_edges()
    u, v, d = next(iter(net207.edges(data=True)))
    assert w[ind[u], ind[v]] == np.float32(d["weight"])


# ============================================================ speeds
def test_series_shape_timestamps_and_intervals(net207, week207):
    s, _ = week207
    assert s.shape == (2016, 207, 1)
    assert s.channels == ["speed"] and s.null_value == 0.0
    assert s.values.dtype == np.float32
    assert s.timestamps[0] == np.datetime64("2012-03-01T00:00")
    assert s.interval == np.timedelta64(5, "m")
    assert s.sensor_ids == sorted(net207.nodes, key=lambda v: net207.nodes[v]["index"])
    hourly = synth.simulate_speeds(net207, start="2012-06-04 00:00", days=3, interval_minutes=60, seed=1)
    assert hourly.shape == (72, 207, 1)
    assert hourly.interval == np.timedelta64(1, "h")
    assert hourly.timestamps[-1] == np.datetime64("2012-06-06T23:00")
    with pytest.raises(SeriesError):
        synth.simulate_speeds(net207, days=1, interval_minutes=7)
    with pytest.raises(SeriesError):
        synth.simulate_speeds(net207, days=0)


def test_simulation_is_deterministic_and_seed_dependent():
    g = synth.make_road_network(30, seed=0)
    a = synth.simulate_speeds(g, days=2, seed=5)
    b = synth.simulate_speeds(g, days=2, seed=5)
    c = synth.simulate_speeds(g, days=2, seed=6)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert not np.array_equal(a.values, c.values)
    s1, g1 = synth.generate(40, days=1, seed=2)
    s2, g2 = synth.generate(40, days=1, seed=2)
    np.testing.assert_array_equal(s1.values, s2.values)
    assert _edge_table(g1) == _edge_table(g2)


def _hour_mean(s, hours, weekday: bool):
    ts = s.timestamps
    hour = (ts - ts.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)
    dow = (ts.astype("datetime64[D]").astype(np.int64) + 3) % 7           # Monday = 0
    rows = np.isin(hour, hours) & ((dow < 5) if weekday else (dow >= 5))
    v = s.values[rows, :, 0]
    return float(v[v > 0].mean())


def test_speeds_plausible_and_rush_hours(week207):
    s, log = week207
    v = s.values[..., 0]
    ok = v[v > 0]
    assert ok.min() >= 3 and ok.max() <= 80
    assert 55 < ok.mean() < 66
    assert ((log.free_flow >= 60) & (log.free_flow <= 70)).all()
    night = _hour_mean(s, [2, 3], weekday=True)
    am_rush = _hour_mean(s, [7, 8], weekday=True)
    pm_rush = _hour_mean(s, [16, 17, 18], weekday=True)
    assert night > 60
    assert am_rush < night - 5 and pm_rush < night - 5
    # weekends are lighter
    assert _hour_mean(s, [7, 8], weekday=False) > am_rush + 4
    assert _hour_mean(s, [16, 17, 18], weekday=False) > pm_rush + 3
    # some places jam badly at rush hour, as in METR-LA
    assert np.percentile(ok, 1) < 40


def test_rush_direction_depends_on_travel_direction(net207, week207):
    """Inbound sensors (heading to the centre) are slower in the morning than
    in the evening; outbound the other way round."""
    s, _ = week207
    ts = s.timestamps
    hour = (ts - ts.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)
    dow = (ts.astype("datetime64[D]").astype(np.int64) + 3) % 7
    v = np.where(s.values[..., 0] > 0, s.values[..., 0], np.nan)
    am = np.nanmean(v[np.isin(hour, [7, 8]) & (dow < 5)], axis=0)
    pm = np.nanmean(v[np.isin(hour, [17, 18]) & (dow < 5)], axis=0)
    clat, clon = net207.graph["centre"]
    inbound = []
    for sid in s.sensor_ids:
        a = net207.nodes[sid]
        h = math.radians(a["heading"])
        px, py = (a["lon"] - clon) * math.cos(math.radians(clat)), a["lat"] - clat
        inbound.append(-(math.sin(h) * px + math.cos(h) * py) / max(1e-9, math.hypot(px, py)))
    inbound = np.array(inbound)
    diff = am - pm                       # negative: slower in the morning
    assert np.nanmean(diff[inbound > 0.7]) < np.nanmean(diff[inbound < -0.7]) - 2


def _incident_setup(g):
    """A mainline sensor with an upstream mainline neighbour and a sensor far downstream."""
    road = _road(g)
    for s in sorted(g.nodes, key=lambda v: g.nodes[v]["index"]):
        a = g.nodes[s]
        if a["kind"] != "mainline":
            continue
        ups = [p for p in road.predecessors(s) if g.nodes[p]["kind"] == "mainline"
               and g.nodes[p]["corridor"] == a["corridor"] and g.nodes[p]["direction"] == a["direction"]]
        if not ups:
            continue
        upstream_of_s = nx.ancestors(road, s)
        far = [v for v, h in nx.single_source_shortest_path_length(road, s).items()
               if h >= 4 and v not in upstream_of_s]
        if far:
            return s, ups[0], far[0]
    raise AssertionError("no suitable sensor")


def test_injected_incident_spreads_upstream_with_lag():
    g = synth.make_road_network(60, seed=4)
    s, up, far = _incident_setup(g)
    kw = dict(days=1, seed=9, missing_ratio=0.0)
    base = synth.simulate_speeds(g, **kw)
    start, dur = 96, 12                                # 08:00 for an hour
    hit, log = synth.simulate_speeds(g, incidents=[(s, start, dur, 0.6)], return_log=True, **kw)
    assert log.incidents[-1] == synth.Incident(s, start, dur, 0.6)
    d = hit.values[..., 0] - base.values[..., 0]
    col = {sid: i for i, sid in enumerate(hit.sensor_ids)}
    # nothing changes before the incident, and nothing far downstream
    assert (d[:start] == 0).all()
    assert (d[:, col[far]] == 0).all()
    # the incident sensor drops at once, by about the severity ...
    ds, du = d[:, col[s]], d[:, col[up]]
    ratio = hit.values[..., 0] / base.values[..., 0]
    assert ds[start] < -3
    assert 0.25 < ratio[start + 2:start + dur, col[s]].mean() < 0.55
    # ... its upstream neighbour later and less
    first_s = int(np.flatnonzero(ds < -1)[0])
    first_u = int(np.flatnonzero(du < -1)[0])
    assert first_s == start and first_u > first_s
    assert du[start:start + dur + 2].mean() < -5
    assert ratio[start + 2:start + dur, col[up]].mean() < 0.8
    assert du[start:start + dur].min() > ds[start:start + dur].min()
    # and it recovers
    assert abs(ds[start + dur + 24:]).max() < 1.0
    # only sensors upstream (against edge direction) of the incident change
    changed = {hit.sensor_ids[i] for i in np.flatnonzero((d != 0).any(axis=0))}
    assert s in changed and up in changed
    assert changed <= nx.ancestors(_road(g), s) | {s}


def test_incident_validation(net207):
    with pytest.raises(GraphError, match="not in the graph"):
        synth.simulate_speeds(net207, days=1, incidents=[("999999", 0, 3, 0.5)])
    with pytest.raises(SeriesError):
        synth.simulate_speeds(net207, days=1, incidents=[(next(iter(net207)), 0, 3, 1.5)])


def test_zeros_exactly_where_outages_were_recorded(week207):
    s, log = week207
    zero = s.values[..., 0] == 0
    assert 0.02 < zero.mean() < 0.10
    assert s.missing_ratio == pytest.approx(zero.mean())
    np.testing.assert_array_equal(zero, log.outage_mask)
    # the event list rebuilds the mask
    rebuilt = np.zeros_like(zero)
    col = {sid: i for i, sid in enumerate(s.sensor_ids)}
    for o in log.outages:
        rows = slice(o.start_step, o.start_step + o.num_steps)
        if o.sensor_id is None:
            rebuilt[rows, :] = True
        else:
            rebuilt[rows, col[o.sensor_id]] = True
    np.testing.assert_array_equal(rebuilt, zero)
    kinds = {o.kind for o in log.outages}
    assert {"dropout", "outage"} <= kinds
    long = [o for o in log.outages if o.kind == "outage"]
    assert max(o.num_steps for o in long) >= 12           # multi-hour
    assert sum(o.num_steps <= 6 for o in log.outages if o.kind == "dropout") > 100


def test_no_missing_when_asked(net207):
    s = synth.simulate_speeds(net207, days=1, seed=3, missing_ratio=0.0)
    assert (s.values > 0).all()


def test_simulates_any_graph():
    """A bare graph (no coordinates, ids as keys) works too."""
    g = nx.path_graph(6, create_using=nx.DiGraph)
    s = synth.simulate_speeds(g, days=1, seed=0, incidents=[(3, 50, 6, 0.5)])
    assert s.shape == (288, 6, 1) and s.sensor_ids == [str(i) for i in range(6)]


# ============================================================ files
def test_write_synthetic(tmp_path):
    pytest.importorskip("stgraph.io", reason="stgraph.io")
    from stgraph import io as sio
    if not hasattr(sio, "write_series"):
        pytest.skip("stgraph.io.write_series not available yet")
    paths = synth.write_synthetic(tmp_path / "out", num_sensors=40, days=1, seed=3)
    assert set(paths) == {"data", "adj", "distances", "locations", "sensor_ids"}
    for p in paths.values():
        assert p.exists() and p.stat().st_size > 0
    assert paths["data"].name == "synthetic.h5"
    series, graph = synth.generate(40, days=1, seed=3)

    with open(paths["adj"], "rb") as f:
        obj = pickle.load(f)
    assert isinstance(obj, list) and len(obj) == 3
    ids, ind, w = obj
    assert isinstance(ids, list) and isinstance(ind, dict) and isinstance(w, np.ndarray)
    assert ids == series.sensor_ids
    assert ind == {s: i for i, s in enumerate(ids)}
    assert w.shape == (40, 40) and w.dtype == np.float32 and (np.diag(w) == 0).all()
    assert (w > 0).sum() == graph.number_of_edges()
    u, v, d = next(iter(graph.edges(data=True)))
    assert w[ind[u], ind[v]] == np.float32(d["weight"])

    with open(paths["distances"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["from", "to", "cost"]
    assert len(rows) == len(graph.graph["candidates"])
    assert all(float(r["cost"]) > 0 and r["from"] in ind and r["to"] in ind for r in rows)

    with open(paths["locations"], newline="") as f:
        loc = list(csv.DictReader(f))
    assert list(loc[0]) == ["index", "sensor_id", "latitude", "longitude"]
    assert [r["sensor_id"] for r in loc] == ids
    assert [int(r["index"]) for r in loc] == list(range(40))
    assert float(loc[0]["latitude"]) == pytest.approx(graph.nodes[ids[0]]["lat"], abs=1e-6)
    assert paths["sensor_ids"].read_text().strip().split(",") == ids

    if hasattr(sio, "read_series"):
        back = sio.read_series(paths["data"])
        assert back.sensor_ids == ids
        np.testing.assert_array_equal(back.timestamps, series.timestamps)
        np.testing.assert_array_equal(back.values[..., 0], series.values[..., 0])
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    df = pd.read_hdf(paths["data"])
    assert df.shape == (288, 40) and [str(c) for c in df.columns] == ids


def test_presets():
    assert synth.PRESETS["tiny"] == (50, 1)
    assert synth.PRESETS["metr-la"] == (207, 119)
    assert synth.preset("small") == {"num_sensors": 207, "days": 7}
    with pytest.raises(SeriesError):
        synth.preset("nope")
    s, g = synth.generate(**synth.preset("tiny"))
    assert s.shape == (288, 50, 1) and g.number_of_nodes() == 50


def test_metr_la_scale_is_fast():
    t = time.perf_counter()
    s, g = synth.generate(**synth.preset("metr-la"), seed=1)
    took = time.perf_counter() - t
    assert s.shape == (34272, 207, 1)
    assert s.timestamps[-1] == np.datetime64("2012-06-27T23:55")
    assert 0.02 < s.missing_ratio < 0.10
    assert took < 30, f"generating METR-LA scale took {took:.1f}s"


def test_daily_counts_file(tmp_path):
    """Daily counts per region (issue 23, small data): days x regions, one midnight stamp a day, whole
    counts with real zeros, a weekly rhythm, and the same file for the same seed."""
    from stgraph.io import read_series

    paths = synth.write_synthetic_counts(tmp_path / "a", num_sensors=100, days=60, interval="day")
    s = read_series(paths["data"])
    v = s.values[:, :, 0]
    assert s.shape == (60, 100, 1) and math.isnan(s.null_value)
    assert s.interval == np.timedelta64(1, "D")
    stamps = np.datetime_as_string(s.timestamps, unit="s")
    assert stamps[0] == "2012-03-05T00:00:00" and stamps[-1] == "2012-05-03T00:00:00"
    assert (v == np.round(v)).all() and v.min() == 0 and 0.02 < (v == 0).mean() < 0.3  # real zeros, whole counts
    small = v.mean(axis=0) < np.median(v.mean(axis=0))
    assert (v[:, small] == 0).mean() > 2 * (v[:, ~small] == 0).mean()  # the zeros are in small regions
    weekday = np.arange(60) % 7 < 5  # 2012-03-05 is a Monday
    assert v[~weekday].mean() < 0.6 * v[weekday].mean()  # weekly rhythm
    again = synth.write_synthetic_counts(tmp_path / "b", num_sensors=100, days=60, interval="day")
    assert again["data"].read_bytes() == paths["data"].read_bytes()
    other = synth.write_synthetic_counts(tmp_path / "c", num_sensors=100, days=60, interval="day", seed=1)
    assert other["data"].read_bytes() != paths["data"].read_bytes()
    with pytest.raises(SeriesError, match="interval is 'week'"):
        synth.write_synthetic_counts(tmp_path / "d", num_sensors=100, days=7, interval="week")
