"""Typed run configuration: layering, overrides, pure updates, type checks (config fields and model.params)."""
import dataclasses
import math

import pytest
import torch

from stgraph.config import (RunConfig, apply_override, compose_config, config_from_dict, given_keys,
                            load_run_config, with_fields)
from stgraph.errors import ConfigError, MissingFileError
from stgraph.models.registry import build_model
from stgraph.runtime import check_device_name, resolve_device

SIZES = dict(num_nodes=3, in_channels=1, out_channels=1, input_len=4, horizon=2, steps_per_day=24,
             target_channels=(0,), probabilistic=False)


def test_layers_apply_in_order_defaults_file_settings_overrides(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("model:\n  params: {heads: 2}\ntrain:\n  lr: 0.01\n  epochs: 7\n")
    cfg = compose_config("gman", user, {"train.epochs": 3, "data.path": "x.h5"},
                         ["train.lr=0.002", "model.params.num_blocks=2"])
    assert cfg.model.name == "gman"
    # gman.yaml's params, the file's heads, then the override's num_blocks: params add up, later wins
    assert cfg.model.params == {"num_blocks": 2, "temporal_mask": True, "second_relu": False,
                                "output_dropout": 0.1, "heads": 2}
    assert cfg.train.batch_size == 16 and cfg.train.scheduler == "multistep"  # from stgraph/configs/gman.yaml
    assert cfg.train.epochs == 3  # a setting beats the file
    assert cfg.train.lr == 0.002  # an override beats the file and the settings
    assert cfg.data.path == "x.h5"
    # the model of the file when none is named; stgraph's own defaults for a model without a shipped config
    assert compose_config(None, user).model.name == "stgt"
    assert compose_config("tests.user_model:TinyUserModel").train.epochs == RunConfig().train.epochs


def test_given_keys_name_exactly_what_the_caller_set(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("model:\n  params: {heads: 2}\ntrain:\n  lr: 0.01\n")
    keys = given_keys("gman", user, {"train.seed": 1}, ["data.horizon=3"])
    assert keys == {"model", "model.params", "model.params.heads", "train", "train.lr", "model.name",
                    "train.seed", "data.horizon"}
    assert given_keys() == set()


def test_updates_return_new_configs_and_leave_the_old_one_alone():
    base = RunConfig()
    a = apply_override(base, "train.lr=2e-4")
    b = apply_override(a, "model.params.hidden=16")
    c = config_from_dict({"data": {"horizon": 3}}, b)
    d = with_fields(c, {"train.device": "cpu", "data.path": "s.h5"})
    assert (a.train.lr, b.model.params, c.data.horizon, d.train.device, d.data.path) == \
        (0.0002, {"hidden": 16}, 3, "cpu", "s.h5")
    assert base.train.lr == 0.001 and base.model.params == {} and base.data.horizon == 12
    assert a.model.params == {} and b.data.horizon == 12 and c.train.device == "auto"
    with pytest.raises(ConfigError, match="'train.lrr' is not a config field"):
        with_fields(base, {"train.lrr": 1})


def test_configs_are_frozen_and_updates_leave_the_original_unchanged():
    cfg = apply_override(RunConfig(), "model.params.hidden=16")
    before = cfg.to_dict()
    for obj, name, value in ((cfg, "train", None), (cfg.train, "lr", 0.5), (cfg.data, "path", "x.h5"),
                             (cfg.model, "params", {}), (cfg.data, "split", [0.5, 0.25, 0.25])):
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
            setattr(obj, name, value)
    new = with_fields(cfg, {"train.lr": 0.5, "data.path": "x.h5", "data.split": [0.5, 0.25, 0.25]})
    newer = apply_override(new, "model.params.heads=2")
    assert (new.train.lr, new.data.path, new.data.split, newer.model.params) == \
        (0.5, "x.h5", [0.5, 0.25, 0.25], {"hidden": 16, "heads": 2})
    assert cfg.to_dict() == before and new.model.params == {"hidden": 16}  # neither original changed
    assert cfg.validate() is cfg and cfg.to_dict() == before  # validate checks, it changes nothing


def test_wrong_keys_and_types_name_the_field_and_suggest():
    with pytest.raises(ConfigError, match=r"train: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        config_from_dict({"train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"train.epochs = 'ten': expected an integer, got str"):
        config_from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"override 'train.batchsize=8': .*did you mean 'batch_size'"):
        apply_override(RunConfig(), "train.batchsize=8")
    with pytest.raises(ConfigError, match=r"data.split = \[0.5, 0.5, 0.5\]: expected three positive ratios"):
        config_from_dict({"data": {"split": [0.5, 0.5, 0.5]}}).validate()
    # YAML 1.1 reads 1e-3 as text: a float field takes it as the number
    assert apply_override(RunConfig(), "train.lr=1e-3").train.lr == 0.001
    assert math.isnan(apply_override(RunConfig(), "data.null_value=nan").data.null_value)


def test_a_run_config_round_trips_through_yaml(tmp_path):
    cfg = compose_config("var", None, {"data.path": "/a/b.h5", "train.seed": 5}, ["data.split=[0.6, 0.2, 0.2]"])
    cfg.to_yaml(tmp_path / "config.yaml")
    back = load_run_config(tmp_path / "config.yaml")
    assert back == cfg and back.data.split == [0.6, 0.2, 0.2] and back.train.seed == 5


def test_shipped_set_up_names_and_missing_files(tmp_path):
    assert compose_config(None, "stgt-large").model.name == "stgt"
    with pytest.raises(MissingFileError, match=r"--config 'nosuch': no such file, and not a shipped set-up"):
        compose_config(None, "nosuch")
    with pytest.raises(MissingFileError, match="not found"):
        compose_config(None, tmp_path / "absent.yaml")


def test_model_params_are_checked_against_the_constructors_annotations():
    with pytest.raises(ConfigError, match=r"model.params.mode = 3: expected str, got int \('var' declares mode: str\)"):
        build_model("var", SIZES, {"mode": 3})
    with pytest.raises(ConfigError, match=r"model.params.channels = \[8, 'a', 8\]: expected Sequence\[int\]"):
        build_model("stgcn", SIZES, {"channels": [8, "a", 8]})
    with pytest.raises(ConfigError, match=r"node_emb_dim = 2.5: expected Optional\[int\]"):
        build_model("gman", SIZES, {"node_emb_dim": 2.5})
    with pytest.raises(ConfigError, match=r"ridge = 'big': expected Optional\[float\]"):
        build_model("var", SIZES, {"ridge": "big"})
    # what the annotations allow builds: None for Optional, an int for a float, a list for a Sequence
    assert build_model("var", SIZES, {"ridge": None}).ridge is None
    assert build_model("var", SIZES, {"ridge": 1}).ridge == 1
    stgcn = build_model("stgcn", {**SIZES, "input_len": 12}, {"channels": [4, 2, 4], "blocks": 1, "kernel_size": 2})
    assert sum(p.numel() for p in stgcn.parameters()) > 0


def test_one_device_check():
    with pytest.raises(ConfigError, match=r"train.device = 'gpu': expected 'auto', 'cpu' or 'cuda\[:k\]'"):
        check_device_name("gpu")
    with pytest.raises(ConfigError, match="train.device = 'gpu'"):
        config_from_dict({"train": {"device": "gpu"}}).validate()
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match=r"device = 'tpu9'"):
        resolve_device("tpu9", "device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"train.device = 'cuda:1' but no CUDA device is available"):
            resolve_device("cuda:1")


def test_a_run_config_written_before_the_newer_fields_still_opens():
    """tests/training/fixtures/config_99fb60b.yaml is a run's config.yaml as stgraph wrote it at 99fb60b: every
    field added since must be in ADDED_FIELDS (its default then holds), or runs trained then stop opening."""
    from pathlib import Path

    from stgraph.config import ADDED_FIELDS, RunConfig, load_run_config

    old = Path(__file__).parent / "training" / "fixtures" / "config_99fb60b.yaml"
    cfg = load_run_config(old)
    assert cfg.model.name == "stgt" and cfg.train.max_batches == 5 and cfg.model.params["patch_len"] == 3
    assert cfg.data.nonnegative is RunConfig().data.nonnegative is False
    assert "data.nonnegative" in ADDED_FIELDS
