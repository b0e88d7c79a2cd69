"""Federated training on Flower: partitions, what travels, aggregation, the simulation and the gRPC round trip."""
import csv
import json
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
ROOT = Path(__file__).resolve().parents[1]
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
    from stgraph.federated.client import personal_keys
    sizes = dict(num_nodes=5, in_channels=1, out_channels=1, input_len=12, horizon=12, steps_per_day=288,
                 target_channels=(0,), probabilistic=False)
    params = {"hidden": 16, "heads": 2}
    assert personal_keys("stgt", sizes, params) == ["embed.node.weight"]
    assert personal_keys("stgt", sizes, params, ["^head_out\\."]) == ["embed.node.weight", "head_out.bias",
                                                                      "head_out.weight"]


def test_fedprox_loss_adds_the_proximal_term_on_shared_weights(net):
    from stgraph.config import RunConfig
    from stgraph.federated.client import _ProxTrainer
    from stgraph.training.run import make_model, prepare
    cfg = RunConfig()
    cfg.data.path, cfg.data.graph = str(net["data"]), str(net["adj"])
    cfg.model.params = {"hidden": 16, "heads": 2, "encoder_layers": 1}
    cfg.train.device = "cpu"
    prep = prepare(cfg)
    model = make_model(cfg, prep.data)
    anchors = {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("head_fc.")}
    tr = _ProxTrainer(model, prep.data, prep.graph, cfg.train, None, mu=0.5, anchors=anchors)
    with torch.no_grad():
        model.head_fc.weight.add_(0.1)
    batch = next(iter(prep.data.loader("train", 4)))
    out = model(batch.x, prep.graph, batch.covariates)
    plain = super(_ProxTrainer, tr).loss(out, batch.y)
    expected = plain + 0.5 * 0.5 * (0.1 ** 2) * model.head_fc.weight.numel()
    assert torch.allclose(tr.loss(out, batch.y), expected, rtol=1e-5)


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
                                       "--partition", "random", *SMALL],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
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
               "--partition", "by-region", "--rounds", "2", "--local-epochs", "1", "--out", str(out), "--json",
               *SMALL])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    summary = json.loads(captured.out.strip().splitlines()[-1])
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
    for run in ("client_0", "client_1", "global"):
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
