"""Training for the same compute: a CPU-time budget per run (train.budget_minutes), its cosine schedule,
snapshots that let one run serve several budgets, and `stgraph bench --budget`."""
import csv
import dataclasses
import math
import json

import pytest

from stgraph.bench import BenchSpec, plan, run_bench, write_reports
from stgraph.cli.main import main
from stgraph.budgets import parse_budget, parse_budgets
from stgraph.config import RunConfig, with_fields
from stgraph.errors import ConfigError
from stgraph.training.checkpoint import load_checkpoint
from stgraph.training.layout import RunFiles
from stgraph.training.run import train
from stgraph.training.schedule import cosine_factor
from stgraph.training.trainer import Trainer



def _cfg(tiny_synth, **train_kw):
    """stid (a fast MLP) on the tiny network: 24 batches of 16 windows an epoch."""
    return with_fields(RunConfig(), {
        "data.path": str(tiny_synth["data"]), "data.graph": str(tiny_synth["adj"]), "model.name": "stid",
        "train.batch_size": 16, "train.progress": False, "train.patience": 0, "train.scheduler": "multistep",
        **{f"train.{k}": v for k, v in train_kw.items()}})


def test_budget_text_and_config_field():
    assert parse_budget("10m") == 10 and parse_budget("90s") == 1.5 and parse_budget("1.5h") == 90
    assert parse_budget("10") == 10 and parse_budget(" 2 min ") == 2
    assert parse_budgets("10m,1m,3m,1m") == [1, 3, 10]
    for bad in ("10x", "", "0", "-1m", "nan", "inf", "m"):
        with pytest.raises(ConfigError, match="--budget .*expected a positive duration .*90s, 10m, 1.5h"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match=r"train.budget_minutes = -1.0: expected a finite number .*e.g. 10"):
        with_fields(RunConfig(), {"train.budget_minutes": -1.0}).validate()
    with pytest.raises(ConfigError, match="train.budget_minutes = nan"):
        with_fields(RunConfig(), {"train.budget_minutes": float("nan")}).validate()
    with pytest.raises(ConfigError, match=r"train.budget_stop = 'steps' \(did you mean 'step'\?\)"):
        with_fields(RunConfig(), {"train.budget_stop": "steps"}).validate()


@pytest.mark.parametrize("argv", [["train", "--out", "x", "--budget", "10x"],
                                  ["bench", "--models", "last", "--out", "x", "--budget", "1m,10x"]])
def test_a_bad_budget_on_the_command_line_exits_with_the_message(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --budget: '10x': expected a positive duration of CPU time" in err and "1.5h" in err


def test_the_budget_stops_after_the_epoch_or_at_the_step(tiny_synth, tmp_path):
    budget = 0.0001  # 6 ms of CPU: less than one epoch, a few steps
    run = train(_cfg(tiny_synth, epochs=5, budget_minutes=budget), tmp_path / "epoch")
    st = run.state
    assert st["budget_stopped"] and st["epoch"] == 1 and st["steps"] == 24 and st["cpu_seconds"] >= budget * 60
    summary = json.loads((tmp_path / "epoch" / "train_summary.json").read_text())
    assert summary["cpu_seconds"] >= budget * 60 and summary["budget_minutes"] == budget and summary["epochs"] == 1

    run = train(_cfg(tiny_synth, epochs=5, budget_minutes=budget, budget_stop="step"), tmp_path / "step")
    st = run.state
    assert st["budget_stopped"] and st["epoch"] == 1 and 1 <= st["steps"] < 24
    assert st["cpu_seconds"] >= budget * 60
    rows = list(csv.DictReader((tmp_path / "step" / "metrics.csv").open()))
    assert len(rows) == 1 and float(rows[0]["val_mae"]) > 0  # validated what it had
    assert (tmp_path / "step" / "checkpoints" / "best.pt").is_file()


def test_the_budget_cosine_anneals_over_the_cpu_time(tiny_synth):
    assert cosine_factor(0.0) == 1.0
    assert cosine_factor(0.5) == pytest.approx(0.02 + 0.98 * 0.5)  # 0.51
    assert cosine_factor(1.0) == pytest.approx(0.02) and cosine_factor(3.0) == pytest.approx(0.02)
    run = train(_cfg(tiny_synth, epochs=1, max_batches=1, scheduler="cosine", warmup_epochs=1, budget_minutes=1.0,
                     lr=0.01), None)
    tr = Trainer(run.forecaster, run.config.train)  # a trainer of this run, where it stopped (epoch 1)
    tr.state.update(run.state)
    assert tr._lr_factor(0) == pytest.approx(0.5)  # warm-up stays epoch-based: (0 + 1) / (1 + 1)
    tr.cfg = dataclasses.replace(tr.cfg, epochs=101)  # 100 epochs after warm-up: the budget is the nearer end
    for used, want in ((0.0, 1.0), (30.0, 0.51), (60.0, 0.02), (90.0, 0.02)):
        tr.state["cpu_seconds"] = used
        assert tr._lr_factor(1) == pytest.approx(want)
        tr._apply_lr(1)
        assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * want)
    # halfway through the epochs (epoch 51): the epochs govern while they are nearer their end than the budget
    for used, want in ((0.0, 0.51), (45.0, 0.02 + 0.98 * (1 + math.cos(0.75 * math.pi)) / 2)):
        tr.state["cpu_seconds"] = used
        assert tr._lr_factor(51) == pytest.approx(want)


def test_resume_continues_the_cpu_count(tiny_synth, tmp_path):
    out = tmp_path / "run"
    first = train(_cfg(tiny_synth, epochs=1, max_batches=3), out).state["cpu_seconds"]
    assert first > 0
    assert load_checkpoint(RunFiles(out).last)["trainer"]["cpu_seconds"] == pytest.approx(first)
    st = train(_cfg(tiny_synth, epochs=2, max_batches=3), out, resume=True).state
    assert st["epoch"] == 2 and st["steps"] == 6 and st["cpu_seconds"] > first
    # a budget that is spent already: the resumed run stops before another epoch
    st = train(_cfg(tiny_synth, epochs=5, max_batches=3, budget_minutes=st["cpu_seconds"] / 60), out, resume=True).state
    assert st["epoch"] == 2 and st["budget_stopped"]


def test_snapshot_marks_keep_the_best_checkpoint_at_each(tiny_synth, tmp_path):
    out = tmp_path / "run"
    run = train(_cfg(tiny_synth, epochs=3, max_batches=2, budget_minutes=100.0), out,
                snapshot_marks=[1e-6, 50.0])
    files = RunFiles(out)
    assert files.snapshot(1e-6).name == "best@1e-06m.pt" and files.snapshot(0.5).name == "best@0.5m.pt"
    first, later = run.state["snapshots"]
    assert first == {"minutes": 1e-6, "cpu_seconds": pytest.approx(first["cpu_seconds"]), "epoch": 1,
                     "best_epoch": 1, "reached": True}
    assert later["minutes"] == 50.0 and not later["reached"] and later["epoch"] == 3  # the run ended first
    assert files.snapshot(1e-6).is_file() and files.snapshot(50.0).is_file()
    summary = json.loads(files.summary.read_text())
    assert [s["minutes"] for s in summary["snapshots"]] == [1e-6, 50.0]
    with pytest.raises(ConfigError, match=r"snapshot marks .*\(multistep or none\)"):
        train(_cfg(tiny_synth, epochs=1, max_batches=1, budget_minutes=1.0, scheduler="cosine"), None,
              snapshot_marks=[0.5])


def test_bench_with_budgets(tiny_synth, tmp_path):
    out = tmp_path / "bench"
    budgets = [0.002, 0.005]
    spec = BenchSpec(out=out, models=["last", "stid"], data=str(tiny_synth["data"]), graph=str(tiny_synth["adj"]),
                     seeds=1, overrides=["train.batch_size=16"], budgets=budgets, jobs=2)
    # a cosine model would train once per budget; multistep stid once for both
    cosine = BenchSpec(**{**spec.__dict__, "overrides": spec.overrides + ["stid:train.scheduler=cosine"]})
    assert [(j.model, j.budget, j.serves) for j in plan(cosine)] == [
        ("last", None, (0.002, 0.005)), ("stid", 0.002, (0.002,)), ("stid", 0.005, (0.005,))]
    assert [(j.model, j.budget, j.serves) for j in plan(spec)] == [
        ("last", None, (0.002, 0.005)), ("stid", 0.005, (0.002, 0.005))]

    rows = run_bench(spec)
    assert [(r["model"], r["budget"]) for r in rows] == [("last", 0.002), ("last", 0.005), ("stid", 0.002),
                                                         ("stid", 0.005)]
    assert not any("error" in r for r in rows)
    stid_dir = out / "runs" / "stid" / "budget0.005m" / "seed0"
    assert sorted(p.name for p in (out / "runs" / "stid").iterdir() if p.is_dir()) == ["budget0.005m"]  # one run
    assert (stid_dir / "checkpoints" / "best@0.002m.pt").is_file()
    small, large = rows[2], rows[3]
    assert small["cpu_seconds"] >= 0.002 * 60 and large["cpu_seconds"] >= 0.005 * 60
    assert small["epochs"] <= large["epochs"]
    cfg = (stid_dir / "config.yaml").read_text()
    assert "budget_minutes: 0.005" in cfg and "epochs: 10000" in cfg and "patience: 0" in cfg and "threads: 1" in cfg

    paths = write_reports(spec, rows, "stgraph bench ...")
    table = list(csv.DictReader(paths["csv"].open()))
    assert [(r["model"], float(r["budget_minutes"])) for r in table] == [
        ("last", 0.002), ("stid", 0.002), ("last", 0.005), ("stid", 0.005)]
    assert table[0]["h12_mae"] == table[2]["h12_mae"]  # the closed-form model's one fit stands in both
    assert all(float(r["avg_mae"]) > 0 and r["seeds"] == "1" and r["cpu_seconds"] for r in table)
    md = paths["md"].read_text()
    assert "## budget 0.002 CPU min" in md and "## budget 0.005 CPU min" in md and "one torch thread per run" in md
    assert "best-validation checkpoint" in md and "## best model per budget and horizon" in md
    assert "| 0.005 min |" in md
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"

    # a rerun reuses every finished run
    before = (stid_dir / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert [r["result"] for r in run_bench(spec)] == [r["result"] for r in rows]
    assert (stid_dir / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_a_step_mode_snapshot_is_the_run_with_that_budget(tiny_synth, tmp_path, monkeypatch):
    """budget_stop 'step': a run with a budget of 2 and a mark at 1 keeps, at the mark, the best checkpoint of a
    run with a budget of 1 (same steps, same validation, same weights), and trains on. The CPU clock is a fake
    one that advances 1 s per reading, so the step at which each crosses is the same in both runs."""
    import torch

    import stgraph.training.budget as budget_mod

    class Clock:
        t = 0.0

        def process_time(self):
            self.t += 1.0
            return self.t

        def __getattr__(self, name):  # perf_counter & co. stay real
            return getattr(__import__("time"), name)

    monkeypatch.setattr(budget_mod, "time", Clock())
    one = train(_cfg(tiny_synth, epochs=5, budget_minutes=0.5, budget_stop="step"), tmp_path / "one")
    monkeypatch.setattr(budget_mod, "time", Clock())
    two = train(_cfg(tiny_synth, epochs=5, budget_minutes=1.0, budget_stop="step"), tmp_path / "two",
                snapshot_marks=[0.5])
    assert one.state["budget_stopped"] and two.state["budget_stopped"]
    assert two.state["steps"] > one.state["steps"]  # it trained on past the mark
    snap = two.state["snapshots"][0]
    assert snap["reached"] and snap["best_epoch"] == one.state["best_epoch"]
    want = load_checkpoint(RunFiles(tmp_path / "one").best)["model"]
    got = load_checkpoint(RunFiles(tmp_path / "two").snapshot(0.5))["model"]
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
