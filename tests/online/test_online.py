"""Online adaptation and drift (issue 17): stgraph update, stgraph drift, a lane closure change point."""
import json

import numpy as np
import pytest
import torch

from stgraph.config import RunConfig, with_fields
from stgraph.errors import ConfigError
from stgraph.io import read_series, write_series
from stgraph.io.series import Series
from stgraph.models.registry import build_model
from stgraph.online import remap_nodes, update_run
from stgraph.online.drift import flag_sensors, rolling_errors
from stgraph.synth.events import lane_closure
from stgraph.training.axes import sensor_axes
from stgraph.training.checkpoint import load_checkpoint
from stgraph.training.run import load_run, train

D = 288  # 5-minute steps a day


def test_remap_nodes_keeps_known_sensors_by_id():
    sizes = dict(in_channels=1, out_channels=1, input_len=4, horizon=3)
    params = {"hidden": 8, "heads": 2}
    axes = sensor_axes("stgt", sizes, params)
    torch.manual_seed(0)
    old = build_model("stgt", {**sizes, "num_nodes": 3}, params)
    new = build_model("stgt", {**sizes, "num_nodes": 3}, params)
    fresh = new.state_dict()["embed.node.weight"].clone()
    # the run had a, b, c; the new file has c, a, z (b dropped, z new, order changed)
    state = remap_nodes(old.state_dict(), new, ["a", "b", "c"], ["c", "a", "z"], axes)
    w_old, w = old.state_dict()["embed.node.weight"], state["embed.node.weight"]
    assert torch.equal(w[0], w_old[2]) and torch.equal(w[1], w_old[0]) and torch.equal(w[2], fresh[2])
    assert torch.equal(state["pos_in"], old.state_dict()["pos_in"])  # not sensor-indexed: carried as is
    bigger = build_model("stgt", {**sizes, "num_nodes": 4}, params)
    assert remap_nodes(old.state_dict(), bigger, ["a", "b", "c"], ["a", "b", "c", "d"], axes)["embed.node.weight"].shape == (4, 8)


def test_remap_nodes_maps_every_sensor_axis():
    """A sensor-by-sensor tensor [N, N]: rows and columns of a kept sensor are copied, those of a new one fresh."""
    class Pairs(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.pair = torch.nn.Parameter(torch.full((n, n), -1.0))

    old = Pairs(3)
    with torch.no_grad():
        old.pair.copy_(torch.arange(9.0).view(3, 3))
    new = Pairs(3)
    w = remap_nodes(old.state_dict(), new, ["a", "b", "c"], ["c", "a", "z"], {"pair": [0, 1]})["pair"]
    assert w[:2, :2].tolist() == [[8, 6], [2, 0]]  # (c, c), (c, a), (a, c), (a, a)
    assert (w[2] == -1).all() and (w[:, 2] == -1).all()
    with pytest.raises(ConfigError, match="cannot carry 'pair' over"):
        remap_nodes(old.state_dict(), Pairs(4), ["a", "b", "c"], ["c", "a", "z", "y"], {})
    # VAR's weights follow the sensors on both axes, as blocks of lags and steps: not carried to other sensors
    sizes = dict(in_channels=1, out_channels=1, input_len=4, horizon=3)
    axes = sensor_axes("var", sizes, {})
    assert axes == {"weight": [0, 1], "bias": [0]}
    var = build_model("var", {**sizes, "num_nodes": 3}, {})
    with pytest.raises(ConfigError, match="cannot carry 'weight' over"):
        remap_nodes(var.state_dict(), build_model("var", {**sizes, "num_nodes": 3}, {}), ["a", "b", "c"],
                    ["c", "a", "z"], axes)


def _probe(name: str, sizes: dict, params: dict) -> dict:
    """The axes that change between real models built for 3 and for 4 sensors (the federation's old probe)."""
    a = build_model(name, {**sizes, "num_nodes": 3}, params).state_dict()
    b = build_model(name, {**sizes, "num_nodes": 4}, params).state_dict()
    return {k: [d for d, (x, y) in enumerate(zip(a[k].shape, b[k].shape)) if x != y]
            for k in a if a[k].shape != b[k].shape}


def test_sensor_axes_equal_the_probe_for_every_registry_model():
    from stgraph.data import ForecastData
    from stgraph.models.blend import blend_params
    from stgraph.models.registry import available_models
    from stgraph.synth import generate as synth_generate
    from stgraph.training.prepare import model_sizes

    series, _ = synth_generate(8, days=2, seed=0)
    data = ForecastData.from_series(series, input_len=12, horizon=12)
    sizes = model_sizes(data, False)
    params = {"blend": blend_params([("stgt", {"hidden": 8, "heads": 2}), ("var", {})], [[0.5] * 12, [0.5] * 12])}
    for name in available_models():
        rng = torch.get_rng_state()
        axes = sensor_axes(name, sizes, params.get(name, {}))
        assert torch.equal(rng, torch.get_rng_state()), name  # no random draw: built on the meta device
        assert axes == _probe(name, sizes, params.get(name, {})), name
    assert sensor_axes("stgt", sizes, {}) == {"embed.node.weight": [0]}
    probabilistic = model_sizes(data, True)
    assert sensor_axes("stgt", probabilistic, {}) == _probe("stgt", probabilistic, {})


def test_flag_sensors_ignores_a_network_wide_rise():
    base = np.array([2.0, 2.0, 3.0, 2.5])
    errors = np.stack([base, base, base * 1.3, base * 1.3])  # every sensor 30 % worse: weather, not drift
    assert not flag_sensors(errors, 2, 2).get("flagged").any()
    errors[2:, 1] += 2.0  # sensor 1 jumps by a typical sensor's whole error
    f = flag_sensors(errors, 2, 2)
    assert f["flagged"].tolist() == [False, True, False, False] and f["first"][1] == 2
    with pytest.raises(ConfigError, match="4 period"):
        flag_sensors(errors, 3, 2)


def _slice(series, a, b, path):
    s = Series(series.values[a * D:b * D], series.timestamps[a * D:b * D], series.sensor_ids, series.channels,
               series.null_value)
    write_series(s, path, layout="pandas")
    return str(path)


def test_update_recovers_after_a_lane_closure_frozen_does_not_and_drift_flags_it(tmp_path, capsys):
    """12 sensors, 21 days (no random incidents); a lane closure on 3 sensors at day 12. The run is trained on days 0-11;
    the update sees days 10-17 (its training split reaches day 15.6: under 4 days after the change);
    both are scored on days 18-20, which neither saw."""
    from stgraph.synth import write_synthetic

    paths = write_synthetic(tmp_path / "syn", num_sensors=12, days=21, seed=1, incident_rate=0.0)
    s = read_series(paths["data"])
    hit = [s.sensor_ids[i] for i in (2, 5, 9)]
    s = lane_closure(s, hit, 12 * D)
    before, new, later, watch = (_slice(s, a, b, tmp_path / f"{n}.h5") for a, b, n in
                                 ((0, 12, "before"), (10, 18, "new"), (18, 21, "later"), (10, 21, "watch")))
    cfg = with_fields(RunConfig(), {
        "data.path": before, "data.graph": str(paths["adj"]), "data.stride": 2,
        "model.params": dict(hidden=16, heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0, residual="last"),
        "train.epochs": 3, "train.batch_size": 32, "train.lr": 3e-3, "train.progress": False, "train.threads": 1,
        "train.seed": 0, "train.patience": 0, "train.device": "cpu"})
    train(cfg, tmp_path / "run")
    _, summary = update_run(tmp_path / "run", new, tmp_path / "run-new", weeks=0, lr_scale=0.5, epochs=4,
                            replay=0.25, progress=False)

    info = json.loads((tmp_path / "run-new" / "run.json").read_text())
    assert info["lineage"][0]["run"] == str((tmp_path / "run").resolve()) and info["lineage"][0]["data"] == new
    assert summary["update_windows"] > 0 and summary["replay_share"] == 0.25
    ck_old = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    ck_new = load_checkpoint(tmp_path / "run-new" / "checkpoints" / "best.pt")
    assert ck_new["scaler"] == ck_old["scaler"]  # the run's scaler is kept, not refitted

    idx = [s.sensor_ids.index(h) for h in hit]
    _, e_pre, _ = rolling_errors(load_run(tmp_path / "run"))
    pre = np.nanmean(e_pre[-2:, idx])  # the hit sensors' error before the change (the run's last two days)
    frozen = np.nanmean(rolling_errors(load_run(tmp_path / "run", data_path=later))[1][:, idx])
    updated = np.nanmean(rolling_errors(load_run(tmp_path / "run-new", data_path=later))[1][:, idx])
    assert updated < 1.1 * pre, (pre, frozen, updated)  # recovered within 4 days of data after the change
    assert frozen > 1.3 * pre and updated < 0.7 * frozen, (pre, frozen, updated)  # the frozen run did not
    from stgraph.cli.main import main

    capsys.readouterr()
    assert main(["drift", str(tmp_path / "run"), "--data", watch, "--out", str(tmp_path / "drift"), "--recent", "3",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["flagged"]) == sorted(hit)
    assert (tmp_path / "drift" / "drift.png").stat().st_size > 0
    rows = (tmp_path / "drift" / "drift.csv").read_text().splitlines()
    assert rows[0].startswith("sensor_id,baseline_mae") and {r.split(",")[0] for r in rows[1:4]} == set(hit)


def test_drift_on_daily_data_starts_at_the_first_forecast_origin(tmp_path):
    import stgraph
    from stgraph.online.drift import rolling_errors
    days = np.datetime64("2012-03-05") + np.arange(60)
    rng = np.random.default_rng(0)
    vals = 50 + 10 * np.sin(np.arange(60)[:, None] * 2 * np.pi / 7) + rng.normal(0, 1, (60, 4))
    p = tmp_path / "daily.csv"
    p.write_text("timestamp,a,b,c,d\n" + "".join(f"{d},{','.join(f'{v:.2f}' for v in row)}\n"
                                                for d, row in zip(days, vals)))
    run = stgraph.train(data=p, model="stid", epochs=1, overrides={"data.input_len": 7, "data.horizon": 7,
                                                                   "train.batch_size": 8}, progress=False)
    starts, errors, counts = rolling_errors(run)
    assert starts[0] == np.datetime64("2012-03-11")           # the first origin: day 7 (input 7 days)
    assert len(starts) == 60 - 7 - 7 + 1 and (counts > 0).all() and np.isfinite(errors).all()
