"""The command line round trip: data info -> train -> evaluate -> predict -> plot, and its error contract."""
import csv
import json

import h5py
import numpy as np
import pytest

from stgraph.cli.main import main


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_data_info_json_on_real_metr_la_week(capsys, metr_week_dir):
    rc, out, err = run(capsys, "data", "info", metr_week_dir / "metr-la-week.h5", "--json")
    assert rc == 0 and err == ""
    info = json.loads(out)
    assert (info["steps"], info["sensors"], info["channels"]) == (2016, 207, 1)
    assert info["start"].startswith("2012-03-01T00:00") and info["end"].startswith("2012-03-07T23:55")
    assert info["interval"] == "5min" and info["missing_ratio"] == 0.0


def test_graph_info_json_on_real_adj_pickle(capsys, metr_week_dir):
    import pickle
    rc, out, _ = run(capsys, "graph", "info", metr_week_dir / "adj_mx.pkl", "--json")
    info = json.loads(out)
    with open(metr_week_dir / "adj_mx.pkl", "rb") as fh:
        w = pickle.load(fh, encoding="latin1")[2]
    off_diag = int(((w != 0) & ~np.eye(len(w), dtype=bool)).sum())
    assert rc == 0 and info["nodes"] == 207 and info["edges"] == off_diag
    assert set(info) >= {"nodes", "edges", "components", "min_degree", "max_degree", "mean_degree"}


def test_train_evaluate_predict_plot_round_trip(capsys, tiny_synth, tmp_path):
    run_dir = tmp_path / "run"
    rc, out, err = run(capsys, "train", "--data", tiny_synth["data"], "--graph", tiny_synth["adj"], "--model", "stgt",
                       "--out", run_dir, "--epochs", "1", "--batch-size", "16", "--probabilistic", "--no-progress",
                       "--set", "model.params.hidden=16", "--set", "train.max_batches=3")
    assert rc == 0, err
    assert {"config.yaml", "run.json", "metrics.csv", "train_summary.json"} <= {p.name for p in run_dir.iterdir()}
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert "hidden: 16" in (run_dir / "config.yaml").read_text()

    rc, out, _ = run(capsys, "evaluate", run_dir, "--json")
    res = json.loads(out)
    assert rc == 0 and set(res["horizons"]) == {"3", "6", "12"}
    for vals in list(res["horizons"].values()) + [res["average"]]:
        assert {"mae", "rmse", "mape", "coverage90", "crps"} <= set(vals)
        assert 0 < vals["mae"] <= vals["rmse"]

    rc, out, _ = run(capsys, "evaluate", run_dir)
    assert rc == 0 and "60 min" in out and "MAE" in out

    rc, out, _ = run(capsys, "predict", run_dir, "--out", tmp_path / "fc.csv", "--at", "2012-03-02T08:00")
    assert rc == 0
    rows = list(csv.DictReader((tmp_path / "fc.csv").open()))
    assert len(rows) == 12 * 10 and rows[0]["timestamp"] == "2012-03-02T08:05:00"
    assert rows[-1]["timestamp"] == "2012-03-02T09:00:00" and float(rows[0]["std"]) > 0
    assert {r["sensor_id"] for r in rows} == set(json.loads((run_dir / "run.json").read_text())["sensor_ids"])

    rc, _, _ = run(capsys, "predict", run_dir, "--out", tmp_path / "fc.h5")
    with h5py.File(tmp_path / "fc.h5") as f:
        assert f["forecast"].shape == (12, 10, 1) and f["std"].shape == (12, 10, 1)
        assert np.isfinite(f["forecast"][()]).all()
        # the CSV and the HDF5 hold the same numbers for the same issue time
    rc, _, _ = run(capsys, "predict", run_dir, "--out", tmp_path / "fc_at.h5", "--at", "2012-03-02T08:00")
    with h5py.File(tmp_path / "fc_at.h5") as f:
        first = {r["sensor_id"]: float(r["forecast"]) for r in rows if r["horizon"] == "1"}
        ids = [s.decode() for s in f["sensor_ids"][()]]
        assert np.allclose([first[i] for i in ids], f["forecast"][0, :, 0], atol=1e-3)

    rc, out, _ = run(capsys, "plot", run_dir, "--out", tmp_path / "plots" / "fc.png",
                     "--locations", tiny_synth["locations"])
    assert rc == 0
    for name in ("fc.png", "fc_errors.png", "fc_attention.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_predict_from_a_short_recent_file(capsys, tiny_synth, tmp_path):
    from stgraph.io import read_series, write_series

    run_dir = tmp_path / "last"
    assert run(capsys, "train", "--data", tiny_synth["data"], "--graph", tiny_synth["adj"], "--model", "last",
               "--out", run_dir)[0] == 0
    s = read_series(tiny_synth["data"])
    recent = s.slice(slice(100, 112)) if hasattr(s, "slice") else None
    if recent is None:
        from dataclasses import replace
        recent = replace(s, values=s.values[100:112], timestamps=s.timestamps[100:112])
    write_series(recent, tmp_path / "recent.h5")
    rc, out, err = run(capsys, "predict", run_dir, "--data", tmp_path / "recent.h5", "--out", tmp_path / "fc.csv")
    assert rc == 0, err
    rows = list(csv.DictReader((tmp_path / "fc.csv").open()))
    by_sensor = {r["sensor_id"]: float(r["forecast"]) for r in rows if r["horizon"] == "12"}
    assert by_sensor == {sid: pytest.approx(float(v), abs=1e-3) for sid, v in zip(s.sensor_ids, s.values[111, :, 0])}


def test_failures_are_one_line_without_traceback(capsys, tmp_path):
    rc, out, err = run(capsys, "data", "info", tmp_path / "missing.h5")
    assert rc != 0 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "missing.h5" in err
    rc, _, err = run(capsys, "evaluate", tmp_path)
    assert rc != 0 and "not a run directory" in err and err.count("\n") == 1
    rc, _, err = run(capsys, "train", "--data", tmp_path / "x.h5", "--model", "stgtt", "--out", tmp_path / "r")
    assert rc != 0 and "did you mean 'stgt'" in err


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(Exception):
        main(["data", "info", str(tmp_path / "missing.h5"), "--debug"])


def test_run_directory_holding_another_run_is_refused_unless_overwrite(capsys, tiny_synth, tmp_path):
    base = ["train", "--data", tiny_synth["data"], "--graph", tiny_synth["adj"], "--out", tmp_path / "r"]
    assert run(capsys, *base, "--model", "last")[0] == 0
    rc, _, err = run(capsys, *base, "--model", "var")
    assert rc != 0 and "already holds a different run" in err and "--overwrite" in err
    assert run(capsys, *base, "--model", "var", "--overwrite")[0] == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["model"] == "var"


def test_log_messages_on_stdout_quiet_and_json_keep_it_clean(capsys, tiny_synth, tmp_path):
    import logging

    base = ["train", "--data", tiny_synth["data"], "--graph", tiny_synth["adj"], "--model", "stgt", "--epochs", "1",
            "--batch-size", "16", "--no-progress", "--set", "model.params.hidden=16", "--set", "train.max_batches=2"]
    rc, out, err = run(capsys, *base, "--out", tmp_path / "r")
    assert rc == 0, err
    assert "windows: " in out and out.rstrip().splitlines()[-1].startswith("finished: 1 epoch(s)")
    rc, out, err = run(capsys, *base, "--out", tmp_path / "q", "-q")  # -q anywhere: the result line only
    assert rc == 0 and "windows: " not in out and out.startswith("finished: 1 epoch(s)"), out
    assert logging.getLogger("stgraph").handlers == []  # the command's handler is gone after it
    rc, out, err = run(capsys, "update", tmp_path / "r", "--data", tiny_synth["data"], "--epochs", "1", "--weeks",
                       "0", "--no-progress", "--out", tmp_path / "u", "--json")
    assert rc == 0, err
    summary = json.loads(out)  # stdout holds the JSON alone
    assert summary["epochs"] == 1 and summary == json.loads((tmp_path / "u" / "update.json").read_text())
    with pytest.raises(SystemExit) as stop:
        main(["-v", "-q", "data", "list"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_flags_take_types_and_help_defaults_from_the_config_dataclasses(capsys):
    from stgraph.config import TrainConfig
    from stgraph.federated.config import FederatedConfig

    with pytest.raises(SystemExit):
        main(["federated", "simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    fed = FederatedConfig()
    assert f"K clients (default {fed.clients})" in text and f"server rounds (default {fed.rounds})" in text
    assert f"FedProx proximal weight (default {fed.proximal_mu:g})" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert f"else {TrainConfig().batch_size})" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as stop:
        main(["federated", "simulate", "--out", "x", "--clients", "three"])
    assert stop.value.code == 2 and "--clients: invalid int value: 'three'" in capsys.readouterr().err


def test_library_arguments_are_said_as_flags():
    from stgraph.cli.common import in_flags

    assert in_flags("pass resume=True to continue it, overwrite=True to replace it, or choose another out") == \
        "pass --resume to continue it, --overwrite to replace it, or choose another --out"
    assert in_flags("Pass model='pkg.mod:Net' to import it") == "Pass --model pkg.mod:Net to import it"
    assert in_flags("model = 'stgt': the run was trained with model 'last'") == \
        "model = 'stgt': the run was trained with model 'last'"  # a field's value stays as it is
