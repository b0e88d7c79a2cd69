"""`stgraph bench` on a tiny synthetic network, and models given by import path."""
import csv
import json
import sys
from pathlib import Path

import pytest

from stgraph.cli.main import main
from stgraph.models.registry import build_model, count_parameters, get_model_class

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/user_model.py


def test_registry_takes_a_user_model_by_import_path():
    cls = get_model_class("user_model:TinyUserModel")
    m = build_model("user_model:TinyUserModel", {"num_nodes": 5, "in_channels": 2, "out_channels": 1,
                                                 "input_len": 12, "horizon": 3}, {"width": 4})
    assert isinstance(m, cls) and count_parameters(m) == (24 * 4 + 4) + (4 * 3 + 3)
    with pytest.raises(Exception, match="did you mean 'width'"):
        build_model("user_model:TinyUserModel", {"input_len": 12, "horizon": 3, "in_channels": 1,
                                                 "out_channels": 1}, {"widht": 4})
    with pytest.raises(Exception, match="cannot import"):
        get_model_class("user_model:NoSuchModel")


def test_bench_writes_a_well_formed_table(capsys, tiny_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]) + ":" + __import__("os").environ.get("PYTHONPATH", ""))
    out = tmp_path / "bench"
    argv = ["bench", "--data", str(tiny_synth["data"]), "--graph", str(tiny_synth["adj"]),
            "--models", "last,var,user_model:TinyUserModel", "--epochs", "2", "--seeds", "2",
            "--set", "train.max_batches=4", "--set", "train.batch_size=16", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["model"] for r in rows] == ["last", "var", "user_model:TinyUserModel"]
    by = {r["model"]: r for r in rows}
    assert by["last"]["seeds"] == "1" and by["user_model:TinyUserModel"]["seeds"] == "2"
    assert int(by["user_model:TinyUserModel"]["parameters"]) == (12 * 8 + 8) + (8 * 12 + 12)
    for r in rows:
        for key in ("h3_mae", "h6_mae", "h12_mae", "avg_mae", "avg_rmse", "avg_mape"):
            assert float(r[key]) > 0
        assert float(r["peak_rss_mb"]) > 0 and float(r["train_seconds"]) >= 0
    assert float(by["user_model:TinyUserModel"]["avg_mae_std"]) > 0  # two seeds differ
    # last value in the table equals its own evaluation
    ev = json.loads((out / "runs" / "last" / "seed0" / "bench_eval.json").read_text())
    assert float(by["last"]["h12_mae"]) == pytest.approx(ev["horizons"]["12"]["mae"], abs=1e-4)
    # the transition-regime MAE (speeds): the regime evaluation's transition figure, pooled over the steps
    from stgraph import api
    regimes = api.evaluate(api.open_run(out / "runs" / "last" / "seed0"), "test", by="regime", write=False)["by"]
    transition = regimes["groups"]["transition"]["average"]["mae"]
    assert float(by["last"]["transition_mae"]) == pytest.approx(transition, abs=1e-4)
    assert ev["transition_mae"] == pytest.approx(transition, rel=1e-9)
    assert transition > float(by["last"]["avg_mae"])  # last value misses every crossing
    assert all(float(r["transition_mae"]) > 0 for r in rows)
    assert float(by["user_model:TinyUserModel"]["transition_mae_std"]) > 0
    steps = list(csv.DictReader((out / "per_step.csv").open()))
    assert len(steps) == 12 * (1 + 1 + 2)
    md = (out / "results.md").read_text()
    assert "| last |" in md and "MAE 60 min" in md and "stgraph bench" in md and "| last |" in printed
    head = next(l for l in md.splitlines() if l.startswith("| model"))
    last_row = next(l for l in md.splitlines() if l.startswith("| last |"))
    assert "MAE transition" in head and "MAE transition:" in md
    assert last_row.split(" | ")[head.split(" | ").index("MAE transition")] == f"{transition:.2f}"
    # run_bench's progress lines reach the CLI's output through the "stgraph" logger
    assert "[1/4] last seed 0 ..." in printed and "[4/4] user_model:TinyUserModel seed 1: test MAE@12 " in printed
    assert (out / "horizon_mae.png").read_bytes()[:4] == b"\x89PNG"

    # a rerun reuses the finished runs instead of training again
    before = (out / "runs" / "user_model.TinyUserModel" / "seed1" / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert main(argv) == 0
    after = (out / "runs" / "user_model.TinyUserModel" / "seed1" / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert before == after


def test_bench_compare_published_puts_paper_numbers_beside(capsys, tiny_synth, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(tiny_synth["data"]), "--graph", str(tiny_synth["adj"]), "--models", "var",
                 "--compare-published", "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "*var published*" in md and "source:" in md


def test_bench_rejects_unknown_models_before_training(capsys, tiny_synth, tmp_path):
    rc = main(["bench", "--data", str(tiny_synth["data"]), "--models", "last,dcrnnn", "--out", str(tmp_path / "b")])
    assert rc != 0 and "unknown model 'dcrnnn'" in capsys.readouterr().err
    assert not (tmp_path / "b" / "runs").exists()


def test_a_shipped_setup_is_a_bench_entry(tmp_path):
    """`--models stgt,stgt-classic` compares the two shapes of stgt in one bench: the set-up's model and its
    file (every classic knob spelled out, not inherited from stgt.yaml's efficient ones)."""
    from stgraph.bench import BenchSpec, run_config, setup_of
    from stgraph.config import shipped_config

    spec = BenchSpec(out=tmp_path, models=["stgt", "stgt-classic"], data="x.h5")
    assert setup_of("stgt-classic") == ("stgt", shipped_config("stgt-classic"))
    assert setup_of("stid") == ("stid", shipped_config("stid"))
    classic, given = run_config(spec, "stgt-classic", 0)
    efficient, _ = run_config(spec, "stgt", 0)
    assert classic.model.name == efficient.model.name == "stgt" and "model.name" in given
    p = classic.model.params
    assert (p["patch_len"], p["spatial_ff"], p["window_skip"], p["decoder_layers"]) == (1, True, False, 1)
    q = efficient.model.params
    assert (q["patch_len"], q["spatial_ff"], q["window_skip"], q["decoder_layers"]) == (3, False, True, 0)
    assert classic.train.lr == 0.001 and efficient.train.lr == shipped_lr("stgt")
    assert classic.train.budget_minutes == 0 and efficient.train.budget_minutes == 10  # not inherited


def shipped_lr(name):
    from stgraph.config import load_config, shipped_config
    return load_config(shipped_config(name)).train.lr


def test_transition_column_is_left_out_where_regimes_do_not_apply(tmp_path):
    """Counts carry no transition_mae (stgraph.bench.running.transition_mae is None): no column in either table;
    a speed row's figure is averaged over seeds like the others."""
    from stgraph.bench.tables import aggregate, markdown, write_csv

    def row(model, seed, mae, transition=None):
        result = {"horizons": {str(h): {"mae": mae, "rmse": mae, "mape": 0.1} for h in (3, 6, 12)},
                  "average": {"mae": mae, "rmse": mae, "mape": 0.1}}
        if transition is not None:
            result["transition_mae"] = transition
        return {"model": model, "seed": seed, "result": result, "parameters": 1, "train_seconds": 0.0}

    counts = aggregate([row("last", 0, 2.0), row("var", 0, 1.5)])
    write_csv(counts, tmp_path / "counts.csv")
    assert "transition" not in (tmp_path / "counts.csv").read_text() and "transition" not in markdown(counts)
    speeds = aggregate([row("stgt", 0, 2.0, 5.0), row("stgt", 1, 2.0, 7.0)])
    assert speeds[0]["transition_mae"] == 6.0 and speeds[0]["transition_mae_std"] == pytest.approx(2 ** 0.5)
    write_csv(speeds, tmp_path / "speeds.csv")
    assert list(csv.DictReader((tmp_path / "speeds.csv").open()))[0]["transition_mae"] == "6.0"
    assert "| MAE transition |" in markdown(speeds) and "6.00 ± 1.41" in markdown(speeds)
