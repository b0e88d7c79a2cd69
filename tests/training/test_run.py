"""The Run handle and the one table of run-directory file names."""
import csv
import json
from pathlib import Path

import pytest

from stgraph.bench import BenchSpec, run_bench
from stgraph.cli.main import main
from stgraph.config import RunConfig, with_fields
from stgraph.errors import ForeignFileError
from stgraph.files import record_written
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
    # what a run whose config.yaml was deleted leaves behind (its run.json in the folder's manifest: stgraph's),
    # and a file of the user's
    files.metrics.write_text("epoch,train_loss,val_mae\n1,9,9\n2,9,9\n3,9,9\n")
    for p in (files.evaluation("test"), files.bench_evaluation, files.summary, files.info):
        p.write_text('{"stale": true}')
    record_written([files.info])
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


def test_the_run_writer_swaps_a_new_run_in_and_publishes_a_finished_one(tiny_synth, tmp_path):
    """RunWriter.start: a new folder renamed into place (the old run is gone at once); publish: checkpoints,
    run.json and config.yaml of a finished run in one swap; RunRecord: the one run.json and checkpoint layout."""
    from stgraph.training.checkpoint import load_checkpoint
    from stgraph.training.layout import BEST, LAST
    from stgraph.training.prepare import make_model, prepare
    from stgraph.training.writer import RunRecord, RunWriter, fingerprint_of

    cfg = _cfg(tiny_synth, "last")
    prep = prepare(cfg)
    model = make_model(cfg, prep.data)
    record = RunRecord.of(cfg, prep)
    assert record.fingerprint == fingerprint_of(prep.data, prep.graph) and record.covariates is None
    info = record.info(model, prep, lineage=[])
    assert list(info) == ["model", "parameters", "sensor_ids", "channels", "target_channels", "time", "fingerprint",
                          "source", "lineage"]
    assert info["sensor_ids"] == list(prep.series.sensor_ids) and Path(info["source"]).is_absolute()
    ck = record.checkpoint(model.state_dict(), scaler=prep.data.scaler.state_dict(), trainer={"epoch": 0})
    assert list(ck) == ["model", "trainer", "scaler", "config", "fingerprint"]  # None entries are left out
    out = tmp_path / "r"
    out.mkdir()
    (out / "metrics.csv").write_text("stale")  # a run file of no run stgraph made (no config.yaml, no manifest)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ForeignFileError, match="metrics.csv' is in the way"):
        RunWriter(out, record).start(info)  # not stgraph's: refused, nothing touched
    assert (out / "metrics.csv").read_text() == "stale" and sorted(p.name for p in out.iterdir()) == [
        "metrics.csv", "notes.txt"]
    writer = RunWriter(out, record, force=True)
    writer.start(info)  # force: removed by a start; the user's other files stay
    assert not (out / "metrics.csv").exists() and (out / "notes.txt").exists()
    assert json.loads(writer.files.info.read_text()) == json.loads(json.dumps(info))
    with pytest.raises(ForeignFileError, match="notes.txt'?, which stgraph did not write"):
        RunWriter(out, record).publish(info, {BEST: ck, LAST: ck})  # swapping would delete notes.txt
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    writer = RunWriter(out, record)
    writer.publish(info, {BEST: ck, LAST: ck})  # over a run stgraph made: swapped in at once
    assert sorted(p.name for p in out.iterdir()) == [".stgraph-files.json", "checkpoints", "config.yaml",
                                                      "run.json"]
    assert load_checkpoint(writer.files.best)["fingerprint"] == record.fingerprint
    assert not list(tmp_path.glob(".r.*"))  # no staging folder left behind
    opened = Run.open(out)
    assert opened.config.model.name == "last" and opened.progress == {"epoch": 0}
