"""A federation of three clients, one of them hostile: does it complete, what is refused, and do the honest
clients still gain over training alone? Under each aggregation (fedavg, median, trimmed-mean).

    OMP_NUM_THREADS=1 python benchmarks/bench_federated_robustness.py   # writes benchmarks/results/federated_robustness.md

The synthetic network (``--sensors`` sensors, ``--days`` days) split by region among 3 clients; client
``HOSTILE`` (2) trains honestly and then corrupts what it sends each round (:class:`Hostile`):

* ``none``: nothing (the honest baseline);
* ``nan``: every value of its first array NaN;
* ``scaled``: every array multiplied by 1e6;
* ``wrong-shape``: its first array one value short;
* ``inflated``: it claims 1e15 training windows (FedAvg's weight).

Each federation runs Flower's server loop (``flwr.server.Server``, the strategy of ``stgraph federated
server``: :func:`stgraph.federated.server.make_strategy`, its update checks included) with the three clients
in this process (:func:`stgraph.federated.flower.run_local`; no Ray, no gRPC). Reported per attack x
aggregation: whether all rounds completed, the updates refused (the server's log lines), whether the final
global weights are finite, and each honest client's best validation MAE (its personalised model: global shared
weights + its own sensor embeddings) against the same client trained alone on its own data for as many epochs
(rounds x local epochs). Validation MAE in data units (mph) on the client's own sensors.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stgraph.config import RunConfig, apply_override, with_fields  # noqa: E402
from stgraph.errors import FederationError  # noqa: E402
from stgraph.federated.config import AGGREGATES, FederatedConfig  # noqa: E402
from stgraph.federated.flower import StgraphClient, run_local  # noqa: E402
from stgraph.federated.folders import setup  # noqa: E402
from stgraph.federated.layout import FederationFiles  # noqa: E402
from stgraph.federated.local import train_local  # noqa: E402
from stgraph.federated.server import make_strategy  # noqa: E402
from stgraph.files import atomic_write  # noqa: E402

ATTACKS = ("none", "nan", "scaled", "wrong-shape", "inflated")
HOSTILE = 2
SMALL = ["model.params.hidden=16", "model.params.heads=2", "model.params.encoder_layers=1",
         "model.params.decoder_layers=1", "train.batch_size=32", "train.lr=0.003", "train.device=cpu",
         "train.progress=false", "train.patience=0", "train.threads=1"]


class Hostile(StgraphClient):
    """A client that trains honestly, then corrupts its fit result by ``attack`` (one of :data:`ATTACKS`)."""

    def __init__(self, client_dir, attack: str, record: bool = False):
        super().__init__(client_dir, record=record)
        self.attack = attack

    def fit(self, parameters, config):
        arrays, n, metrics = super().fit(parameters, config)
        return corrupt(self.attack, arrays, n) + (metrics,)


def corrupt(attack: str, arrays: list[np.ndarray], n: int) -> tuple[list[np.ndarray], int]:
    """``(arrays, example count)`` as a hostile client of ``attack`` sends them."""
    arrays = [a.copy() for a in arrays]
    if attack == "nan":
        arrays[0][...] = np.nan
    elif attack == "scaled":
        arrays = [a * np.float32(1e6) for a in arrays]
    elif attack == "wrong-shape":
        arrays[0] = arrays[0].ravel()[:-1]
    elif attack == "inflated":
        n = 10 ** 15
    elif attack != "none":
        raise ValueError(f"attack {attack!r}: expected one of {ATTACKS}")
    return arrays, n


def run_config(data: Path, graph: Path, seed: int, max_batches: int) -> RunConfig:
    cfg = with_fields(RunConfig(), {"data.path": str(data), "data.graph": str(graph)})
    for s in SMALL + [f"train.seed={seed}", f"train.max_batches={max_batches}"]:
        cfg = apply_override(cfg, s)
    return cfg.validate()


def federate(out: Path, cfg: RunConfig, attack: str, aggregate: str, rounds: int) -> dict:
    """One federation with client :data:`HOSTILE` attacking by ``attack``; its row of the table."""
    fed = FederatedConfig(clients=3, partition="by-region", rounds=rounds, local_epochs=1,
                          aggregate=aggregate).validate()
    files = FederationFiles(out)
    dirs = setup(fed, cfg, out)["client_dirs"]
    strategy, round_log = make_strategy(fed, files.server.root)
    clients = [(Hostile(d, attack) if i == HOSTILE else StgraphClient(d)).to_client() for i, d in enumerate(dirs)]
    t0 = time.perf_counter()
    error = None
    try:
        run_local(fed, clients, strategy)
    except FederationError as e:
        error = str(e)
    glob = np.load(files.server.global_shared) if files.server.global_shared.is_file() else None
    states = [json.loads(files.client(i).state.read_text()) if files.client(i).state.is_file() else {}
              for i in range(3)]
    return {"attack": attack, "aggregate": aggregate, "rounds": len(round_log.history), "error": error,
            "refused": round_log.guard.refused, "seconds": round(time.perf_counter() - t0, 1),
            "finite": None if glob is None else bool(all(np.isfinite(glob[k]).all() for k in glob.files)),
            "honest_val_mae": [states[i].get("best_val") for i in range(3) if i != HOSTILE]}


def alone(out: Path, cfg: RunConfig, rounds: int) -> list[float]:
    """Each honest client's best validation MAE trained on its own data alone (rounds x 1 epochs)."""
    fed = FederatedConfig(clients=3, partition="by-region", rounds=rounds, local_epochs=1).validate()
    dirs = setup(fed, cfg, out)["client_dirs"]
    return [float(train_local(d, epochs=rounds).state["best_val"]) for i, d in enumerate(dirs) if i != HOSTILE]


def table(rows: list[dict], solo: list[float], args, seconds: float) -> str:
    lines = [
        "# Federated training with one hostile client of three",
        "",
        f"`python benchmarks/bench_federated_robustness.py --sensors {args.sensors} --days {args.days} --rounds "
        f"{args.rounds} --max-batches {args.max_batches}` ({seconds / 60:.1f} min on CPU). The synthetic network "
        f"({args.sensors} sensors, {args.days} days, 5-minute readings) split by region among 3 clients; client "
        f"{HOSTILE} trains, then corrupts what it sends every round; {args.rounds} rounds of 1 local epoch "
        f"(at most {args.max_batches} batches), stgt with hidden 16. Flower's server loop with the strategy of "
        f"`stgraph federated server` (`run_local`: the clients in one process).",
        "",
        "Honest clients' validation MAE (mph, own sensors, best round, personalised model) against each trained "
        f"alone on its own data for {args.rounds} epochs: alone = " + ", ".join(f"{v:.3f}" for v in solo) + ".",
        "",
        "| attack | aggregate | completed | refused updates | global weights finite | honest val MAE "
        "(client 0, 1) | vs alone |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        done = f"yes ({r['rounds']} rounds)" if r["error"] is None else f"no: {r['error'][:90]}"
        fit = r["refused"]
        why = sorted({_kind(x["reason"]) for x in fit})
        refused = f"{len(fit)} ({'; '.join(why)})" if fit else "0"
        mae = r["honest_val_mae"]
        shown = ", ".join("-" if m is None else f"{m:.3f}" for m in mae)
        vs = ", ".join("-" if m is None else f"{(m / s - 1) * 100:+.1f}%" for m, s in zip(mae, solo))
        lines.append(f"| {r['attack']} | {r['aggregate']} | {done} | {refused} | "
                     f"{'-' if r['finite'] is None else ('yes' if r['finite'] else 'NO')} | {shown} | {vs} |")
    lines += ["", "Refused updates are logged by the server (`stgraph.federated.guard`, WARNING) with the client's "
              "partition id and the reason; a refused update is left out of that round's aggregate. The norm bound "
              "is 10x the round's median distance from the global model; an example count is bounded by the "
              "training windows of the client's folder.", ""]
    return "\n".join(lines)


def _kind(reason: str) -> str:
    """The check a refusal's reason names."""
    for words, kind in (("not finite", "not finite"), ("shape", "wrong shape"), ("arrays;", "wrong shape"),
                        ("example count", "example count"), ("update norm", "norm bound"), ("partition id", "identity")):
        if words in reason:
            return kind
    return reason


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sensors", type=int, default=30)
    p.add_argument("--days", type=float, default=4)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--max-batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attacks", nargs="*", default=list(ATTACKS))
    p.add_argument("--aggregates", nargs="*", default=list(AGGREGATES))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "federated_robustness.md"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("flwr").setLevel(logging.ERROR)
    from stgraph.synth import write_synthetic

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fed_robust_"))
    try:
        net = write_synthetic(work / "net", num_sensors=args.sensors, days=args.days, seed=args.seed)
        cfg = run_config(net["data"], net["adj"], args.seed, args.max_batches)
        solo = alone(work / "alone", cfg, args.rounds)
        rows = []
        for attack in args.attacks:
            for aggregate in args.aggregates:
                rows.append(federate(work / f"{attack}-{aggregate}", cfg, attack, aggregate, args.rounds))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "refused"}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(rows, solo, args, time.perf_counter() - t0)
    atomic_write(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
