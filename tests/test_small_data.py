"""Short daily series (issue 23, small data): window counts, the warning for few validation windows, stgt's
residual choice on few windows, and a batch larger than the training split."""
from __future__ import annotations

import re

import pytest

from stgraph.cli.main import main
from stgraph.config import RunConfig, with_fields
from stgraph.errors import ConfigError


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    """60 days of daily counts at 100 regions: 7 days in, 7 out -> 47 windows (33 / 5 / 9 with 0.7 / 0.1 / 0.2)."""
    from stgraph.synth import write_synthetic_counts

    return write_synthetic_counts(tmp_path_factory.mktemp("daily"), num_sensors=100, days=60, interval="day")


def _cfg(paths, **fields):
    return with_fields(RunConfig(), {"data.path": str(paths["data"]), "data.graph": str(paths["graph"]),
                                     "data.input_len": 7, "data.horizon": 7, "train.progress": False,
                                     "train.threads": 1, **fields})


def test_few_validation_windows_need_a_large_gain(daily, monkeypatch, caplog):
    """On 5 validation windows (fewer than MIN_CHOICE_WINDOWS) stgt keeps 'last' whatever they show, and says so
    (issue 26); on 10 to 29 the seasonal average must be far ahead (FEW_WINDOWS_GAIN) for 'blend', and the log
    says on how few windows the choice rests; a smaller lead keeps 'last' and says why."""
    import stgraph.models.seasonal as seasonal
    from stgraph.models.seasonal import MIN_CHOICE_WINDOWS, MIN_VALIDATION_WINDOWS, choose_residual
    from stgraph.training.prepare import closed_form_data, prepare
    from stgraph.training.run import choose_defaults

    data = prepare(_cfg(daily)).data
    r = choose_residual(closed_form_data(data))
    assert r.windows == 5 < MIN_CHOICE_WINDOWS and r.ha_mae < r.last_mae and r.choice == "last"
    caplog.set_level("INFO", logger="stgraph")
    cfg = choose_defaults(_cfg(daily, **{"model.name": "stgt"}), data)
    lines = [r.getMessage() for r in caplog.records]
    assert cfg.model.params["residual"] == "last"
    assert re.fullmatch(r"stgt residual: last \(validation MAE over all steps, 5 windows: last value [\d.]+, seasonal "
                        r"average [\d.]+; only 5 validation windows \(fewer than 10\): too few to choose the blend on, "
                        r"whatever they show; keeping 'last'; model\.params\.residual = last or blend chooses\)",
                        lines[0]), lines
    data = prepare(_cfg(daily, **{"data.split": [0.5, 0.3, 0.2]})).data  # 14 validation windows
    r = choose_residual(closed_form_data(data))
    share = 1 - r.ha_mae / r.last_mae
    assert MIN_CHOICE_WINDOWS <= r.windows < MIN_VALIDATION_WINDOWS and share >= seasonal.FEW_WINDOWS_GAIN
    assert r.choice == "blend" and f"the choice rests on only {r.windows} validation windows" in r.reason
    monkeypatch.setattr(seasonal, "FEW_WINDOWS_GAIN", share + 0.01)  # a lead just short of the bar
    r = choose_residual(closed_form_data(data))
    assert r.choice == "last" and "windows (fewer than 30) need; keeping 'last'" in r.reason
    # the same data with a validation split of 30 windows or more: the blend wins by a clear margin
    data = prepare(_cfg(daily, **{"data.split": [0.2, 0.7, 0.1], "data.input_len": 2, "data.horizon": 1})).data
    r = choose_residual(closed_form_data(data))
    assert r.windows >= MIN_VALIDATION_WINDOWS and r.choice == "blend", r


def test_train_logs_windows_and_warns(daily, capsys, tmp_path):
    """Every run logs its windows; one that trains (stid) is warned about its 5 validation windows, a closed-form
    one (last value, which neither batches nor stops early) runs with the default batch of 64 > 33 windows."""
    base = ["train", "--data", str(daily["data"]), "--graph", str(daily["graph"]), "--set", "data.input_len=7",
            "--set", "data.horizon=7", "--set", "train.threads=1", "--set", "train.progress=false"]
    warning = ("warning: model selection (the best checkpoint) rests on only 5 validation windows (fewer than 30); "
               "for more: a longer series, other data.split ratios or a shorter data.input_len / data.horizon")
    for model, extra, warned in (("last", [], False),
                                 ("stid", ["--epochs", "1", "--set", "train.max_batches=1", "--batch-size", "8"], True)):
        rc = main(base + ["--model", model, "--out", str(tmp_path / model), *extra])
        out, err = capsys.readouterr()
        assert rc == 0, err
        text = out + err
        assert text.count("windows: 33 train, 5 validation, 9 test (input 7 + horizon 7 steps each)") == 1, text
        assert (warning in text) == warned, text


def test_batch_larger_than_the_training_windows(daily, capsys, tmp_path):
    """Refused before anything is built, with the number of windows and the fix."""
    from stgraph.training.run import train

    with pytest.raises(ConfigError, match=r"the training split has 33 windows, fewer than one batch "
                                          r"\(train\.batch_size = 64\); use train\.batch_size = 33 or less, or more windows: "
                                          r"a longer series"):
        train(_cfg(daily, **{"model.name": "stid"}), None)
    rc = main(["train", "--data", str(daily["data"]), "--graph", str(daily["graph"]), "--model", "stid",
               "--set", "data.input_len=7", "--set", "data.horizon=7", "--set", "train.threads=1",
               "--batch-size", "64", "--out", str(tmp_path / "run")])
    out, err = capsys.readouterr()
    assert rc != 0 and "33 windows, fewer than one batch" in err
    assert not (tmp_path / "run").exists()  # refused before the run directory was written
