"""Issue 27's ceilings: the cross-modal bench's parsed-words and truth files, and pooling its tables over seeds."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_cross_modal import table  # noqa: E402
from benchmarks.cross_modal_oracles import parsed_files, truth_files  # noqa: E402
from benchmarks.pool_cross_modal import change, seed_rows  # noqa: E402


def read(path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", skip_header=1)[:, 1:]


@pytest.fixture(scope="module")
def one_incident():
    """A 6-sensor network, 1 day, one given incident (no random ones) at the first sensor: start step 100,
    12 steps (60 min), severity 0.7 (a 'major' report)."""
    from stgraph.synth import make_road_network, simulate_speeds

    graph = make_road_network(6, 0)
    ids = [str(graph.nodes[v].get("sensor_id", v)) for v in graph.nodes]
    series, log = simulate_speeds(graph, days=1, seed=0, incident_rate=0.0, missing_ratio=0.0,
                                  incidents=[(ids[0], 100, 12, 0.7)], return_log=True)
    return graph, series, log


def test_truth_is_the_future_drop_of_started_incidents_only(one_incident, tmp_path):
    from stgraph.synth.disruptions import incident_drop
    from stgraph.synth.layout import node_order
    from stgraph.synth.roads import road_graph, road_predecessors

    graph, series, log = one_incident
    assert log.hop_decay.tolist() == [0.7]          # a given incident: the documented decay
    f15, f30, f60 = truth_files(tmp_path, series, graph, log)
    nodes = node_order(graph)
    against = road_graph(road_predecessors(graph, nodes)).reverse(copy=False)
    pos = {s: i for i, s in enumerate(series.sensor_ids)}
    drop = incident_drop(log.incidents, log.hop_decay, against, pos, series.num_steps, len(nodes), 5.0, 8.0)
    for f, k in ((f15, 3), (f30, 6), (f60, 12)):
        got = read(f)
        assert got.shape == (288, 6) and Path(f).name == f"truth_{5 * k}.csv"
        assert not got[:100].any()                                    # before it starts, nothing is known
        np.testing.assert_allclose(got[100:288 - k], drop[100 + k:], atol=6e-5)   # then its drop k steps on
    col = pos[series.sensor_ids[0]]
    assert read(f15)[100, col] == pytest.approx(drop[103, col], abs=6e-5) and drop[103, col] > 0.5


def test_parsed_words_say_the_grade_band_and_the_stated_minutes_left(one_incident, tmp_path):
    from stgraph.synth.reports import incident_reports

    graph, series, log = one_incident
    sev, left = (read(f) for f in parsed_files(tmp_path, series, graph, log, seed=0))
    (when, sensor, _, _, _, text), = incident_reports(log.incidents, series.timestamps, 5.0, 0)
    assert "major" in text.lower() or "closed" in text or "all lanes" in text
    stated = int("".join(c for c in text.split(",")[-1] if c.isdigit()))      # 'expect 60 minutes' -> 60
    a = int(np.searchsorted(series.timestamps, when))                        # first step at or after it
    col = list(series.sensor_ids).index(sensor)
    assert not sev[:a].any() and not left[:a].any()
    assert sev[a, col] == pytest.approx(0.675)                                 # 'major': the band's middle
    minutes = (when + np.timedelta64(stated, "m") - series.timestamps[a]) / np.timedelta64(1, "m")
    assert left[a, col] == pytest.approx(minutes) and left[a + 1, col] == pytest.approx(minutes - 5)
    reached = np.flatnonzero(sev[a])
    assert set(sev[a, reached].round(4)) <= {0.675, round(0.675 * 0.7, 4), round(0.675 * 0.49, 4)}   # 2 hops


def test_pooled_tables_average_the_seeds(tmp_path):
    def scores(x):
        return {g: [x, 2 * x, 3 * x] for g in ("all", "affected", "foreseeable", "unforeseeable", "unaffected")} | {
            "seconds": 1.0, "peak_mb": 2.0}

    text = "\n".join(["", "Seed 4 alone:", ""] + table({"flags": scores(1.0), "flags + text": scores(0.8)})
                     + ["", "Seed 5 alone:", ""] + table({"flags": scores(2.0), "flags + text": scores(1.0)}))
    rows = seed_rows(text, "t.md")
    assert rows[4]["flags + text"][:3] == [0.8, 1.6, 2.4] and rows[5]["flags"][3] == 2.0
    mean = {v: np.mean([rows[s][v] for s in rows], 0).tolist() for v in ("flags", "flags + text")}
    assert change(mean)["flags + text"][0] == pytest.approx(100 * (0.9 / 1.5 - 1))        # -40 %
    with pytest.raises(ValueError, match="no 'Seed S alone' table"):
        seed_rows("# some other table\n", "other.md")
