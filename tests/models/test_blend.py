"""Blend (a per-step weighted average of trained models) and a federated client's local/federated blend."""
import json

import pytest
import torch

from stgraph.errors import ConfigError
from stgraph.models import build_model
from stgraph.models.blend import choose_weights

SIZES = {"num_nodes": 5, "in_channels": 1, "out_channels": 1, "input_len": 12, "horizon": 4, "steps_per_day": 288,
         "target_channels": [0]}


def test_blend_is_the_per_step_weighted_sum_of_its_members():
    torch.manual_seed(0)
    stid = {"embed_dim": 8, "node_dim": 8, "tod_dim": 4, "dow_dim": 4, "num_layers": 1}
    members = [{"name": "last", "params": {}}, {"name": "stid", "params": stid}]
    w = [[1.0, 0.5, 0.25, 0.0], [0.0, 0.5, 0.75, 1.0]]
    model = build_model("blend", SIZES, {"members": members, "weights": w})
    x = torch.randn(3, 12, 5, 1)
    cov = {"tod_in": torch.rand(3, 12), "dow_in": torch.randint(0, 7, (3, 12)).float()}
    model.eval()
    a, b = model.members[0](x, None, cov), model.members[1](x, None, cov)
    out = model(x, None, cov)
    assert out.shape == (3, 4, 5, 1)
    assert torch.allclose(out[:, 0], a[:, 0]) and torch.allclose(out[:, 3], b[:, 3])
    assert torch.allclose(out[:, 2], 0.25 * a[:, 2] + 0.75 * b[:, 2])
    # the weights live in the config, not in the state dict: only the members' weights are saved
    assert all(k.startswith("members.1.") for k in model.state_dict())
    same = build_model("blend", SIZES, {"members": members, "weights": [0.5, 0.5]})  # one weight for every step
    assert torch.equal(same.weights, torch.full((2, 4), 0.5))


@pytest.mark.parametrize("weights, match", [
    ([[0.5, 0.5, 0.5, 0.5], [0.6, 0.5, 0.5, 0.5]], "add up to 1"),
    ([[1.5, 1, 1, 1], [-0.5, 0, 0, 0]], ">= 0"),
    ([[1.0, 1.0], [0.0, 0.0]], r"shape \(2, 2\); expected \(2,\) or \(2, 4\)"),
])
def test_blend_weights_are_checked(weights, match):
    members = [{"name": "last", "params": {}}, {"name": "last", "params": {}}]
    with pytest.raises(ConfigError, match=match):
        build_model("blend", SIZES, {"members": members, "weights": weights})


def test_blend_refuses_probabilistic_runs_and_bad_members():
    with pytest.raises(ConfigError, match="point forecasts"):
        build_model("blend", {**SIZES, "probabilistic": True}, {"members": [{"name": "last"}], "weights": [1.0]})
    with pytest.raises(ConfigError, match="members must be a non-empty list"):
        build_model("blend", SIZES, {"members": ["last"], "weights": [1.0]})


def test_choose_weights_per_step_on_masked_mae():
    y = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4, 1) + 10
    fed, local = y.clone(), y.clone()
    fed[:, 0] += 1          # step 1: the local model is exact -> weight 1 on it
    local[:, 1] += 2        # step 2: the federated one is -> weight 0
    fed[:, 2] += 1          # step 3: errors +1 and -1 cancel at 0.5
    local[:, 2] -= 1
    y[0, :, 0] = 0.0        # null readings (null value 0) do not count, however large the errors there
    fed[0, :, 0] += 100
    a, mae = choose_weights(fed, local, y, null_value=0.0)
    assert a.tolist() == [1.0, 0.0, 0.5]
    assert mae.shape == (21, 3)
    assert mae[-1].tolist() == pytest.approx([0.0, 2.0, 1.0])  # the local model alone, step by step
    assert mae[0].tolist() == pytest.approx([1.0, 0.0, 1.0])   # the federated one alone
    assert mae[10, 2].item() == pytest.approx(0.0)


def test_client_blend_is_an_ordinary_run_of_the_two_models(tmp_path):
    pytest.importorskip("flwr")
    from stgraph.cli.main import main
    from stgraph.config import RunConfig, apply_override, with_fields
    from stgraph.federated.config import FederatedConfig
    from stgraph.federated.flower import StgraphClient
    from stgraph.federated.folders import setup
    from stgraph.federated.layout import BLEND, BLEND_INFO, LOCAL
    from stgraph.federated.local import blend_client, train_local
    from stgraph.synth import write_synthetic
    from stgraph.training.run import Run

    net = write_synthetic(tmp_path / "synth", num_sensors=10, days=2, seed=3)
    cfg = with_fields(RunConfig(), {"data.path": str(net["data"]), "data.graph": str(net["adj"])})
    for s in ("model.params.hidden=8", "model.params.heads=2", "model.params.encoder_layers=1",
              "train.batch_size=16", "train.max_batches=3", "train.device=cpu"):
        cfg = apply_override(cfg, s)
    fed = FederatedConfig(clients=2, partition="random", rounds=2, local_blend=True).validate()
    with pytest.raises(ConfigError, match="blends point forecasts, and model.probabilistic is on"):
        setup(fed, apply_override(cfg, "model.probabilistic=true").validate(), tmp_path / "fed")
    assert not (tmp_path / "fed").exists()  # refused before anything was written
    cdir = setup(fed, cfg.validate(), tmp_path / "fed")["client_dirs"][0]
    info = json.loads((cdir / "client.json").read_text())
    assert info["local_blend_epochs"] == 2 and info["local_scheduler"] == "none"
    with pytest.raises(ConfigError, match="no local model"):
        blend_client(cdir)
    client = StgraphClient(cdir)
    client.fit(client.get_parameters({}), {"server_round": 1})
    client.evaluate(client.get_parameters({}), {"server_round": 1})

    local = train_local(cdir)
    assert local.state["epoch"] == 2 and (cdir / LOCAL / "checkpoints" / "best.pt").is_file()
    res = blend_client(cdir)
    assert json.loads((cdir / BLEND_INFO).read_text()) == res
    assert len(res["weights_local"]) == 12
    assert res["val_mae"] <= min(res["val_mae_federated"], res["val_mae_local"]) + 1e-6

    # the blend run's forecast is the two runs' forecasts weighted step by step
    fed_run, loc_run, blend = Run.open(cdir), Run.open(cdir / LOCAL), Run.open(cdir / BLEND)
    a = torch.tensor(res["weights_local"])[None, :, None, None]
    for (f, _, _), (lo, _, _), (b, _, _) in zip(fed_run.predictions("val"), loc_run.predictions("val"),
                                                blend.predictions("val")):
        assert torch.allclose(b, a * lo + (1 - a) * f, atol=1e-4)
    assert blend.config.model.name == "blend" and blend.config.model.params["weights"][1] == res["weights_local"]
    assert main(["evaluate", str(cdir / BLEND), "--split", "val", "--json"]) == 0
    # a new federation in the same folder starts without the old local model and blend
    setup(fed, cfg.validate(), tmp_path / "fed")
    assert not (cdir / LOCAL).exists() and not (cdir / BLEND).exists() and not (cdir / BLEND_INFO).exists()


def test_local_blend_config_is_checked():
    from stgraph.federated.config import FederatedConfig  # no flwr needed for the config
    with pytest.raises(ConfigError, match="local_blend = 'yes'"):
        FederatedConfig(local_blend="yes").validate()
