"""Federated (Flower, K clients by region) vs centralised vs each client alone, on the real METR-LA week.

    OMP_NUM_THREADS=1 python benchmarks/bench_federated.py            # writes benchmarks/results/federated.md

Every model is stgraph's ``stgt`` (small: see SMALL), trained by the one trainer:

* centralised: ``stgraph.training.run.train`` on all 207 sensors, ``EPOCHS`` epochs;
* alone: the same, on one client's folder (its own sensors and the road links among them);
* federated: ``stgraph.federated.simulate`` (Flower ``run_simulation``), ``--rounds`` rounds of one
  local epoch, FedAvg weighted by training windows, sensor embeddings and ``PERSONAL`` layers kept
  local; each client's personalised model (global shared weights + its own, best round on its
  validation MAE), then fine-tuned ``--finetune-epochs`` on the client's own data, then (``--local-blend``,
  the default) blended step by step with a model trained on the client's own data alone, the weights
  chosen on its validation split (every row shown);
* control: each client's alone model blended in the same way with a second alone model (another seed),
  to tell what the federation adds from what any blend of two models adds.

Test MAE (masked, data units) at horizons 3 / 6 / 12 on each client's sensors. Run folders go to a
temporary folder outside the checkout (``--work``), since client folders hold copies of the series.
A second table compares FedAvg with Flower's server- and client-side DP on a small synthetic network.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stgraph.config import RunConfig, apply_override, with_fields  # noqa: E402
from stgraph.distributions import point  # noqa: E402
from stgraph.federated.config import FederatedConfig  # noqa: E402
from stgraph.files import atomic_write  # noqa: E402
from stgraph.metrics import MetricAccumulator  # noqa: E402
from stgraph.shared_data import shared_file  # noqa: E402

SMALL = ["model.params.hidden=32", "model.params.heads=4", "model.params.encoder_layers=1",
         "model.params.decoder_layers=1", "model.params.dropout=0.1", "model.params.residual=last",
         "train.batch_size=32", "train.lr=0.002", "train.device=cpu", "train.progress=false", "train.patience=0"]
HORIZONS = (3, 6, 12)
PERSONAL = ["^head_", "^persistence_gate"]  # kept on each client besides the sensor embeddings


def run_config(data: str, graph: str, epochs: int, threads: int, seed: int = 0) -> RunConfig:
    cfg = with_fields(RunConfig(), {"data.path": data, "data.graph": graph})
    for s in SMALL + [f"train.epochs={epochs}", f"train.threads={threads}", f"train.seed={seed}"]:
        cfg = apply_override(cfg, s)
    return cfg.validate()


def mae_on(run_dir: Path, sensors: list[str] | None = None, checkpoint: str = "best.pt") -> tuple[dict, MetricAccumulator]:
    """Test MAE at HORIZONS of a run (its ``checkpoint``), on ``sensors`` (default all); also the accumulator
    (to pool)."""
    from stgraph.training.run import Run

    tr = Run.open(run_dir, device="cpu", checkpoint=checkpoint)
    ids = list(tr.data.sensor_ids)
    idx = torch.arange(len(ids)) if sensors is None else torch.tensor([ids.index(s) for s in sensors])
    acc = MetricAccumulator(tr.data.horizon, null_value=tr.forecaster.null_value)
    for out, y, _ in tr.predictions("test"):
        out = point(out) if isinstance(out, torch.distributions.Distribution) else out
        acc.update(out.index_select(2, idx), y.index_select(2, idx))
    res = acc.compute(HORIZONS)
    return {h: res["horizons"][str(h)]["mae"] for h in HORIZONS}, acc


def blended_mae(first: Path, second: Path, sensors: list[str]) -> tuple[dict, MetricAccumulator, list]:
    """Test MAE at HORIZONS on ``sensors`` of the step-wise blend of two runs of the same data, the weights
    chosen on the validation split (:func:`stgraph.federated.local.choose_weights`); also the accumulator
    and the weights on ``second``."""
    from stgraph.federated.local import choose_weights
    from stgraph.training.run import Run

    runs = [Run.open(r, device="cpu") for r in (first, second)]
    ids = list(runs[0].data.sensor_ids)
    idx = torch.tensor([ids.index(s) for s in sensors])

    def preds(run, split):
        outs, ys = zip(*[(o.index_select(2, idx), y.index_select(2, idx)) for o, y, _ in run.predictions(split)])
        return torch.cat(outs), torch.cat(ys)

    (va, y), (vb, _) = preds(runs[0], "val"), preds(runs[1], "val")
    a, _ = choose_weights(va, vb, y, runs[0].forecaster.null_value)
    (ta, y), (tb, _) = preds(runs[0], "test"), preds(runs[1], "test")
    w = a[None, :, None, None]
    acc = MetricAccumulator(runs[0].data.horizon, null_value=runs[0].forecaster.null_value)
    acc.update(w * tb + (1 - w) * ta, y)
    res = acc.compute(HORIZONS)
    return {h: res["horizons"][str(h)]["mae"] for h in HORIZONS}, acc, a.tolist()


def pooled(accs: list[MetricAccumulator]) -> dict:
    """MAE over the union of the clients' sensors (the accumulators' sums of errors and counts added)."""
    total = MetricAccumulator(null_value=accs[0].null_value)
    total._sums = sum(a._sums for a in accs)
    res = total.compute(HORIZONS)
    return {h: res["horizons"][str(h)]["mae"] for h in HORIZONS}


def dp_table(work: Path, rounds: int) -> list[tuple]:
    """FedAvg without DP and with Flower's server-side and client-side fixed-clipping DP, on a 40-sensor,
    3-day synthetic network: ``(side, noise, best global val MAE, {step: pooled test MAE})`` rows."""
    from stgraph.federated.folders import prepare_out
    from stgraph.federated.simulation import simulate_federation
    from stgraph.synth import write_synthetic

    paths = write_synthetic(work / "synth", num_sensors=40, days=3, seed=1)
    cfg = run_config(str(paths["data"]), str(paths["adj"]), 1, 1)
    rows = []
    for side, noise in (("none", 0.0), ("server", 0.01), ("server", 0.05), ("client", 0.01), ("client", 0.05)):
        fed = FederatedConfig(clients=3, partition="by-region", rounds=rounds, local_epochs=1, dp_noise=noise,
                              dp_clip=1.0, dp_side="server" if side == "none" else side)
        out = work / f"dp_{side}_{noise}"
        s = (json.loads((out / "summary.json").read_text()) if finished(out)  # reused from an earlier call
             else simulate_federation(fed, cfg, prepare_out(out, overwrite=True)))
        accs = [mae_on(out / f"client_{c}", None)[1] for c in range(3)]
        rows.append((side, noise, s["best_global_val_mae"], {str(h): v for h, v in pooled(accs).items()}))
    return rows


def seeded(name: str, seed: int) -> str:
    """A run's folder name in ``--work`` for training seed ``seed`` (seed 0: the name itself)."""
    return name if seed == 0 else f"{name}_seed{seed}"


def finished(run_dir: Path) -> bool:
    """A run directory whose training ended (``train_summary.json`` for a run, ``summary.json`` for a federation)."""
    return (run_dir / "train_summary.json").is_file() or (run_dir / "summary.json").is_file()


def federation(args) -> FederatedConfig:
    """The federation of the table: K clients by region and the round settings of ``args``."""
    return FederatedConfig(clients=args.clients, partition="by-region", rounds=args.rounds,
                           local_epochs=args.local_epochs, lr_schedule=args.lr_schedule,
                           keep_optimizer=not args.fresh_optimizer, personal=list(args.personal),
                           finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                           local_blend=args.local_blend, round_timeout=7200.0)


def fed_name(args) -> str:
    """The federation's folder in ``--work``: one per set of personalised layers."""
    import hashlib

    personal = "_personal-" + hashlib.sha1("\n".join(args.personal).encode()).hexdigest()[:6] if args.personal else ""
    return ("federated" + personal + (f"_le{args.local_epochs}" if args.local_epochs != 1 else "")
            + (f"_ft{args.finetune_epochs}" if args.finetune_epochs else "") + ("_blend" if args.local_blend else "")
            + (f"_seed{args.seed}" if args.seed else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8, help="centralised / alone epochs")
    ap.add_argument("--rounds", type=int, default=8, help="federated rounds")
    ap.add_argument("--local-epochs", type=int, default=1, help="client epochs a round")
    ap.add_argument("--lr-schedule", default="cosine", choices=["none", "cosine", "step"],
                    help="federated learning rate over the rounds (the baselines' is cosine over epochs)")
    ap.add_argument("--fresh-optimizer", action="store_true", help="a new AdamW each round (default: kept)")
    ap.add_argument("--personal", action="append", default=None, metavar="REGEX",
                    help="also keep these layers on each client (sensor embeddings always are; default: "
                         f"{' '.join(PERSONAL)}, stgt's output head and persistence gate)")
    ap.add_argument("--no-personal", action="store_true", help="only the sensor embeddings stay on the clients")
    ap.add_argument("--finetune-epochs", type=int, default=4,
                    help="after the rounds each client fine-tunes this many epochs on its own data (0: none)")
    ap.add_argument("--finetune-lr", type=float, default=0.5, help="fine-tuning rate, a factor on train.lr")
    ap.add_argument("--no-local-blend", dest="local_blend", action="store_false",
                    help="no local model blended into each client's federated one (default: blended)")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="skip the control (each client alone, blended with a second alone model, seed 1)")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed of every model (train.seed; the control's second alone model takes seed + 1); "
                         "the partition does not change")
    ap.add_argument("--dp-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the centralised / alone runs")
    ap.add_argument("--sim-cpus", type=int, default=1, help="clients Flower's simulation trains at once")
    ap.add_argument("--only", default="all", choices=["all", "baselines", "federated", "dp"],
                    help="run one part (the others are read from --work when finished there)")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a new temporary folder); "
                                                 "finished runs in it are reused")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "federated.md"))
    ap.add_argument("--data", default=None, help="series (default: the shared METR-LA week)")
    ap.add_argument("--graph", default=None, help="graph (default: the shared METR-LA week's adj_mx.pkl)")
    args = ap.parse_args()
    args.personal = [] if args.no_personal else (PERSONAL if args.personal is None else args.personal)

    data = args.data or shared_file("metr-la-week", "metr-la-week.h5")
    graph = args.graph or shared_file("metr-la-week", "adj_mx.pkl")
    if data is None or graph is None:
        print("error: ../shared/data/metr-la-week not found (set STGRAPH_SHARED_DATA)", file=sys.stderr)
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="stgraph-fed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from stgraph.federated.folders import prepare_out, setup
    from stgraph.federated.simulation import simulate_federation
    from stgraph.training.run import train

    k = args.clients
    times_path = work / "times.json"
    fed = federation(args)
    # the clients' folders (their sensors and the links among them) for the "alone" runs
    part = work / "partition"
    if not all((part / f"client_{c}" / "client.json").is_file() for c in range(k)):
        setup(fed, run_config(str(data), str(graph), 1, 1), part)
    own = [json.loads((part / f"client_{c}" / "client.json").read_text())["own_sensors"] for c in range(k)]

    def timed(name, fn):
        t0 = time.perf_counter()
        fn()
        done = json.loads(times_path.read_text()) if times_path.is_file() else {}  # parts may run side by side
        done[name] = round(time.perf_counter() - t0, 1)
        times_path.write_text(json.dumps(done))

    fed_dir = work / fed_name(args)
    if args.only in ("all", "federated") and not finished(fed_dir):
        prepare_out(fed_dir, overwrite=True)
        timed("federated", lambda: simulate_federation(fed, run_config(str(data), str(graph), 1, 1, args.seed), fed_dir,
                                            cpus=args.sim_cpus))
    if args.only in ("all", "federated") and args.local_blend and finished(fed_dir):
        summary = json.loads((fed_dir / "summary.json").read_text())
        if "blend" not in summary:  # a federation that finished before its local models: blend now
            from stgraph.federated.local import blend_clients
            t0 = time.perf_counter()
            summary["blend"] = blend_clients(fed_dir, fed)
            summary["blend_seconds"] = round(time.perf_counter() - t0, 1)
            atomic_write(fed_dir / "summary.json", json.dumps(summary, indent=1))
    if args.only in ("all", "baselines"):
        central = work / seeded("centralised", args.seed)
        if not finished(central):
            shutil.rmtree(central, ignore_errors=True)
            timed(central.name, lambda: train(run_config(str(data), str(graph), args.epochs, args.threads, args.seed),
                                              central))
        # each client alone, and for the control a second alone model with the next seed
        for c, seed in [(c, args.seed) for c in range(k)] + [(c, args.seed + 1) for c in range(k) if args.control]:
            cdir, alone = part / f"client_{c}", work / seeded(f"alone_{c}", seed)
            if finished(alone):
                continue
            cfg = run_config(str(cdir / "data" / "series.h5"), str(cdir / "data" / "graph.json"), args.epochs,
                             args.threads, seed)
            shutil.rmtree(alone, ignore_errors=True)
            timed(alone.name, lambda: train(cfg, alone))
    dp_path = work / "dp.json"
    if args.only in ("all", "dp") and not dp_path.is_file():
        timed("dp", lambda: dp_path.write_text(json.dumps(dp_table(work, args.dp_rounds))))
    runs = [fed_dir, work / seeded("centralised", args.seed), *(work / seeded(f"alone_{c}", args.seed) for c in range(k)),
            *(work / seeded(f"alone_{c}", args.seed + 1) for c in range(k) if args.control)]
    blended = not args.local_blend or (finished(fed_dir) and "blend" in json.loads((fed_dir / "summary.json").read_text()))
    if not all(finished(r) for r in runs) or not dp_path.is_file() or not blended:
        print(f"runs so far in {work}; the table is written when every part has finished there")
        return 0
    write_report(args, work, own, json.loads(dp_path.read_text()), run_seconds(work, fed_dir, k, args.seed))
    print(f"runs in {work}")
    return 0


def run_seconds(work: Path, fed_dir: Path, k: int, seed: int = 0) -> dict:
    """Wall seconds of each part, from the runs themselves (training time; the federation's simulation)."""
    summary = json.loads((fed_dir / "summary.json").read_text())
    secs = {"federated": summary["seconds"]}
    if summary.get("blend"):
        secs["local models and blends"] = sum(b["seconds"] for b in summary["blend"])
    for name in [seeded("centralised", seed), *(seeded(f"alone_{c}", s) for s in (seed, seed + 1) for c in range(k))]:
        if (work / name / "train_summary.json").is_file():
            secs[name] = json.loads((work / name / "train_summary.json").read_text())["train_seconds"]
    timed = json.loads((work / "times.json").read_text()) if (work / "times.json").is_file() else {}
    if "dp" in timed:
        secs["dp table"] = timed["dp"]
    return secs


def write_report(args, work: Path, own: list, dp: list, times: dict) -> None:
    """``args.out``: the federated / centralised / alone table from the finished runs in ``work``."""
    k = args.clients
    fed_dir = work / fed_name(args)
    summary = json.loads((fed_dir / "summary.json").read_text())
    ft = args.finetune_epochs > 0
    blend = args.local_blend
    # the federation's own model per client (its best round), with fine-tuning the fine-tuned one, with a local
    # blend the blend of that with the client's local model
    fed_methods = (["federated"] + (["federated + fine-tuning"] if ft else [])
                   + ([f"federated{' + fine-tuning' if ft else ''} + local blend"] if blend else []))
    control = "alone, 2 seeds blended (control)"
    methods = fed_methods + ["centralised", "alone"] + ([control] if args.control else [])
    final = fed_methods[-1]  # what the goals are checked on
    table = {m: [] for m in methods}
    weights = {m: [] for m in methods}
    for c in range(k):
        cdir = fed_dir / f"client_{c}"
        table["federated"].append(mae_on(cdir, own[c], "federated.pt" if ft else "best.pt"))
        if ft:
            table["federated + fine-tuning"].append(mae_on(cdir, own[c]))
        if blend:
            table[final].append(mae_on(cdir / "blend", own[c]))
            weights[final].append(json.loads((cdir / "blend.json").read_text())["weights_local"])
        table["centralised"].append(mae_on(work / seeded("centralised", args.seed), own[c]))
        table["alone"].append(mae_on(work / seeded(f"alone_{c}", args.seed), own[c]))
        if args.control:
            *res, w = blended_mae(work / seeded(f"alone_{c}", args.seed), work / seeded(f"alone_{c}", args.seed + 1),
                                  own[c])
            table[control].append(tuple(res))
            weights[control].append(w)
    sched = {"cosine": "cosine over the rounds", "step": "step decay over the rounds",
             "none": "constant"}[args.lr_schedule]
    lines = ["# Federated training on METR-LA week (Flower, K = %d, by-region)" % k, "",
             "Command: `OMP_NUM_THREADS=1 python benchmarks/bench_federated.py "
             f"--epochs {args.epochs} --rounds {args.rounds} --local-epochs {args.local_epochs} "
             f"--lr-schedule {args.lr_schedule}{' --fresh-optimizer' if args.fresh_optimizer else ''}"
             f"{''.join(f' --personal {p!r}' for p in args.personal)} "
             f"--finetune-epochs {args.finetune_epochs} --finetune-lr {args.finetune_lr:g} "
             f"{'' if blend else '--no-local-blend '}{'' if args.control else '--no-control '}"
             f"{f'--seed {args.seed} ' if args.seed else ''}"
             f"--dp-rounds {args.dp_rounds} --threads {args.threads} --sim-cpus {args.sim_cpus}`, 2-core CPU.", "",
             f"Model: `stgt` ({', '.join(s for s in SMALL if s.startswith('model.'))}), batch 32, lr 0.002. "
             f"Centralised and alone: {args.epochs} epochs, cosine schedule. Federated: Flower "
             f"{summary['engine']}, FedAvg weighted by training windows, {args.rounds} rounds x "
             f"{args.local_epochs} local epoch(s), learning rate {sched} "
             f"({'a new AdamW each round' if args.fresh_optimizer else 'each client keeps its AdamW state between rounds'}), "
             f"sensor embeddings{''.join(f', layers matching {p!r}' for p in args.personal)} personal (kept on "
             "each client); each client's model is its best round on its own validation MAE"
             + (f"; then each client fine-tunes it {args.finetune_epochs} epoch(s) on its own data (every weight, "
                f"AdamW from lr x {args.finetune_lr:g} with cosine decay; an epoch is kept only if it lowers the "
                f"client's validation MAE), which sends nothing" if ft else "")
             + (f"; then each client trains the same model on its own data alone ({args.rounds * args.local_epochs} "
                "epochs, as many passes over its data as the federation made; with the same seed and settings "
                "this is the 'alone' model) and blends the two forecasts, one weight per forecast step from "
                "0, 0.05, ..., 1 chosen on its validation MAE (APFL's local/global mixture, Deng et al. 2020; "
                "the blend is saved as an ordinary run in client_<i>/blend)" if blend else "")
             + (". Control: each client's alone model blended in the same way with a second alone model "
                f"(train.seed={args.seed + 1}), which shows what blending two models gives without the federation" if args.control
                else "") + ". Test split (last 20% of windows), masked MAE in mph.", "",
             f"Sensors per client: {summary['sensors_per_client']}; road links cut by the partition: "
             f"{summary['cut_edges']}. Rounds to converge (global validation MAE within 2% of its best): "
             f"{summary['rounds_to_converge']} of {summary['rounds']} (best round {summary['best_round']}). "
             f"Bytes a round: {summary['uplink_bytes_per_round'] / 1e6:.3f} MB up (all clients), "
             f"{summary['downlink_bytes_per_round'] / 1e6:.3f} MB down (fit + evaluate).", "",
             "| client (sensors) | method | MAE h3 | MAE h6 | MAE h12 |", "|---|---|---|---|---|"]
    for c in range(k):
        for m in methods:
            v = table[m][c][0]
            lines.append(f"| {c} ({len(own[c])}) | {m} | {v[3]:.3f} | {v[6]:.3f} | {v[12]:.3f} |")
    for m in methods:
        v = pooled([x[1] for x in table[m]])
        lines.append(f"| all ({sum(map(len, own))}) | {m} | {v[3]:.3f} | {v[6]:.3f} | {v[12]:.3f} |")
    lines.append("")
    for m in fed_methods + ([control] if args.control else []):
        beats = all(table[m][c][0][h] < table["alone"][c][0][h] for c in range(k) for h in HORIZONS)
        ratio = [table[m][c][0][12] / table["centralised"][c][0][12] for c in range(k)]
        lines.append(f"{m.capitalize()} beats every client alone at every horizon: **{'yes' if beats else 'no'}**. "
                     f"{m.capitalize()} / centralised MAE at horizon 12 per client: "
                     f"{', '.join(f'{r:.3f}' for r in ratio)} (goal <= 1.10: "
                     f"**{'met' if max(ratio) <= 1.10 else 'not met'}**).")
    if ft:
        lines += ["", "Fine-tuning, validation MAE on each client's sensors (federated -> fine-tuned, epoch kept): "
                  + "; ".join(f"client {c} {t['val_mae_federated']:.3f} -> {t['val_mae']:.3f} ({t['best_epoch']}), "
                              f"{t['seconds']:.0f} s" for c, t in enumerate(summary.get("finetune", [])))]
    if args.control and blend:
        better = [f"client {c}: " + " / ".join("yes" if table[final][c][0][h] < table[control][c][0][h] else "no"
                                                for h in HORIZONS) for c in range(k)]
        lines += ["", f"{final.capitalize()} beats the control at 15 / 30 / 60 min: " + "; ".join(better) + "."]
    for m in (final, control) if blend else ():
        if weights[m]:
            lines += ["", f"{m.capitalize()}: weight on the {'local' if m == final else 'second alone'} model at "
                      "steps 3 / 6 / 12 (from validation): " + "; ".join(
                          f"client {c} {w[2]:.2f} / {w[5]:.2f} / {w[11]:.2f}" for c, w in enumerate(weights[m]))]
    if blend:
        lines += ["", "Blend, validation MAE on each client's sensors (mean over the 12 steps; federated / local / "
                  "blend): " + "; ".join(f"client {c} {b['val_mae_federated']:.3f} / {b['val_mae_local']:.3f} / "
                                         f"{b['val_mae']:.3f}" for c, b in enumerate(summary.get("blend", [])))]
    lines += ["",
              "Wall time (s; one torch thread per run or client, the simulation training "
              f"{args.sim_cpus} client(s) at a time, while the baselines may run beside it; load average "
              f"{os.getloadavg()[0]:.1f} when this table was written): " + ", ".join(f"{n} {t:.0f}" for n, t in times.items()) + ".", "",
              f"## Flower differential privacy (fixed clipping 1.0), 40-sensor synthetic network, K = 3, "
              f"{args.dp_rounds} rounds", "",
              "| DP | noise multiplier | best global val MAE | test MAE h3 | h6 | h12 |", "|---|---|---|---|---|---|"]
    for mode, noise, val, v in dp:
        lines.append(f"| {mode} | {noise:g} | {val:.3f} | {v['3']:.3f} | {v['6']:.3f} | {v['12']:.3f} |")
    text = "\n".join(lines) + "\n"
    atomic_write(args.out, text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
