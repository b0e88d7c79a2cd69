"""Data-parallel training under torchrun (2 CPU processes, gloo, 127.0.0.1).

* a 2-process run equals a single-process run with the same global batch and seed: weights within
  float tolerance, the same metrics; the validation metrics the 2 processes reduced are exactly those
  of one process evaluating the same weights;
* ``stgraph train --devices 2`` launches torchrun; one rank killed mid-epoch, then ``--resume`` (under
  torchrun again) finishes with the uninterrupted result;
* the sharding of the windows (every window once per epoch, the same order whatever K is) and the
  error for a batch that K does not divide.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stgraph.cli.main import main as cli_main
from stgraph.errors import ConfigError
from stgraph.training.checkpoint import load_checkpoint
from stgraph.training.distributed import Dist, strip_devices, torchrun_command

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """12 sensors x 2 days (576 steps at 5 min), METR-LA layout."""
    from stgraph.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("ddp_synth"), num_sensors=12, days=2, seed=0)


def _args(synth, out, *extra) -> list[str]:
    return ["train", "--data", str(synth["data"]), "--graph", str(synth["adj"]), "--epochs", "2",
            "--batch-size", "8", "--seed", "5", "--device", "cpu", "--no-progress", "--out", str(out),
            "--set", "model.params.hidden=8", "--set", "model.params.dropout=0", "--set", "train.max_batches=6",
            "--set", "train.threads=1", "--set", "train.patience=0",
            # lr 1e-3: the key bias of attention gets no true gradient (softmax ignores it), so Adam turns the
            # float noise of the two reductions into steps of about lr; at stgt's default 3e-3 they exceed atol
            "--lr", "0.001", *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _metrics(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def single(synth, tmp_path_factory):
    """The reference: one process, global batch 8."""
    out = tmp_path_factory.mktemp("single") / "run"
    assert cli_main(_args(synth, out)) == 0
    return out


@pytest.fixture(scope="module")
def ddp2(synth, tmp_path_factory):
    """``torchrun --nproc-per-node 2 -m stgraph train ...`` with the same global batch."""
    out = tmp_path_factory.mktemp("ddp2") / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "stgraph", *_args(synth, out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=_env(), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finished: 2 epoch(s)") == 1, proc.stdout  # rank 0 alone reports
    return out


def _assert_same_weights(a: Path, b: Path) -> None:
    wa = load_checkpoint(a / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt")["model"]
    assert wa.keys() == wb.keys() and len(wa) > 10
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-3, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_two_processes_equal_one_with_the_same_global_batch(single, ddp2):
    _assert_same_weights(single, ddp2)
    ref, got = _metrics(single), _metrics(ddp2)
    assert [r["epoch"] for r in got] == ["1", "2"]
    for r, g in zip(ref, got):
        for key in ("train_loss", "val_mae", "val_rmse", "val_mape"):
            assert float(g[key]) == pytest.approx(float(r[key]), rel=1e-4), (key, r, g)
        assert g["lr"] == r["lr"]
    # the run files exist once, written by rank 0; no leftover temporary files of a second writer
    assert sorted(p.name for p in (ddp2 / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    ck = load_checkpoint(ddp2 / "checkpoints" / "last.pt")
    assert ck["trainer"]["epoch"] == 2 and ck["trainer"]["finished"]


def test_validation_metrics_are_reduced_exactly(ddp2):
    """The val MAE/RMSE/MAPE the 2 processes summed with all_reduce are one process's figures for those weights."""
    from stgraph.training.run import load_run

    trainer = load_run(ddp2, checkpoint="last.pt")
    val = trainer.evaluate("val")["average"]
    last = _metrics(ddp2)[-1]
    assert round(val["mae"], 6) == float(last["val_mae"])
    assert round(val["rmse"], 6) == float(last["val_rmse"])
    assert round(val["mape"], 6) == float(last["val_mape"])


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _children(launcher):
        try:
            env = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


def test_rank_killed_mid_epoch_then_resume_finishes(synth, tmp_path):
    """Killed and resumed, the 2-process run ends with the weights of an uninterrupted 2-process run."""
    longer = ("--set", "train.max_batches=0", "--set", "train.checkpoint_every=2")  # 48 batches an epoch
    ref, run = tmp_path / "uninterrupted", tmp_path / "run"
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "stgraph"]
    # `stgraph train --devices 2` runs torchrun, which starts the 2 ranks
    proc = subprocess.Popen([sys.executable, "-m", "stgraph", *_args(synth, run, *longer), "--devices", "2"],
                            **pipes)
    last = run / "checkpoints" / "last.pt"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not last.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no mid-epoch checkpoint"
            time.sleep(0.005)
        launcher = next(iter(_children(proc.pid)), None)  # the torchrun agent
        victim = _rank_pid(launcher, 1) if launcher else None
        assert victim is not None, "rank 1 not found under torchrun"
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2 and "training in 2 processes under torchrun failed" in err, err[-3000:]
    state = load_checkpoint(last)["trainer"]
    assert state["epoch"] < 2 and not state["finished"], state

    resumed = subprocess.run(torchrun + _args(synth, run, *longer) + ["--resume"], timeout=TIMEOUT, **pipes)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # one torchrun at a time: two launched together may pick the same free port for their workers
    reference = subprocess.run(torchrun + _args(synth, ref, *longer), timeout=TIMEOUT, **pipes)
    assert reference.returncode == 0, reference.stderr[-3000:]
    state = load_checkpoint(last)["trainer"]
    assert state["epoch"] == 2 and state["finished"]
    a = load_checkpoint(ref / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(last)["model"]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # bit for bit: 2-rank gloo sums are exact
    keep = ("epoch", "train_loss", "val_mae", "val_rmse", "lr")
    assert [{k: r[k] for k in keep} for r in _metrics(run)] == [{k: r[k] for k in keep} for r in _metrics(ref)]
    assert [r["epoch"] for r in _metrics(run)] == ["1", "2"]


# ----------------------------------------------------------------------------------- in one process
def test_shards_cover_every_window_once_in_the_same_order_whatever_k(tiny_synth):
    from stgraph.data import ForecastData
    from stgraph.io import read_series

    data = ForecastData.from_series(read_series(tiny_synth["data"]))

    def epoch(shard):
        g = torch.Generator().manual_seed(11)
        return [b.starts for b in data.loader("train", 12, shuffle=True, drop_last=True, generator=g, shard=shard)]

    whole = epoch(None)
    for k in (2, 3, 4):
        parts = [epoch((r, k)) for r in range(k)]
        assert all(len(p) == len(whole) for p in parts)
        for i, ref in enumerate(whole):  # global batch i is the concatenation of the K parts, in rank order
            assert torch.equal(torch.cat([p[i] for p in parts]), ref)
    # evaluation: a batch K does not divide still gives every window once (parts of near-equal size)
    val = torch.cat([b.starts for b in data.loader("val", 5)])
    parts = [torch.cat([b.starts for b in data.loader("val", 5, shard=(r, 3))]) for r in range(3)]
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.sort(val).values)
    # a resumed epoch starts at its batch without gathering the ones before
    g = torch.Generator().manual_seed(11)
    rest = [b.starts for b in data.loader("train", 12, shuffle=True, drop_last=True, generator=g, start=3)]
    assert len(rest) == len(whole) - 3 and all(torch.equal(a, b) for a, b in zip(rest, whole[3:]))


def test_batch_not_divisible_by_the_processes_names_the_field():
    assert Dist(1, 4).per_rank_batch(64) == 16
    with pytest.raises(ConfigError, match=r"train.batch_size = 10 is not divisible by the 4 training processes"):
        Dist(0, 4).per_rank_batch(10)


def test_devices_relaunches_the_command_under_torchrun():
    argv = ["train", "--data", "x.h5", "--devices", "2", "--out", "r", "--devices=3"]
    assert strip_devices(argv) == ["train", "--data", "x.h5", "--out", "r"]
    cmd = torchrun_command(2, strip_devices(argv))
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    assert cmd[6:] == ["stgraph", "train", "--data", "x.h5", "--out", "r"]
    assert cli_main(["train", "--data", "x.h5", "--out", "r", "--devices", "0"]) == 2
