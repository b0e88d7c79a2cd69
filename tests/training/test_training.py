"""The one trainer: loss goes down, runs repeat, resume equals an uninterrupted run, checkpoints are safe."""
import csv
import json

import pytest
import torch

from stgraph.config import RunConfig, with_fields
from stgraph.training.checkpoint import load_checkpoint
from stgraph.training.run import load_run, train


def _cfg(tiny_synth, **train_kw):
    return with_fields(RunConfig(), {
        "data.path": str(tiny_synth["data"]), "data.graph": str(tiny_synth["adj"]), "model.name": "stgt",
        "model.params": {"hidden": 16, "heads": 2, "encoder_layers": 1, "dropout": 0.1},
        "train.batch_size": 16, "train.progress": False, "train.patience": 0,
        **{f"train.{k}": v for k, v in train_kw.items()}})


def _weights(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_a_short_run_lowers_the_loss_and_logs_every_epoch(tiny_synth, tmp_path):
    # stgt starts as the last-value forecast exactly (zero-initialised head + persistence gate)
    untrained = with_fields(_cfg(tiny_synth), {"model.name": "last", "model.params": {}})
    persistence = train(untrained, tmp_path / "last").evaluate("val")["average"]["mae"]
    trainer = train(_cfg(tiny_synth, epochs=4, max_batches=12, lr=3e-3), tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    vals = [float(r["val_mae"]) for r in rows]
    assert min(vals) < 0.97 * persistence
    assert vals[-1] < vals[0]
    assert trainer.state["best_epoch"] == 1 + vals.index(min(vals))  # best.pt is the epoch of lowest val MAE
    assert all(float(r["windows_per_s"]) > 0 and float(r["train_loss"]) > 0 for r in rows)
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["epochs"] == 4 and summary["peak_rss_mb"] > 0 and summary["parameters"] > 0
    assert summary["train_windows"] == len(trainer.prepared.data.split["train"]) > 0


def test_same_seed_gives_identical_weights(tiny_synth, tmp_path):
    train(_cfg(tiny_synth, epochs=1, max_batches=4), tmp_path / "a")
    train(_cfg(tiny_synth, epochs=1, max_batches=4), tmp_path / "b")
    train(_cfg(tiny_synth, epochs=1, max_batches=4, seed=1), tmp_path / "c")
    a, b, c = (_weights(tmp_path / k) for k in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_after_an_epoch_equals_an_uninterrupted_run(tiny_synth, tmp_path):
    train(_cfg(tiny_synth, epochs=3, max_batches=4), tmp_path / "full")
    train(_cfg(tiny_synth, epochs=1, max_batches=4), tmp_path / "cut")  # "interrupted" after epoch 1
    train(_cfg(tiny_synth, epochs=3, max_batches=4), tmp_path / "cut", resume=True)
    full, cut = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    rows = list(csv.DictReader((tmp_path / "cut" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_resume_from_a_mid_epoch_checkpoint_equals_an_uninterrupted_run(tiny_synth, tmp_path):
    from stgraph.training import trainer as trainer_mod

    train(_cfg(tiny_synth, epochs=2, max_batches=6), tmp_path / "full")

    class Crash(Exception):
        pass

    calls = {"n": 0}
    original = trainer_mod.Trainer.save

    def crashing_save(self, name="last.pt"):
        out = original(self, name)
        calls["n"] += 1
        if self.state["epoch"] == 1 and self.state["batch"] == 4:  # mid-epoch 2, right after a checkpoint
            raise Crash()
        return out

    trainer_mod.Trainer.save = crashing_save
    try:
        with pytest.raises(Crash):
            train(_cfg(tiny_synth, epochs=2, max_batches=6, checkpoint_every=2), tmp_path / "cut")
    finally:
        trainer_mod.Trainer.save = original
    ck = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (ck["trainer"]["epoch"], ck["trainer"]["batch"]) == (1, 4)
    train(_cfg(tiny_synth, epochs=2, max_batches=6, checkpoint_every=2), tmp_path / "cut", resume=True)
    full, cut = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert all(torch.equal(full[k], cut[k]) for k in full)


def test_probabilistic_run_reports_coverage_and_crps(tiny_synth, tmp_path):
    cfg = with_fields(_cfg(tiny_synth, epochs=2, max_batches=8, lr=3e-3), {"model.probabilistic": True})
    train(cfg, tmp_path / "p")
    res = load_run(tmp_path / "p").evaluate("test")
    for h in ("3", "6", "12"):
        assert set(res["horizons"][h]) >= {"mae", "rmse", "mape", "coverage90", "crps"}
        assert 0.0 <= res["horizons"][h]["coverage90"] <= 1.0
        assert 0.0 < res["horizons"][h]["crps"] <= res["horizons"][h]["mae"] + 1e-6  # CRPS <= MAE of the mean


def test_evaluate_of_a_loaded_run_matches_the_trainer(tiny_synth, tmp_path):
    trainer = train(_cfg(tiny_synth, epochs=1, max_batches=3), tmp_path / "run")
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    trainer.model.load_state_dict(best["model"])
    direct = trainer.evaluate("test")
    loaded = load_run(tmp_path / "run").evaluate("test")
    assert loaded["average"]["mae"] == pytest.approx(direct["average"]["mae"], rel=1e-6)


def test_non_finite_loss_stops_with_epoch_and_batch(tiny_synth, tmp_path):
    from stgraph.training.trainer import NonFiniteLossError

    cfg = _cfg(tiny_synth, epochs=1, max_batches=3, lr=1e30, clip_grad=0.0, weight_decay=0.0)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch \d+"):
        train(cfg, tmp_path / "nan")


def test_open_builds_no_optimiser_and_sets_the_threads(tiny_synth, tmp_path, monkeypatch):
    """Inference (Run.open, evaluate) needs no AdamW; the entry point sets train.threads, not a constructor."""
    from stgraph.training.forecaster import Forecaster

    trained = train(_cfg(tiny_synth, epochs=1, max_batches=2, threads=1), tmp_path / "run")

    def refuse(*a, **k):
        raise AssertionError("an optimiser was built for inference")

    monkeypatch.setattr(torch.optim, "AdamW", refuse)
    torch.set_num_threads(2)
    run = load_run(tmp_path / "run")
    assert torch.get_num_threads() == 1  # Run.open, the entry point, set train.threads = 1
    torch.set_num_threads(2)
    Forecaster(run.model, run.data, run.graph, run.config.train)
    assert torch.get_num_threads() == 2  # the forecaster itself leaves process settings alone
    assert run.evaluate("val")["average"]["mae"] == pytest.approx(trained.evaluate("val")["average"]["mae"])
    assert run.progress["epoch"] == 1 and run.progress is run.state


def test_fedprox_is_a_loss_term_the_trainer_takes(tiny_synth):
    """FedProx(model, anchors, mu) = the masked loss + mu / 2 * ||w - anchor||^2 over the anchored weights, and a
    Trainer(loss=...) fits with it: pulled towards the anchors, the weights move less than without the term."""
    from stgraph.training.forecaster import Forecaster
    from stgraph.training.losses import FedProx, masked_loss
    from stgraph.training.prepare import make_model, prepare
    from stgraph.training.trainer import Trainer, seed_everything

    cfg = _cfg(tiny_synth, epochs=1, max_batches=3, lr=0.05)
    prep = prepare(cfg)
    moved = {}
    for mu in (0.0, 1000.0):
        seed_everything(0)
        model = make_model(cfg, prep.data)
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        forecaster = Forecaster(model, prep.data, prep.graph, cfg.train)
        prox = FedProx(model, start, mu)
        batch = next(iter(prep.data.loader("train", 4)))
        out = model(batch.x, prep.graph, batch.covariates)
        with torch.no_grad():
            model.head_fc.weight.add_(0.1)
        want = masked_loss(forecaster, out, batch.y) + 0.5 * mu * (0.1 ** 2) * model.head_fc.weight.numel()
        assert torch.allclose(prox(forecaster, out, batch.y), want, rtol=1e-5)
        with torch.no_grad():
            model.head_fc.weight.sub_(0.1)
        Trainer(forecaster, cfg.train, loss=prox).fit()
        moved[mu] = sum(float((p.detach() - start[k]).pow(2).sum()) for k, p in model.named_parameters())
    assert moved[1000.0] < moved[0.0]


def test_a_batch_source_decides_what_the_trainer_sees(tiny_synth):
    """batches=: the trainer counts and draws its training batches from the source (here: a fixed few windows)."""
    from stgraph.training.forecaster import Forecaster
    from stgraph.training.prepare import make_model, prepare
    from stgraph.training.trainer import Trainer

    cfg = _cfg(tiny_synth, epochs=2)
    prep = prepare(cfg)

    class FirstWindows:
        seen = []

        def count(self, batch_size):
            return 2

        def epoch(self, batch_size, *, generator, start=0, shard=None, workers=0):
            starts = prep.data.split_starts("train")[:2 * batch_size]
            for i in range(2):
                s = starts[i * batch_size:(i + 1) * batch_size]
                self.seen.append(s.tolist())
                yield prep.data.batch(s)

    trainer = Trainer(Forecaster(make_model(cfg, prep.data), prep.data, prep.graph, cfg.train), cfg.train,
                      batches=FirstWindows())
    state = trainer.fit()
    assert state["steps"] == 4 and len(FirstWindows.seen) == 4 and FirstWindows.seen[0] == FirstWindows.seen[2]
