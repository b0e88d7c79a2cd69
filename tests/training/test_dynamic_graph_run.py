"""Train / evaluate / predict with a graph that changes over time (--graph mobility.csv): the run re-reads it,
forecasts use each window's graph, and a dynamic graph that never changes gives the static run's numbers."""
import json

import numpy as np
import pytest
import torch

import stgraph
from stgraph.cli.main import main
from stgraph.forecast import forecast_at
from stgraph.synth.mobility import write_mobility

SET = {"data.input_len": 7, "data.horizon": 7, "model.params.residual_channels": 8, "model.params.dilation_channels": 8,
       "model.params.skip_channels": 16, "model.params.end_channels": 16, "train.batch_size": 16, "train.seed": 3}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return write_mobility(tmp_path_factory.mktemp("mob"), num_regions=8, days=120, seed=1)


def test_train_evaluate_predict_with_a_dynamic_graph(syn, tmp_path):
    run = stgraph.train(data=syn["data"], graph=syn["graph"], model="gwnet", out=tmp_path / "run", epochs=1,
                        overrides=SET)
    dyn = run.data.dynamic_graph
    assert dyn is not None and dyn.num_periods == 120 and dyn.step_period.tolist() == list(range(120))
    again = stgraph.open_run(tmp_path / "run")  # re-reads data.graph: the same dynamic graph
    assert again.config.data.graph == str(syn["graph"]) and torch.equal(again.data.dynamic_graph.ptr, dyn.ptr)
    mae = stgraph.evaluate(run, "test")["average"]["mae"]
    assert stgraph.evaluate(again, "test")["average"]["mae"] == pytest.approx(mae)
    # predict at a time = the forward of that window with the graph of its last input step
    start = int(again.data.split_starts("test")[0])
    end = start + 6
    fc = forecast_at(again, str(again.data.timestamps[end]))
    batch = again.data.batch(torch.tensor([start]))
    assert batch.graph.edge_index.shape[1] == int(dyn.ptr[end + 1] - dyn.ptr[end])
    with torch.no_grad():
        want = again.forecaster.in_units(again.forecaster.forward(batch))[0]
        static = again.forecaster.in_units(again.model(batch.x, again.graph, batch.covariates))[0]
    assert np.allclose(fc.mean, want.numpy(), atol=1e-4)
    assert not np.allclose(fc.mean, static.numpy(), atol=1e-4)  # not the run's mean graph


def test_a_dynamic_graph_that_never_changes_gives_the_static_numbers(syn, tmp_path):
    lines = open(syn["mean_graph"]).read().splitlines()[1:]
    const = tmp_path / "const.csv"  # one period from the first day: the mean graph at every step
    const.write_text("timestamp,source,target,weight\n" + "".join(f"2012-03-05,{ln}\n" for ln in lines))
    a = stgraph.train(data=syn["data"], graph=syn["mean_graph"], model="gwnet", epochs=2, overrides=SET)
    b = stgraph.train(data=syn["data"], graph=const, model="gwnet", epochs=2, overrides=SET)
    assert a.data.dynamic_graph is None and b.data.dynamic_graph is not None
    ma, mb = stgraph.evaluate(a, "test"), stgraph.evaluate(b, "test")
    for h in ma["horizons"]:
        assert mb["horizons"][h]["mae"] == pytest.approx(ma["horizons"][h]["mae"], rel=1e-4)


def test_cli_synth_and_graph_info(tmp_path, capsys):
    assert main(["data", "synth", "--kind", "daily", "--dynamic-graph", "--sensors", "8", "--days", "30",
                 "--out", str(tmp_path / "s"), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert main(["graph", "info", paths["graph"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dynamic"] and info["periods"] == 30 and info["nodes"] == 8 and 0 < info["churn"] < 1
    assert info["edges_per_period"]["min"] <= info["edges_per_period"]["mean"] <= info["edges_per_period"]["max"]


@pytest.mark.parametrize("model, params", [("stgt", {"model.params.hidden": 8, "model.params.heads": 2}),
                                           ("gwnet", {}), ("dcrnn", {"model.params.hidden": 8}),
                                           ("stgcn", {"model.params.kernel_size": 2, "model.params.blocks": 1})])
def test_a_static_graph_takes_none_of_the_per_window_code(syn, monkeypatch, model, params):
    """Static runs keep their path: batches carry no graph and the models call nothing of the per-window code, so
    their cost and numbers are those from before dynamic graphs."""
    import stgraph.models.dcrnn
    import stgraph.models.gwnet
    import stgraph.models.stgcn
    import stgraph.models.stgt
    from stgraph.graph.dynamic import DynamicGraph

    def boom(*a, **k):
        raise AssertionError("per-window code on a static graph")

    for mod, names in ((stgraph.models.stgt, ("fold", "unfold")), (stgraph.models.gwnet, ("window_operators",)),
                       (stgraph.models.dcrnn, ("window_operators",)), (stgraph.models.stgcn, ("window_laplacian",)),
                       (DynamicGraph, ("window_graphs", "period_graphs"))):
        for name in names:
            monkeypatch.setattr(mod, name, boom)
    small = {k: v for k, v in SET.items() if not k.startswith("model.params")}
    run = stgraph.train(data=syn["data"], graph=syn["mean_graph"], model=model, epochs=1, overrides={**small, **params})
    assert run.data.dynamic_graph is None and run.data.batch(torch.tensor([0])).graph is None
    assert np.isfinite(stgraph.evaluate(run, "test", write=False)["average"]["mae"])


def test_stgt_predict_with_a_dynamic_graph(syn, tmp_path, capsys):
    """stgraph predict forecasts under torch.inference_mode, where the window's graph is made of inference
    tensors (no version counter): stgt's attention must take it uncached (it failed with 'Inference tensors do
    not track version counter'), and the forecast equals the forward of that window with its graph."""
    run = stgraph.train(data=syn["data"], graph=syn["graph"], model="stgt", out=tmp_path / "run", epochs=1,
                        overrides={"data.input_len": 7, "data.horizon": 7, "model.params.hidden": 8,
                                   "model.params.heads": 2, "train.batch_size": 16, "train.seed": 3})
    out = tmp_path / "fc.csv"
    assert main(["predict", str(tmp_path / "run"), "--out", str(out)]) == 0, capsys.readouterr().err[-1500:]
    rows = out.read_text().splitlines()
    assert rows[0].startswith("timestamp,sensor_id,horizon") and len(rows) == 1 + 8 * 7
    start = int(run.data.split_starts("test")[0])
    with torch.inference_mode():
        fc = forecast_at(run, str(run.data.timestamps[start + 6]))
        fc2 = forecast_at(run, str(run.data.timestamps[start + 6]))  # twice: nothing cached from the first
    batch = run.data.batch(torch.tensor([start]))
    with torch.no_grad():
        want = run.forecaster.in_units(run.forecaster.forward(batch))[0]
    assert np.allclose(fc.mean, want.numpy(), atol=1e-4) and np.array_equal(fc.mean, fc2.mean)
    # plot's spatial attention reads each test window's own graph: a pair is drawn where one of them has it
    from stgraph.plot import attention_sample
    sp = attention_sample(run)["spatial"]
    test16 = run.data.split_starts("test")[:16] + 6                      # the first test batch's last input steps
    pairs = set()
    for p in run.data.dynamic_graph.step_period[test16].tolist():
        ei, _ = run.data.dynamic_graph.period(p)
        pairs |= set(zip(ei[1].tolist(), ei[0].tolist()))
    drawn = {tuple(ix) for ix in np.argwhere(np.isfinite(sp))}
    loops = {(i, i) for i in range(sp.shape[0])}
    mean_ei, _ = run.data.dynamic_graph.mean_graph()
    assert set(zip(mean_ei[1].tolist(), mean_ei[0].tolist())) - loops - pairs    # the mean graph has more pairs
    assert drawn - loops == pairs - loops and all(0 < sp[i] <= 1 for i in drawn)


def test_a_dynamic_graph_with_the_same_mean_but_other_periods_is_told_apart(syn, tmp_path):
    from stgraph.errors import RunDirError
    graph = tmp_path / "mobility.csv"
    lines = open(syn["graph"]).read().splitlines()
    graph.write_text("\n".join(lines) + "\n")
    stgraph.train(data=syn["data"], graph=graph, model="gwnet", out=tmp_path / "run", epochs=1, overrides=SET)
    days = sorted({ln.split(",")[0] for ln in lines[1:]})
    a, b = days[10], days[11]               # two days' graphs swapped: every pair's mean weight is the same
    swap = {a: b, b: a}
    graph.write_text("\n".join([lines[0]] + sorted((",".join([swap.get(t, t)] + rest) for t, *rest in
                                                     (ln.split(",") for ln in lines[1:])), key=lambda r: r[:10]))
                     + "\n")
    with pytest.raises(RunDirError, match=r"mobility.csv changed since"):
        stgraph.open_run(tmp_path / "run")
    graph.write_text("\n".join(lines) + "\n")
    assert stgraph.open_run(tmp_path / "run").data.dynamic_graph.num_periods == 120


def test_update_a_dynamic_graph_run_on_new_days_with_replay(syn, tmp_path):
    lines = open(syn["data"]).read().splitlines()
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text("\n".join(lines[:81]) + "\n")                 # days 1-80
    new.write_text("\n".join([lines[0]] + lines[81:]) + "\n")    # days 81-120
    stgraph.train(data=old, graph=syn["graph"], model="stgcn", out=tmp_path / "run", epochs=1,
                  overrides={k: v for k, v in SET.items() if k.startswith(("data.", "train."))}
                  | {"model.params.channels": [8, 4, 8], "model.params.blocks": 1})
    info = stgraph.update(tmp_path / "run", new, out=tmp_path / "run1", weeks=0, epochs=1, replay=0.5,
                          progress=False)
    again = stgraph.open_run(tmp_path / "run1")
    dyn = again.data.dynamic_graph
    assert dyn.num_periods == 120 and again.data.timestamps[0] == np.datetime64(lines[81].split(",")[0])
    assert np.isfinite(stgraph.evaluate(again, "test")["average"]["mae"]) and info


def test_window_graphs_join_shifts_the_second_batch_and_keeps_periods_of_one_graph(syn):
    from stgraph.graph.dynamic import read_dynamic_graph
    ids = open(syn["data"]).readline().strip().split(",")[1:]
    dyn = read_dynamic_graph(syn["graph"], ids)
    assert read_dynamic_graph(syn["graph"], ids).key == dyn.key     # the same file: the same key
    a, b = dyn.period_graphs(torch.tensor([3, 5])), dyn.period_graphs(torch.tensor([7]))
    j = a.join(b)
    assert j.num_windows == 3 and j.periods.tolist() == [3, 5, 7] and j.key == dyn.key
    ei, w = j.window(2)
    e7, w7 = dyn.period(7)
    assert torch.equal(ei, e7) and torch.equal(w, w7)
    other = replace_key(b, "another")
    assert a.join(other).periods is None and a.join(other).key is None


def replace_key(wg, key):
    from dataclasses import replace
    return replace(wg, key=key)
