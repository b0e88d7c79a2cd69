"""Federated training on Flower: partitions, what travels, aggregation, the simulation and the gRPC round trip."""
import csv
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stgraph.cli.main import main
from stgraph.errors import DataFormatError
from stgraph.federated.partition import cut_edges, partition_sensors, read_partition, write_partition

pytest.importorskip("flwr")
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--set", "model.params.hidden=16", "--set", "model.params.heads=2", "--set", "model.params.encoder_layers=1",
         "--set", "train.batch_size=16", "--set", "train.max_batches=2", "--set", "train.device=cpu"]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """A 16-sensor, 2-day synthetic road network (series, adj pickle, locations)."""
    from stgraph.synth import write_synthetic
    return write_synthetic(tmp_path_factory.mktemp("fed_synth"), num_sensors=16, days=2, seed=5)


def _graph_and_coords(net):
    from stgraph.graph import read_graph, read_locations
    from stgraph.io import read_series
    ids = read_series(net["data"]).sensor_ids
    g = read_graph(net["adj"], sensor_ids=ids)
    lid, lat, lon = read_locations(net["locations"])
    pos = {s: i for i, s in enumerate(lid)}
    return ids, g, np.array([[lat[pos[s]], lon[pos[s]]] for s in ids])


# ----------------------------------------------------------------------------------------------- partitions
def test_partitions_reproducible_cover_every_client_and_metis_cuts_fewer_links(net):
    ids, g, coords = _graph_and_coords(net)
    cuts = {}
    for method in ("by-region", "metis", "random"):
        a = partition_sensors(method, ids, 3, graph=g, coords=coords, seed=7)
        b = partition_sensors(method, ids, 3, graph=g, coords=coords, seed=7)
        assert a.shape == (16,) and np.array_equal(a, b)
        assert sorted(set(a.tolist())) == [0, 1, 2] and a[0] == 0
        cuts[method] = cut_edges(g, ids, a)
    sizes = np.bincount(partition_sensors("metis", ids, 3, graph=g, seed=7))
    assert sizes.max() - sizes.min() <= 2  # balanced
    assert cuts["metis"] <= cuts["random"]
    # by-region: every sensor is nearer its own region's centre than any other region's
    lab = partition_sensors("by-region", ids, 3, coords=coords, seed=7)
    pts = np.stack([coords[:, 0], coords[:, 1] * np.cos(np.deg2rad(coords[:, 0].mean()))], 1)
    centres = np.stack([pts[lab == c].mean(0) for c in range(3)])
    assert np.array_equal(((pts[:, None] - centres[None]) ** 2).sum(-1).argmin(1), lab)


def test_metis_fallback_without_pymetis_is_balanced(net, monkeypatch):
    ids, g, _ = _graph_and_coords(net)
    monkeypatch.setitem(sys.modules, "pymetis", None)  # import fails -> Kernighan-Lin bisection
    lab = partition_sensors("metis", ids, 3, graph=g, seed=1)
    assert sorted(np.bincount(lab).tolist()) == [5, 5, 6]
    assert cut_edges(g, ids, lab) <= cut_edges(g, ids, partition_sensors("random", ids, 3, seed=1))


def test_partition_file_round_trip_and_errors(tmp_path):
    ids = ["a", "b", "c", "d"]
    p = write_partition(tmp_path / "p.csv", ids, np.array([1, 0, 1, 0]))
    assert read_partition(p, ids, 2).tolist() == [1, 0, 1, 0]
    bad = tmp_path / "bad.csv"
    bad.write_text("sensor_id,client\na,0\nb,x\n")
    with pytest.raises(DataFormatError, match=r"bad.csv.*line 3, column 'client': 'x'"):
        read_partition(bad, ids)
    bad.write_text("sensor_id,client\na,0\nb,1\nc,1\n")
    with pytest.raises(DataFormatError, match=r"1 sensor\(s\) of the series have no client.*'d'"):
        read_partition(bad, ids)
    bad.write_text("sensor_id,client\na,0\nb,2\nc,2\nd,0\n")
    with pytest.raises(DataFormatError, match=r"client ids found \[0, 2\]; expected every client 0..2"):
        read_partition(bad, ids, 3)


# ----------------------------------------------------------------------------------------------- layers
def test_stgt_sensor_embeddings_are_personal_and_nothing_else():
    from stgraph.federated.personal import personal_keys
    sizes = dict(num_nodes=5, in_channels=1, out_channels=1, input_len=12, horizon=12, steps_per_day=288,
                 target_channels=(0,), probabilistic=False)
    params = {"hidden": 16, "heads": 2}
    assert personal_keys("stgt", sizes, params) == ["embed.node.weight"]
    assert personal_keys("stgt", sizes, params, ["^head_out\\."]) == ["embed.node.weight", "head_out.bias",
                                                                      "head_out.weight"]


def test_fedprox_loss_adds_the_proximal_term_on_shared_weights(net):
    """A client's FedProx is the trainer's loss term (stgraph.training.losses.FedProx): the masked loss plus
    mu / 2 * ||w - w_global||^2 over the anchored (shared) weights only."""
    from stgraph.config import RunConfig, with_fields
    from stgraph.training.forecaster import Forecaster
    from stgraph.training.losses import FedProx, masked_loss
    from stgraph.training.run import make_model, prepare
    from stgraph.training.trainer import Trainer
    cfg = with_fields(RunConfig(), {"data.path": str(net["data"]), "data.graph": str(net["adj"]),
                                    "model.params": {"hidden": 16, "heads": 2, "encoder_layers": 1},
                                    "train.device": "cpu"})
    prep = prepare(cfg)
    model = make_model(cfg, prep.data)
    anchors = {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("head_fc.")}
    forecaster = Forecaster(model, prep.data, prep.graph, cfg.train)
    tr = Trainer(forecaster, cfg.train, loss=FedProx(model, anchors, mu=0.5))
    with torch.no_grad():
        model.head_fc.weight.add_(0.1)
    batch = next(iter(prep.data.loader("train", 4)))
    out = model(batch.x, prep.graph, batch.covariates)
    plain = masked_loss(forecaster, out, batch.y)
    expected = plain + 0.5 * 0.5 * (0.1 ** 2) * model.head_fc.weight.numel()
    assert torch.allclose(tr.loss(out, batch.y), expected, rtol=1e-5)
    assert torch.equal(Trainer(forecaster, cfg.train).loss(out, batch.y), plain)  # mu = 0: FedAvg's loss


# ----------------------------------------------------------------------------------------------- gRPC round trip
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _updates(client_dir: Path, r: int):
    z = np.load(client_dir / "updates" / f"round_{r:03d}.npz")
    keys = sorted(k for k in z.files if k.startswith("p"))
    return [z[k] for k in keys], int(z["num_examples"])


def test_grpc_server_and_two_clients_on_localhost(net, tmp_path):
    out = tmp_path / "fed"
    port = _free_port()
    common = ["--clients", "2", "--rounds", "2", "--out", str(out), "--record"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "stgraph.cli.main", "federated"]
    server = subprocess.Popen(cli + ["server", *common, "--address", f"127.0.0.1:{port}", "--round-timeout", "60"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    clients = [subprocess.Popen(cli + ["client", *common, "--partition-id", str(i), "--address", f"127.0.0.1:{port}",
                                       "--max-wait", "60", "--data", str(net["data"]), "--graph", str(net["adj"]),
                                       "--partition", "random", *SMALL, *(["--local-blend"] if i else [])],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]  # client 1 also blends a local model after the rounds; client 0 does not
    logs = []
    try:
        for p in [server, *clients]:
            logs.append(p.communicate(timeout=150)[0])
    finally:
        for p in [server, *clients]:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in [server, *clients]] == [0, 0, 0], "\n".join(x[-2000:] for x in logs)
    assert "server finished 2 round(s)" in logs[0]
    assert "client 1: blended its federated and local models" in logs[2]
    assert (out / "client_1" / "blend" / "config.yaml").is_file() and not (out / "client_0" / "blend").exists()

    rows = list(csv.DictReader((out / "server" / "rounds.csv").open()))
    assert [(r["round"], r["client"]) for r in rows] == [("1", "0"), ("1", "1"), ("1", "global"),
                                                          ("2", "0"), ("2", "1"), ("2", "global")]
    cdirs = [out / "client_0", out / "client_1"]
    for r in (1, 2):
        sent = [_updates(d, r) for d in cdirs]
        n = np.array([s[1] for s in sent], dtype=np.float64)
        glob = np.load(out / "server" / "rounds" / f"round_{r:03d}.npz")
        assert len(glob.files) == len(sent[0][0])
        for i, key in enumerate(sorted(glob.files)):
            by_hand = sum(n[c] * sent[c][0][i].astype(np.float64) for c in range(2)) / n.sum()
            np.testing.assert_allclose(glob[key], by_hand, rtol=1e-5, atol=1e-6)
        # the bytes logged are the arrays the clients sent
        up = sum(int(x["uplink_bytes"]) for x in rows if x["round"] == str(r) and x["client"] != "global")
        assert up >= sum(a.nbytes for s in sent for a in s[0])
    # what travelled: only shared weights, none shaped by sensors or time steps; never the series
    from stgraph.io import read_series
    raw = read_series(net["data"]).values
    info = [json.loads((d / "client.json").read_text()) for d in cdirs]
    arrays, _ = _updates(cdirs[0], 2)
    state0 = torch.load(cdirs[0] / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert "embed.node.weight" in state0 and all(a.shape != tuple(state0["embed.node.weight"].shape) for a in arrays)
    assert all(raw.shape[0] not in a.shape and a.size != raw.size for a in arrays)
    assert sum(a.size for a in arrays) == sum(v.numel() for k, v in state0.items()
                                              if k != "embed.node.weight" and v.is_floating_point())
    # personalised layers are not averaged: each client keeps its own embeddings, the shared weights agree
    state1 = torch.load(cdirs[1] / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert state0["embed.node.weight"].shape[0] == len(info[0]["own_sensors"])
    assert state1["embed.node.weight"].shape[0] == len(info[1]["own_sensors"])
    glob = np.load(out / "server" / "rounds" / "round_002.npz")
    keys = sorted(k for k, v in state0.items() if k != "embed.node.weight" and v.is_floating_point())
    for i, k in enumerate(keys):
        np.testing.assert_array_equal(state0[k].numpy(), glob[f"p{i:04d}"])
        np.testing.assert_array_equal(state1[k].numpy(), glob[f"p{i:04d}"])


# ----------------------------------------------------------------------------------------------- simulation
def test_simulate_writes_runs_that_evaluate(net, tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["federated", "simulate", "--data", str(net["data"]), "--graph", str(net["adj"]), "--clients", "2",
               "--partition", "by-region", "--rounds", "2", "--local-epochs", "1", "--finetune-epochs", "1",
               "--local-blend", "--out", str(out), "--json", *SMALL])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    summary = json.loads(captured.out.strip().splitlines()[-1])
    # each client trained a local model (2 rounds x 1 epoch) and blended it with its fine-tuned one
    assert len(summary["blend"]) == 2
    for c, b in enumerate(summary["blend"]):
        assert json.loads((out / f"client_{c}" / "local" / "train_summary.json").read_text())["epochs"] == 2
        assert b["val_mae"] <= min(b["val_mae_federated"], b["val_mae_local"]) + 1e-6
        assert json.loads((out / f"client_{c}" / "blend.json").read_text())["weights_local"] == b["weights_local"]
    # each client fine-tuned one epoch on its own data afterwards; best.pt is never worse on validation
    assert [t["epochs"] for t in summary["finetune"]] == [1, 1]
    assert all(t["val_mae"] <= t["val_mae_federated"] for t in summary["finetune"])
    assert all((out / f"client_{c}" / "checkpoints" / "federated.pt").is_file() for c in range(2))
    assert summary["rounds"] == 2 and summary["clients"] == 2 and sum(summary["sensors_per_client"]) == 16
    assert summary["uplink_bytes_per_round"] > 0 and summary["engine"].startswith("flwr ")
    rows = [r for r in csv.DictReader((out / "server" / "rounds.csv").open()) if r["client"] == "global"]
    assert len(rows) == 2 and all(float(r["val_mae"]) > 0 for r in rows)
    # the global val MAE is the clients' MAE weighted by validation windows x own sensors
    per = [r for r in csv.DictReader((out / "server" / "rounds.csv").open()) if r["round"] == "2"]
    sizes = summary["sensors_per_client"]
    want = sum(float(per[c]["val_mae"]) * sizes[c] for c in range(2)) / sum(sizes)
    assert float(per[2]["val_mae"]) == pytest.approx(want, rel=1e-5)

    # client runs and the assembled global run are ordinary runs
    for run in ("client_0", "client_1", "global", "client_0/blend"):
        rc = main(["evaluate", str(out / run), "--json"])
        res = json.loads(capsys.readouterr().out)
        assert rc == 0 and set(res["horizons"]) == {"3", "6", "12"}
    g = torch.load(out / "global" / "checkpoints" / "best.pt", weights_only=True)["model"]
    ids = json.loads((out / "global" / "run.json").read_text())["sensor_ids"]
    for c in range(2):
        cl = torch.load(out / f"client_{c}" / "checkpoints" / "last.pt", weights_only=True)["model"]
        own = json.loads((out / f"client_{c}" / "client.json").read_text())["own_sensors"]
        rows_g = g["embed.node.weight"][[ids.index(s) for s in own]]
        assert torch.equal(rows_g, cl["embed.node.weight"][: len(own)])
    # a second simulate into the same folder is refused
    assert main(["federated", "simulate", "--data", str(net["data"]), "--out", str(out)]) == 2
    assert "already holds a federated run" in capsys.readouterr().err
    # the federation read back from Python: its summary and the global row of each round
    from stgraph.federated.simulation import Federation
    fed = Federation.read(out)
    assert fed.summary == summary and [r["round"] for r in fed.history] == [1, 2]
    assert [r["val_mae"] for r in fed.history] == [float(r["val_mae"]) for r in rows]
    assert fed.open_client(1).config.data.path == str((out / "client_1" / "data" / "series.h5").resolve())


def test_python_simulate_checks_its_arguments_before_writing(net, tmp_path):
    """stgraph.federated.simulate: federated settings and run config arguments as keywords; a misspelt one,
    a bad value or a folder holding a federation is refused before anything is written."""
    from stgraph.errors import ConfigError, RunDirError
    from stgraph.federated import simulate
    with pytest.raises(ConfigError, match=r"unknown argument 'clientz' \(did you mean 'clients'\?\)"):
        simulate(tmp_path / "a", data=net["data"], graph=net["adj"], clientz=2)
    with pytest.raises(ConfigError, match="federated.strategy = 'fedsgd'"):
        simulate(tmp_path / "a", data=net["data"], graph=net["adj"], strategy="fedsgd")
    with pytest.raises(ConfigError, match="train.batch_size"):
        simulate(tmp_path / "a", data=net["data"], graph=net["adj"], batch_size=0)
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "federated.yaml").write_text("federated: {}\n")
    with pytest.raises(RunDirError, match="already holds a federated run .*overwrite=True"):
        simulate(tmp_path / "b", data=net["data"], graph=net["adj"], clients=2)


# ----------------------------------------------------------------------------------------------- LR over the rounds
def test_round_lr_factor_cosine_and_step():
    from stgraph.errors import ConfigError
    from stgraph.federated.config import FederatedConfig, round_lr_factor
    cos = FederatedConfig(rounds=4, lr_schedule="cosine").validate()
    c45 = math.cos(math.pi / 4)
    assert [round_lr_factor(cos, r) for r in (1, 2, 3, 4)] == pytest.approx(
        [1.0, 0.02 + 0.49 * (1 + c45), 0.51, 0.02 + 0.49 * (1 - c45)])
    step = FederatedConfig(rounds=6, lr_schedule="step", lr_step_rounds=2, lr_gamma=0.5).validate()
    assert [round_lr_factor(step, r) for r in range(1, 7)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert round_lr_factor(FederatedConfig(rounds=3), 3) == 1.0  # 'none': train.lr every round
    with pytest.raises(ConfigError, match="federated.lr_schedule = 'cosin'.*did you mean 'cosine'"):
        FederatedConfig(lr_schedule="cosin").validate()
    with pytest.raises(ConfigError, match="federated.lr_gamma = 1.5: expected a number in \\(0, 1\\]"):
        FederatedConfig(lr_schedule="step", lr_gamma=1.5).validate()


class _Manager:
    """The two calls Flower's FedAvg.configure_fit makes on a client manager."""

    def __init__(self, k):
        self.k = k

    def num_available(self):
        return self.k

    def sample(self, num_clients, min_num_clients=None, criterion=None):
        return [f"proxy{i}" for i in range(num_clients)]


def test_server_sends_the_round_lr_factor_and_dp_wrappers(tmp_path):
    from flwr.common import ndarrays_to_parameters
    from flwr.server.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                      DifferentialPrivacyServerSideFixedClipping)

    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.server import client_mods, make_strategy
    fed = FederatedConfig(clients=2, rounds=4, lr_schedule="cosine", keep_optimizer=False).validate()
    strategy, _ = make_strategy(fed, tmp_path / "s")
    params = ndarrays_to_parameters([np.zeros(3, np.float32)])
    for r, want in ((1, 1.0), (3, 0.51)):
        pairs = strategy.configure_fit(r, params, _Manager(2))
        assert [ins.config["lr_factor"] for _, ins in pairs] == pytest.approx([want, want])
        assert all(ins.config["server_round"] == r and ins.config["keep_optimizer"] is False for _, ins in pairs)
    assert client_mods(fed) == []
    server_dp, _ = make_strategy(FederatedConfig(clients=2, dp_noise=0.1).validate(), tmp_path / "a")
    assert isinstance(server_dp, DifferentialPrivacyServerSideFixedClipping)
    side = FederatedConfig(clients=2, dp_noise=0.1, dp_clip=0.5, dp_side="client").validate()
    client_dp, _ = make_strategy(side, tmp_path / "b")
    assert isinstance(client_dp, DifferentialPrivacyClientSideFixedClipping)
    pairs = client_dp.configure_fit(1, params, _Manager(2))
    assert all(ins.config["clipping_norm"] == 0.5 and ins.config["lr_factor"] == 1.0 for _, ins in pairs)
    from flwr.client.mod import fixedclipping_mod
    assert client_mods(side) == [fixedclipping_mod]


def test_client_uses_the_round_lr_and_keeps_its_adamw_state(net, tmp_path):
    from stgraph.config import RunConfig, apply_override, with_fields
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.flower import StgraphClient
    from stgraph.federated.folders import setup
    from stgraph.federated.layout import OPTIMIZER
    from stgraph.training.checkpoint import load_checkpoint
    cfg = with_fields(RunConfig(), {"data.path": str(net["data"]), "data.graph": str(net["adj"])})
    for s in ("model.params.hidden=8", "model.params.heads=2", "model.params.encoder_layers=1",
              "train.batch_size=16", "train.max_batches=2", "train.device=cpu", "train.lr=0.004"):
        cfg = apply_override(cfg, s)
    info = setup(FederatedConfig(clients=2, partition="random").validate(), cfg.validate(), tmp_path / "fed")
    cdir = info["client_dirs"][0]
    client = StgraphClient(cdir)
    params = client.get_parameters({})
    client.fit(params, {"server_round": 1, "lr_factor": 0.5, "keep_optimizer": True})
    opt = load_checkpoint(cdir / "checkpoints" / OPTIMIZER)["optimizer"]
    assert opt["param_groups"][0]["lr"] == pytest.approx(0.002)
    assert {int(s["step"]) for s in opt["state"].values()} == {2}  # two batches
    moments = {k: v["exp_avg_sq"].clone() for k, v in opt["state"].items()}
    client = StgraphClient(cdir)  # a new object each round, as in Flower's simulation
    client.fit(params, {"server_round": 2, "lr_factor": 0.25, "keep_optimizer": True})
    opt = load_checkpoint(cdir / "checkpoints" / OPTIMIZER)["optimizer"]
    assert opt["param_groups"][0]["lr"] == pytest.approx(0.001)
    assert {int(s["step"]) for s in opt["state"].values()} == {4}  # the moments carried on
    k = next(iter(moments))
    assert not torch.equal(opt["state"][k]["exp_avg_sq"], moments[k])
    other = info["client_dirs"][1]
    StgraphClient(other).fit(params, {"server_round": 1, "lr_factor": 1.0, "keep_optimizer": False})
    assert not (other / "checkpoints" / OPTIMIZER).exists()


def test_client_side_dp_clips_every_update_in_simulation(net, tmp_path, capsys):
    """Flower's client-side fixed clipping: what the server averages moved at most the clipping norm
    (plus noise of 1e-4 x norm / K), while the clients' own updates were far larger."""
    out = tmp_path / "dp"
    rc = main(["federated", "simulate", "--data", str(net["data"]), "--graph", str(net["adj"]), "--clients", "2",
               "--partition", "random", "--rounds", "1", "--out", str(out), "--record", "--dp-side", "client",
               "--dp-noise", "0.0001", "--dp-clip", "0.001", "--json", *SMALL])
    assert rc == 0, capsys.readouterr().err[-2000:]
    glob = np.load(out / "server" / "rounds" / "round_001.npz")
    glob = [glob[k] for k in sorted(glob.files)]
    # the start every client had: its initial shared weights (the same on both, seeded)
    from stgraph.config import load_config
    from stgraph.federated.personal import initial_model, personal_keys, shared_keys
    from stgraph.training.run import model_sizes, prepare
    cfg = load_config(out / "client_0" / "config.yaml")
    prep = prepare(cfg)
    model = initial_model(cfg, prep.data)
    keys = shared_keys(model, personal_keys(cfg.model.name, model_sizes(prep.data, False), cfg.model.params))
    start = [model.state_dict()[k].numpy() for k in keys]
    moved = math.sqrt(sum(float(((g - s) ** 2).sum()) for g, s in zip(glob, start)))
    sent, _ = _updates(out / "client_0", 1)
    own = math.sqrt(sum(float(((a - s) ** 2).sum()) for a, s in zip(sent, start)))
    assert 0 < moved <= 0.001 * 1.05 and own > 100 * moved


def test_by_region_partition_from_projected_metres(net, tmp_path, capsys):
    """Issue 11 item 5 for federated: --crs projected reads metres (Euclidean regions), as graph build does;
    without it the same file is refused as out-of-range degrees."""
    ids, _, coords = _graph_and_coords(net)
    north, east = 3.7e6 + (coords[:, 0] - coords[:, 0].mean()) * 111_000, 4.1e5 + coords[:, 1] * 30_000
    loc = tmp_path / "metres.csv"
    loc.write_text("sensor_id,northing,easting\n" + "".join(f"{s},{n:.1f},{e:.1f}\n" for s, n, e in
                                                             zip(ids, north, east)))
    base = ["federated", "partition", "--data", str(net["data"]), "--graph", str(net["adj"]), "--clients", "3",
            "--locations", str(loc), "--out", str(tmp_path / "p.csv")]
    assert main(base) != 0
    assert "--crs projected" in capsys.readouterr().err
    assert main(base + ["--crs", "projected"]) == 0, capsys.readouterr().err
    lab = read_partition(tmp_path / "p.csv", ids, 3)
    pts = np.stack([north, east], 1)  # metres as they are: every sensor is nearest its own region's centre
    centres = np.stack([pts[lab == c].mean(0) for c in range(3)])
    assert np.array_equal(((pts[:, None] - centres[None]) ** 2).sum(-1).argmin(1), lab)
    assert np.array_equal(lab, partition_sensors("by-region", ids, 3, coords=pts, seed=0, crs="projected"))
    from stgraph.federated.config import FederatedConfig
    metres = FederatedConfig(crs="metres")
    assert metres.validate().crs == "projected" and metres.crs == "metres"  # a checked copy; the original stays


# ----------------------------------------------------------------------------------------------- local fine-tuning
def test_finetune_keeps_the_better_of_the_federated_and_the_fine_tuned_model(net, tmp_path):
    from stgraph.config import RunConfig, apply_override, with_fields
    from stgraph.errors import ConfigError
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.finetune import finetune_client
    from stgraph.federated.flower import StgraphClient
    from stgraph.federated.folders import setup
    from stgraph.federated.layout import FEDERATED, FINETUNE
    from stgraph.training.checkpoint import load_checkpoint
    from stgraph.training.run import Run
    cfg = with_fields(RunConfig(), {"data.path": str(net["data"]), "data.graph": str(net["adj"])})
    for s in ("model.params.hidden=8", "model.params.heads=2", "model.params.encoder_layers=1",
              "train.batch_size=16", "train.max_batches=3", "train.device=cpu", "train.lr=0.004"):
        cfg = apply_override(cfg, s)
    fed = FederatedConfig(clients=2, partition="random", finetune_epochs=2, finetune_lr=0.5).validate()
    info = setup(fed, cfg.validate(), tmp_path / "fed")
    cdir = info["client_dirs"][0]
    assert json.loads((cdir / "client.json").read_text())["finetune_epochs"] == 2
    with pytest.raises(ConfigError, match="no checkpoint to fine-tune"):
        finetune_client(cdir)
    client = StgraphClient(cdir)
    params = client.get_parameters({})
    client.fit(params, {"server_round": 1})
    client.evaluate(client.get_parameters({}), {"server_round": 1})  # writes best.pt (round 1)
    before = load_checkpoint(cdir / "checkpoints" / "best.pt")["model"]
    last_round = (cdir / "checkpoints" / "last.pt").read_bytes()

    res = finetune_client(cdir)  # the epochs and the rate from client.json
    assert res["epochs"] == 2 and res["lr"] == pytest.approx(0.002)
    kept = load_checkpoint(cdir / "checkpoints" / FEDERATED)["model"]
    assert all(torch.equal(kept[k], before[k]) for k in before)  # the federated model is kept aside
    assert json.loads((cdir / FINETUNE).read_text()) == res
    assert (cdir / "checkpoints" / "last.pt").read_bytes() == last_round  # last.pt stays the last round's
    rows = list(csv.DictReader((cdir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # best.pt is whichever has the lowest validation MAE, and that MAE is what finetune.json says
    fed_val = Run.open(cdir, checkpoint=FEDERATED).evaluate("val")["average"]["mae"]
    best_val = Run.open(cdir).evaluate("val")["average"]["mae"]
    assert fed_val == pytest.approx(res["val_mae_federated"], rel=1e-5)
    assert best_val == pytest.approx(res["val_mae"], rel=1e-5)
    assert res["val_mae"] == pytest.approx(min([res["val_mae_federated"]] + [float(r["val_mae"]) for r in rows]),
                                           rel=1e-5)
    assert res["best_epoch"] >= 1 and res["val_mae"] < res["val_mae_federated"]  # here fine-tuning helps

    # a second call starts again from the federated model (not from the fine-tuned one); with a rate so
    # large that no epoch beats it, best.pt is the federated model again
    res2 = finetune_client(cdir, epochs=1, lr_factor=500.0)
    assert res2["val_mae_federated"] == pytest.approx(res["val_mae_federated"], rel=1e-6)
    now_fed = load_checkpoint(cdir / "checkpoints" / FEDERATED)["model"]
    best = load_checkpoint(cdir / "checkpoints" / "best.pt")["model"]
    assert all(torch.equal(now_fed[k], before[k]) for k in before)
    assert res2["best_epoch"] == 0 and res2["val_mae"] == res2["val_mae_federated"]
    assert all(torch.equal(best[k], before[k]) for k in best)


def test_finetune_config_is_checked():
    from stgraph.errors import ConfigError
    from stgraph.federated.config import FederatedConfig
    with pytest.raises(ConfigError, match="finetune_epochs = -1"):
        FederatedConfig(finetune_epochs=-1).validate()
    with pytest.raises(ConfigError, match="finetune_lr"):
        FederatedConfig(finetune_lr=0.0).validate()


def test_a_graph_that_changes_over_time_is_refused_naming_the_file(tmp_path, capsys):
    from stgraph.synth.mobility import write_mobility
    syn = write_mobility(tmp_path / "mob", num_regions=8, days=30, seed=1)
    rc = main(["federated", "simulate", "--data", str(syn["data"]), "--graph", str(syn["graph"]), "--clients", "2",
               "--rounds", "1", "--out", str(tmp_path / "fed")])
    err = capsys.readouterr().err
    assert rc != 0 and "mobility.csv' changes over time" in err and "static graph" in err
    assert not (tmp_path / "fed").exists()
