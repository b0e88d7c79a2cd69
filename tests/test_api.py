"""The public Python API: the README's example runs as written, and the API's own contracts."""
import json
import logging
import re
from pathlib import Path

import pytest

import stgraph

README = Path(__file__).resolve().parents[1] / "README.md"

#: the README example's one line of sizes, and the tiny ones this test runs it with
SIZES = "SENSORS, DAYS, EPOCHS = 20, 7, 5"
TINY = "SENSORS, DAYS, EPOCHS = 10, 2, 1"


def readme_example() -> str:
    """The first ``python`` block under the README's ``## Python API`` heading."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    (code, *_) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_readme_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert code.count(SIZES) == 1, "the README example's sizes line changed: update SIZES here"
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code.replace(SIZES, TINY), str(README), "exec"), ns)

    run_dir = tmp_path / "runs" / "stgt"
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert "hidden: 32" in (run_dir / "config.yaml").read_text()
    metrics = ns["metrics"]
    assert set(metrics["horizons"]) == {"3", "6", "12"} and metrics["split"] == "test"
    assert 0 < metrics["average"]["mae"] <= metrics["average"]["rmse"]
    assert json.loads((run_dir / "evaluation_test.json").read_text())["average"] == metrics["average"]
    assert tuple(ns["forecast"].mean.shape) == (12, 10, 1)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(ns["forecast"].mean.shape) == "(12, 10, 1)"
    assert printed[-2] == f"{metrics['average']['mae']} {metrics['horizons']['12']['mae']}"


def test_run_config_layers_and_typed_overrides():
    cfg = stgraph.run_config(model="last", data="x.h5", epochs=3, batch_size=8, null_value=float("nan"),
                             overrides={"train.lr": 1e-5, "model.params.window": 4, "data.split": [0.6, 0.2, 0.2]})
    assert (cfg.model.name, cfg.data.path, cfg.train.epochs, cfg.train.batch_size) == ("last", "x.h5", 3, 8)
    assert cfg.train.lr == 1e-5 and cfg.model.params["window"] == 4 and cfg.data.split == [0.6, 0.2, 0.2]
    assert cfg.data.null_value != cfg.data.null_value  # NaN
    # the same fields as `--set` texts give the same config
    same = stgraph.run_config(model="last", data="x.h5", epochs=3, batch_size=8, null_value=float("nan"),
                              overrides=["train.lr=1.0e-05", "model.params.window=4", "data.split=[0.6, 0.2, 0.2]"])
    assert same.to_dict().keys() == cfg.to_dict().keys() and same.train == cfg.train and same.model == cfg.model
    # a distribution is a probabilistic head; a RunConfig is a base to change
    probabilistic = stgraph.run_config(model="last", distribution="lognormal")
    assert probabilistic.model.probabilistic and probabilistic.model.distribution == "lognormal"
    assert stgraph.run_config(config=cfg, epochs=7).train.epochs == 7


def test_unknown_arguments_and_fields_are_refused_with_a_suggestion():
    with pytest.raises(ValueError, match=r"unknown argument 'epoch' \(did you mean 'epochs'\?\)"):
        stgraph.run_config(model="last", epoch=3)
    with pytest.raises(ValueError, match="train.lrr"):
        stgraph.run_config(model="last", overrides={"train.lrr": 0.1})


def test_train_logs_and_prints_nothing(tiny_synth, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="stgraph")
    run = stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="last", out=tmp_path / "r")
    assert capsys.readouterr().out == ""
    assert any("windows:" in r.getMessage() for r in caplog.records)
    assert all(r.name.startswith("stgraph") for r in caplog.records)
    opened = stgraph.open_run(tmp_path / "r")
    assert opened.config.model.name == "last" and opened.config.data.path == str(Path(tiny_synth["data"]).resolve())
    result = stgraph.evaluate(opened, "val", steps=[1, 2], write=False)
    assert set(result["horizons"]) == {"1", "2"} and not (tmp_path / "r" / "evaluation_val.json").exists()
    assert run.config.model.name == "last"


def test_import_stays_cheap_and_the_api_is_lazy():
    import subprocess
    import sys

    code = ("import sys, stgraph; print('torch' in sys.modules, 'stgraph.api' in sys.modules); "
            "stgraph.open_run; print('stgraph.api' in sys.modules, sorted(set(stgraph.__all__) & set(dir(stgraph))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "False False"
    assert out[1].startswith("True [") and "'train'" in out[1] and "'update'" in out[1]


@pytest.mark.parametrize("keep_folder", [True, False])
def test_train_answers_with_its_best_epoch_as_open_run_does(tiny_synth, tmp_path, monkeypatch, keep_folder):
    """Validation MAE scripted 3.0, 1.0, 2.0 over three epochs: the run returned by train() holds epoch 2's
    weights (not the last epoch's), and scores what open_run() scores from best.pt."""
    import torch

    from stgraph.training.forecaster import Forecaster

    real, seen, scripted = Forecaster.evaluate, [], [3.0, 1.0, 2.0]

    def scored(self, split="test", horizons=None):
        result = real(self, split, horizons)
        if split == "val":
            seen.append({k: v.clone() for k, v in self.model.state_dict().items()})
            result["average"]["mae"] = scripted[len(seen) - 1]
        return result

    monkeypatch.setattr(Forecaster, "evaluate", scored)
    out = tmp_path / "r" if keep_folder else None
    run = stgraph.train(data=tiny_synth["data"], graph=tiny_synth["adj"], model="stid", epochs=3, out=out, lr=0.05)
    assert len(seen) == 3 and run.state["best_epoch"] == 2 and run.state["epoch"] == 3
    now = run.model.state_dict()
    assert all(torch.equal(now[k], seen[1][k]) for k in now)                # epoch 2's weights
    assert not all(torch.equal(now[k], seen[2][k]) for k in now)            # not the last epoch's
    if keep_folder:
        monkeypatch.setattr(Forecaster, "evaluate", real)
        assert run.evaluate("test") == stgraph.open_run(out).evaluate("test")
