"""A federation does not trust its clients: every update is screened on arrival, robust aggregation is an option,
a round that cannot complete stops the server with a message, the settings and the folders are guarded."""
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stgraph.cli.main import main
from stgraph.errors import ConfigError, FederationError, RunDirError

pytest.importorskip("flwr")
ROOT = Path(__file__).resolve().parents[2]
SMALL = ["model.params.hidden=8", "model.params.heads=2", "model.params.encoder_layers=1",
         "model.params.decoder_layers=1", "train.batch_size=16", "train.max_batches=2", "train.device=cpu",
         "train.threads=1", "train.progress=false"]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_federated_robustness",
                                                  ROOT / "benchmarks" / "bench_federated_robustness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from stgraph.synth import write_synthetic
    return write_synthetic(tmp_path_factory.mktemp("trust_synth"), num_sensors=24, days=2, seed=3)


def _cfg(net):
    from stgraph.config import RunConfig, apply_override, with_fields
    cfg = with_fields(RunConfig(), {"data.path": str(net["data"]), "data.graph": str(net["adj"])})
    for s in SMALL:
        cfg = apply_override(cfg, s)
    return cfg.validate()


# ----------------------------------------------------------------------------------------------- the strategy alone
class _Proxy:
    def __init__(self, cid):
        self.cid = cid


def _res(arrays, n=10, pid=0, node=None):
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    return (_Proxy(node or f"n{pid}"),
            FitRes(Status(Code.OK, ""), ndarrays_to_parameters([np.asarray(a) for a in arrays]), n,
                   {"partition_id": pid}))


G = [np.zeros((2, 3), np.float32), np.zeros(4, np.float32)]


def _honest(i):
    return [a + np.float32(0.1 * (i + 1)) for a in G]


def _strategy(tmp_path, **fed):
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.server import make_strategy
    strategy, inner = make_strategy(FederatedConfig(**{"clients": 3, **fed}).validate(), tmp_path / "server")
    inner._sent = G
    strategy.current_round_params = G  # what Flower's DP wrapper keeps from configure_fit
    return strategy, inner


def _aggregate(strategy, results, r=1):
    from flwr.common import parameters_to_ndarrays
    params, _ = strategy.aggregate_fit(r, results, [])
    return parameters_to_ndarrays(params)


BAD = {  # a hostile client 2's update and the words of its refusal
    "nan": (lambda a: [np.full_like(a[0], np.nan), a[1]], 10, "6 of 6 values not finite"),
    "inf": (lambda a: [a[0], np.full_like(a[1], np.inf)], 10, "not finite"),
    "scaled": (lambda a: [x * np.float32(1e6) for x in a], 10, "more than 10 x the round's median"),
    "wrong-shape": (lambda a: [a[0].ravel()[:-1], a[1]], 10, "shape (5,); expected (2, 3)"),
    "extra array": (lambda a: a + [np.zeros(2, np.float32)], 10, "3 arrays; expected 2"),
    "int dtype": (lambda a: [a[0].astype(np.int64), a[1]], 10, "dtype int64; expected floating point"),
    "inflated count": (lambda a: a, 10 ** 15, "example count 1000000000000000 is more than 10 x"),
    "zero count": (lambda a: a, 0, "example count 0: expected an integer >= 1"),
}


@pytest.mark.parametrize("attack", sorted(BAD))
@pytest.mark.parametrize("aggregate", ["fedavg", "median", "trimmed-mean"])
def test_a_hostile_update_is_refused_by_name_and_the_round_averages_the_others(tmp_path, caplog, attack, aggregate):
    strategy, inner = _strategy(tmp_path, aggregate=aggregate)
    make, n, words = BAD[attack]
    results = [_res(_honest(0), pid=0), _res(_honest(1), pid=1), _res(make(_honest(2)), n=n, pid=2)]
    with caplog.at_level(logging.WARNING, logger="stgraph.federated.guard"):
        out = _aggregate(strategy, results)
    # the honest pair's mean (equal weights), whatever the aggregation: median and trimmed mean of two = mean
    for a, want in zip(out, [0.15 * np.ones_like(g) for g in G]):
        np.testing.assert_allclose(a, want, rtol=1e-6)
    assert [r["client"] for r in inner.guard.refused] == [2] and words in inner.guard.refused[0]["reason"]
    assert f"round 1: refused the update of client 2 (node n2): " in caplog.text and words in caplog.text


def test_a_hostile_update_under_dp_is_refused_before_clipping(tmp_path):
    """Flower's DP wrapper subtracts each update from the global model: a wrong shape used to end in a numpy
    broadcast error naming no client."""
    strategy, inner = _strategy(tmp_path, dp_noise=0.1, dp_clip=100.0)
    results = [_res(_honest(0), pid=0), _res(_honest(1), pid=1), _res([np.ones(7, np.float32), G[1]], pid=2)]
    out = _aggregate(strategy, results)
    assert all(np.isfinite(a).all() for a in out) and [r["client"] for r in inner.guard.refused] == [2]


def test_robust_aggregation_resists_what_passes_the_checks(tmp_path):
    """A client within the norm bound but pulling one way: fedavg moves, the median and trimmed mean do not."""
    rows = [[np.full((2, 3), v, np.float32), np.full(4, v, np.float32)] for v in (0.1, 0.2, 0.3, 0.4, 2.0)]
    got = {}
    for agg in ("fedavg", "median", "trimmed-mean"):
        strategy, inner = _strategy(tmp_path / agg, clients=5, aggregate=agg)
        out = _aggregate(strategy, [_res(r, pid=i) for i, r in enumerate(rows)])
        got[agg] = float(out[0][0, 0])
        assert inner.guard.refused == []
    assert got["fedavg"] == pytest.approx(0.6) and got["median"] == pytest.approx(0.3)
    assert got["trimmed-mean"] == pytest.approx(0.3)  # 0.2, 0.3, 0.4 kept
    from stgraph.federated.server import trim_beta, trim_count
    assert [trim_count(n) for n in (1, 2, 3, 4, 5, 9, 10, 20)] == [0, 0, 1, 1, 1, 1, 2, 4]
    assert all(0 <= trim_beta(n) < 0.5 and int(trim_beta(n) * n) == trim_count(n) for n in range(1, 60))
    strategy, _ = _strategy(tmp_path / "three", aggregate="trimmed-mean")  # three clients: one trimmed each end
    assert float(_aggregate(strategy, [_res(r, pid=i) for i, r in enumerate(rows[1:4])])[0][0, 0]) == pytest.approx(0.3)


def test_client_identity_one_client_per_partition_id(tmp_path):
    strategy, inner = _strategy(tmp_path)
    # round 1: two clients claim partition 0: both refused, 1 and 2 carry the round
    _aggregate(strategy, [_res(_honest(0), pid=0, node="a"), _res(_honest(0), pid=0, node="b"),
                          _res(_honest(1), pid=1, node="c"), _res(_honest(2), pid=2, node="d")])
    assert sorted(r["node"] for r in inner.guard.refused) == ["a", "b"]
    # round 2: node e claims partition 1, which node c holds; a partition id out of range or not an integer
    words = {"e": "claims partition id 1, which node c holds", "f": "partition id 7: expected an integer 0 .. 2",
             "g": "partition id '0': expected an integer 0 .. 2"}
    for r, node, pid in ((2, "e", 1), (3, "f", 7), (4, "g", "0")):
        inner.guard.refused.clear()
        _aggregate(strategy, [_res(_honest(1), pid=1, node="c"), _res(_honest(2), pid=2, node="d"),
                              _res(_honest(0), pid=pid, node=node)], r=r)
        assert [(x["node"], x["reason"]) for x in inner.guard.refused] == [(node, words[node])]


def test_example_counts_bounded_by_the_clients_folder(net, tmp_path):
    """The server reads the client folders beside it: a count above the client's training windows is refused."""
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.folders import load_client, setup
    from stgraph.federated.server import make_strategy
    fed = FederatedConfig(clients=3, partition="random", rounds=1).validate()
    dirs = setup(fed, _cfg(net), tmp_path / "fed")["client_dirs"]
    windows = int(load_client(dirs[0]).prepared.data.split_starts("train").numel())
    strategy, inner = make_strategy(fed, tmp_path / "fed" / "server")
    inner._sent = G
    _aggregate(strategy, [_res(_honest(0), n=windows, pid=0), _res(_honest(1), n=windows, pid=1),
                          _res(_honest(2), n=windows + 1, pid=2)])
    assert inner.guard.refused[0]["reason"] == f"example count {windows + 1}: client 2 holds {windows} training windows"


def test_a_round_without_a_majority_of_valid_updates_fails_and_keeps_the_last_global_model(tmp_path):
    strategy, inner = _strategy(tmp_path)
    inner.files.global_shared.write_bytes(b"round 1's global model")
    saved = inner.files.global_shared.read_bytes()
    nan = [np.full_like(G[0], np.nan), G[1]]
    with pytest.raises(FederationError, match=r"round 2: 1 valid update\(s\) of 3, at least 2 needed \(refused: "
                                              r"client 1: array p0000 has 6 of 6 values not finite.*client 2:"):
        _aggregate(strategy, [_res(_honest(0), pid=0), _res(nan, pid=1), _res(nan, pid=2)], r=2)
    assert inner.failure is not None and inner.files.global_shared.read_bytes() == saved
    # a client that failed (killed, an exception) also ends the round, naming it
    strategy, inner = _strategy(tmp_path / "b")
    with pytest.raises(FederationError, match="round 1: 1 client\\(s\\) failed or left \\(ConnectionError: gone\\)"):
        strategy.aggregate_fit(1, [_res(_honest(0), pid=0), _res(_honest(1), pid=1)], [ConnectionError("gone")])


# ----------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("field,value", [("dp_noise", float("inf")), ("dp_noise", float("nan")),
                                         ("dp_clip", float("inf")), ("proximal_mu", float("inf")),
                                         ("round_timeout", float("nan")), ("aggregate", "mean")])
def test_federated_settings_refuse_non_finite_numbers_and_unknown_aggregations(field, value):
    from stgraph.federated.config import FederatedConfig
    with pytest.raises(ConfigError, match=f"federated.{field} = "):
        FederatedConfig(**{field: value}).validate()


@pytest.mark.parametrize("address", ["0.0.0.0:8080", "10.1.2.3:8080", "example.org:8080", "[::]:8080", "8080",
                                     "127.0.0.1:port"])
def test_only_loopback_addresses_without_tls(address):
    from stgraph.federated.config import FederatedConfig
    with pytest.raises(ConfigError, match=r"federated.address = .*(loopback|HOST:PORT)"):
        FederatedConfig(address=address).validate()
    for ok in ("127.0.0.1:8080", "localhost:9", "[::1]:8080", "127.0.0.2:1"):
        assert FederatedConfig(address=ok).validate().address == ok


def test_cli_aggregate_flag_and_refusals(tmp_path, capsys):
    from stgraph.cli.federated import federated_config
    from stgraph.cli.main import build_parser
    args = build_parser().parse_args(["federated", "server", "--out", str(tmp_path / "s"), "--aggregate", "median"])
    assert federated_config(args).aggregate == "median"
    assert main(["federated", "server", "--out", str(tmp_path / "s"), "--dp-noise", "inf"]) == 2
    assert "dp_noise = inf: expected a finite number >= 0" in capsys.readouterr().err
    assert main(["federated", "server", "--out", str(tmp_path / "s"), "--address", "0.0.0.0:8080"]) == 2
    assert "only a loopback address" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------------------------- whole federations
def test_one_hostile_client_of_three_every_attack_and_the_federation_completes(net, tmp_path):
    """Flower's server loop, three clients in this process; client 2 sends NaN, x1e6, a wrong shape and an
    inflated count in rounds 1-4: each refused, the global model finite, the honest clients train on."""
    import torch

    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.flower import StgraphClient, run_local
    from stgraph.federated.folders import setup
    from stgraph.federated.server import make_strategy
    bench = _bench()
    attacks = ["nan", "scaled", "wrong-shape", "inflated"]

    class Cycling(StgraphClient):
        def fit(self, parameters, config):
            arrays, n, metrics = super().fit(parameters, config)
            return bench.corrupt(attacks[int(config["server_round"]) - 1], arrays, n) + (metrics,)

    for aggregate in ("fedavg", "median"):
        out = tmp_path / aggregate
        fed = FederatedConfig(clients=3, partition="random", rounds=4, aggregate=aggregate).validate()
        dirs = setup(fed, _cfg(net), out)["client_dirs"]
        strategy, round_log = make_strategy(fed, out / "server")
        run_local(fed, [StgraphClient(dirs[0]).to_client(), StgraphClient(dirs[1]).to_client(),
                        Cycling(dirs[2]).to_client()], strategy)
        assert len(round_log.history) == 4 and round_log.failure is None
        refused = round_log.guard.refused
        assert [(r["round"], r["client"]) for r in refused] == [(1, 2), (2, 2), (3, 2), (4, 2)]
        assert ["not finite" in refused[0]["reason"], "update norm" in refused[1]["reason"],
                "shape" in refused[2]["reason"], "example count 1000000000000000" in refused[3]["reason"]] == [True] * 4
        glob = np.load(out / "server" / "global_shared.npz")
        assert all(np.isfinite(glob[k]).all() for k in glob.files)
        for c in (0, 1):
            best = torch.load(dirs[c] / "checkpoints" / "best.pt", weights_only=True)["model"]
            assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())
            assert np.isfinite(json.loads((dirs[c] / "federated_state.json").read_text())["best_val"])


def test_client_rerun_sets_the_old_state_aside_and_restores_it_when_the_server_is_absent(net, tmp_path):
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.remote import take_part
    from stgraph.files import run_lock
    fed = FederatedConfig(clients=2, partition="random", rounds=1, address="127.0.0.1:9").validate()
    cdir = tmp_path / "fed" / "client_0"
    (cdir / "checkpoints").mkdir(parents=True)
    old = {cdir / "checkpoints" / "best.pt": b"finished federation's best", cdir / "federated_state.json":
           b'{"best_val": 1.0, "rounds": [{"round": 1}]}', cdir / "checkpoints" / "last.pt": b"last"}
    for p, b in old.items():
        p.write_bytes(b)
    with pytest.raises(BaseException) as info:
        take_part(fed, _cfg(net), tmp_path / "fed", 0, max_wait=1)
    assert not isinstance(info.value, (KeyboardInterrupt, AssertionError))
    assert {p: p.read_bytes() for p in old} == old and not (cdir / ".previous").exists()
    # a second client with the same partition id while the first holds the folder is refused
    with run_lock(cdir):
        with pytest.raises(RunDirError, match="in use"):
            take_part(fed, _cfg(net), tmp_path / "fed", 0, max_wait=1)
    assert {p: p.read_bytes() for p in old} == old


def test_grpc_server_exits_with_a_message_when_a_round_cannot_complete(net, tmp_path):
    """Two clients, one sending NaN: the round has one valid update of the two it needs. The server says so and
    exits 2 (it used to average the NaN, or hang after a failure); the honest client is told and exits 2 too."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "fed"
    common = ["--clients", "2", "--rounds", "2", "--out", str(out), "--address", f"127.0.0.1:{port}",
              "--round-timeout", "60"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "stgraph.cli.main", "federated"]
    data = ["--data", str(net["data"]), "--graph", str(net["adj"]), "--partition", "random", "--max-wait", "60",
            *[x for s in SMALL for x in ("--set", s)]]
    server = subprocess.Popen(cli + ["server", *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    honest = subprocess.Popen(cli + ["client", *common, "--partition-id", "0", *data], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    script = tmp_path / "hostile.py"
    script.write_text(_HOSTILE.format(bench=str(ROOT / "benchmarks"), out=str(out), port=port, net=str(net["data"]),
                                      adj=str(net["adj"]), small=SMALL))
    bad = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    logs = []
    try:
        for p in (server, honest, bad):
            logs.append(p.communicate(timeout=150)[0])
    finally:
        for p in (server, honest, bad):
            if p.poll() is None:
                p.kill()
    assert server.returncode == 2, logs[0][-3000:]
    assert "round 1: 1 valid update(s) of 2, at least 2 needed (refused: client 1: array p0000 has" in logs[0]
    assert "refused the update of client 1" in logs[0]
    assert honest.returncode == 2 and "the server ended the federation after 0 of 2 rounds" in logs[1], logs[1][-2000:]
    assert not (out / "server" / "global_shared.npz").exists()


_HOSTILE = """
import sys
sys.path.insert(0, {bench!r})
import bench_federated_robustness as b
from stgraph.api import run_config
from stgraph.federated.config import FederatedConfig
from stgraph.federated.folders import setup
from flwr.compat.client.app import start_client
cfg = run_config(data={net!r}, graph={adj!r}, overrides={small!r}, progress=False)  # as the CLI's clients
fed = FederatedConfig(clients=2, partition="random", rounds=2).validate()
setup(fed, cfg, {out!r}, clients=[1])
client = b.Hostile({out!r} + "/client_1", "nan")
start_client(server_address="127.0.0.1:{port}", client=client.to_client(), insecure=True, max_retries=60,
             max_wait_time=60)
"""
