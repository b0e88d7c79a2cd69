"""Issue 26: model constructor errors name the model.params fields to change (and the advice works)."""
from __future__ import annotations

import pytest

from stgraph.errors import ConfigError
from stgraph.models.registry import build_model

SIZES = dict(num_nodes=4, in_channels=1, out_channels=1, input_len=7, horizon=7, steps_per_day=1)


def test_stgcn_short_input_names_kernel_size_and_blocks():
    with pytest.raises(ConfigError) as e:
        build_model("stgcn", SIZES)  # 2 blocks of kernel 3 take 8 steps off 7
    msg = str(e.value)
    assert "input_len=7 is too short for 2 blocks of kernel 3" in msg
    assert "set model.params.kernel_size=2 or model.params.blocks=1 or data.input_len=9 or more" in msg
    for fix in ({"kernel_size": 2}, {"blocks": 1}):  # each suggested field on its own builds the model
        assert build_model("stgcn", SIZES, fix).out_len >= 1
    with pytest.raises(ConfigError, match=r"set model.params.kernel_size=2 and model.params.blocks=1"):
        build_model("stgcn", {**SIZES, "input_len": 4})
    assert build_model("stgcn", {**SIZES, "input_len": 4}, {"kernel_size": 2, "blocks": 1}).out_len == 2


def test_other_models_name_their_fields():
    with pytest.raises(ConfigError, match=r"set model.params.kernel_size=2"):
        build_model("gwnet", SIZES, {"kernel_size": 3})
    with pytest.raises(ConfigError, match=r"model.params.adaptive=true or model.params.graph_supports=true"):
        build_model("gwnet", SIZES, {"adaptive": False, "graph_supports": False})
    with pytest.raises(ConfigError, match=r"not divisible by heads=5: set model.params.heads"):
        build_model("staeformer", SIZES, {"heads": 5})
