"""The Run handle and the one table of run-directory file names."""
import csv
import json

import pytest

from stgraph.bench import BenchSpec, run_bench
from stgraph.cli.main import main
from stgraph.config import RunConfig, with_fields
from stgraph.training.layout import RunFiles
from stgraph.training.run import Run, train


def _cfg(tiny_synth, model, **train_fields):
    return with_fields(RunConfig(), {"data.path": str(tiny_synth["data"]), "data.graph": str(tiny_synth["adj"]),
                                     "model.name": model, "train.progress": False,
                                     **{f"train.{k}": v for k, v in train_fields.items()}})


def test_run_files_list_what_a_run_wrote(tiny_synth, tmp_path, capsys):
    run = train(_cfg(tiny_synth, "last"), tmp_path / "r")
    files = RunFiles(tmp_path / "r")
    assert run.files.root == files.root and run.config.model.name == "last" and not run.forecaster.trainable
    assert sorted(p.relative_to(files.root).as_posix() for p in files.written()) == \
        ["checkpoints/best.pt", "checkpoints/last.pt", "config.yaml", "run.json", "train_summary.json"]
    assert main(["evaluate", str(files.root), "--split", "val"]) == 0
    assert files.evaluation("val") in files.written()
    assert json.loads(files.evaluation("val").read_text())["split"] == "val"
    opened = Run.open(files.root)
    assert opened.evaluate("val")["average"] == run.evaluate("val")["average"]
    assert opened.progress["finished"] and opened.notice() is None


def test_a_new_run_inherits_no_results_left_in_its_folder(tiny_synth, tmp_path):
    out = tmp_path / "r"
    files = RunFiles(out)
    out.mkdir()
    # what a run whose config.yaml was deleted leaves behind, and a file of the user's
    files.metrics.write_text("epoch,train_loss,val_mae\n1,9,9\n2,9,9\n3,9,9\n")
    for p in (files.evaluation("test"), files.bench_evaluation, files.summary):
        p.write_text('{"stale": true}')
    (out / "notes.txt").write_text("mine")
    train(_cfg(tiny_synth, "stgt", epochs=1, max_batches=2, batch_size=16), out)
    rows = list(csv.DictReader(files.metrics.open()))
    assert [int(r["epoch"]) for r in rows] == [1]  # not appended to the stale table
    assert not files.evaluation("test").exists() and not files.bench_evaluation.exists()
    assert json.loads(files.summary.read_text())["epochs"] == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_a_run_that_fails_in_its_child_process_is_a_row_with_the_error(tiny_synth, tmp_path):
    spec = BenchSpec(out=tmp_path / "b", models=["last"], data=str(tiny_synth["data"]), graph=str(tiny_synth["adj"]),
                     seeds=1, overrides=["last:model.params.widht=3"])
    rows = run_bench(spec)
    assert len(rows) == 1 and "model.params.widht: 'last' has no such argument" in rows[0]["error"]
    assert "last seed 0: training failed" in rows[0]["error"]
    assert not RunFiles(tmp_path / "b" / "runs" / "last" / "seed0").bench_evaluation.exists()


def test_write_needs_a_run_directory(tiny_synth):
    run = train(_cfg(tiny_synth, "last"), None)
    assert run.files is None and run.notice() is None
    with pytest.raises(Exception, match="without a run directory"):
        run.write_evaluation({}, "test")
