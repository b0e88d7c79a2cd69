"""A whole federation on one machine: set up, Flower's simulation engine, then the global export,
fine-tuning, local blends and the summary (file names: :mod:`.layout`).

Layout of a federated run directory ``OUT``::

    federated.yaml        FederatedConfig + the clients' RunConfig
    partition.csv         sensor_id,client
    server/rounds.csv     per round: each client's and the global validation MAE, bytes up / down
    server/global_shared.npz   the last global shared weights
    client_<i>/           client i: an ordinary run directory (its own data in data/,
                          checkpoints/best.pt = global shared + its personalised weights)
    global/               the final model over every sensor (an ordinary run): shared
                          weights from the server, each sensor's personalised weights
                          from the client that owns it
    summary.json          rounds, best round, bytes a round, partition sizes, engine
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import RunConfig
from ..errors import FederationError
from ..files import atomic_write
from .config import FederatedConfig
from .export import export_global
from .finetune import finetune_clients
from .folders import setup
from .layout import FederationFiles
from .local import blend_clients
from .server import read_rounds


@dataclass(frozen=True)
class Federation:
    """A finished federation: its folder ``out``, its ``summary`` (``summary.json``) and ``history``, the
    global row of each round (``round``, ``val_mae``, ``uplink_bytes``, ``downlink_bytes``, ``seconds``)."""

    out: Path
    summary: dict
    history: list

    @classmethod
    def read(cls, out: str | Path, summary: dict | None = None) -> "Federation":
        """The federation in ``out`` (its summary read from ``summary.json`` unless given)."""
        files = FederationFiles(out)
        if summary is None:
            summary = json.loads(files.summary.read_text())
        return cls(files.root, summary, read_rounds(files.server.root))

    @property
    def files(self) -> FederationFiles:
        return FederationFiles(self.out)

    def open_global(self, **kwargs):
        """The global run over every sensor (:meth:`stgraph.training.run.Run.open` of ``OUT/global``)."""
        from ..training.run import Run
        return Run.open(self.files.global_run, **kwargs)

    def open_client(self, index: int, **kwargs):
        """Client ``index``'s run (its sensors, its personalised model); ``OUT/client_<index>``."""
        from ..training.run import Run
        return Run.open(self.files.client(index).root, **kwargs)


def simulate_federation(fed: FederatedConfig, run_cfg: RunConfig, out: str | Path, *, record: bool = False,
                        cpus: int | None = None) -> dict:
    """Run ``fed.clients`` clients and the server on this machine with Flower's simulation engine.

    Flower's ``run_simulation`` (Ray backend, :func:`~.flower.run_simulation`) runs the same
    :class:`~.flower.StgraphClient` and strategy as ``stgraph federated server`` / ``client``; each
    client gets one CPU and one torch thread; ``cpus`` clients train at once (default: one per client,
    at most the machine's CPUs). Afterwards the global run is exported to ``OUT/global`` and, with
    ``fed.finetune_epochs``, each client fine-tunes its own model on its own data
    (:func:`~.finetune.finetune_client`; ``OUT/global`` stays the federation's) and, with
    ``fed.local_blend``, trains a model on its own data alone and blends the two
    (:mod:`~.local`, ``OUT/client_<i>/blend``).
    Returns the summary (also written to ``OUT/summary.json``).
    """
    from .flower import run_simulation, version
    from .server import client_mods, make_strategy

    files = FederationFiles(out)
    fed = fed.validate()
    info = setup(fed, run_cfg, files.root)
    strategy, round_log = make_strategy(fed, files.server.root, record=record)
    dirs = [str(d.resolve()) for d in info["client_dirs"]]
    cpus = max(1, min(fed.clients, cpus or _cpu_count()))
    t0 = time.perf_counter()
    run_simulation(fed, dirs, strategy, record=record, cpus=cpus, mods=client_mods(fed))
    seconds = time.perf_counter() - t0
    if round_log.failure is not None:
        raise round_log.failure
    if len(round_log.history) < fed.rounds:
        raise FederationError(f"the simulation finished {len(round_log.history)} of {fed.rounds} rounds; see the "
                           f"Flower log above (a client failed)")
    export_global(files.root, fed)
    tuned = finetune_clients(files.root, fed)
    blended = blend_clients(files.root, fed)
    return summarise(files.root, fed, info, seconds, engine=f"flwr {version()} run_simulation (ray)",
                     finetune=tuned, blend=blended)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def rounds_to_converge(history: list[dict], tolerance: float = 0.02) -> int:
    """First round whose global validation MAE is within ``tolerance`` (relative) of the best one."""
    best = min(r["val_mae"] for r in history)
    return next(int(r["round"]) for r in history if r["val_mae"] <= best * (1 + tolerance))


def summarise(out: str | Path, fed: FederatedConfig, info: dict, seconds: float, engine: str,
              finetune: list[dict] | None = None, blend: list[dict] | None = None) -> dict:
    """The summary of the federation in ``out`` (also written to ``summary.json``): rounds, the best round
    and its global validation MAE, bytes a round, sensors per client, cut road links, and the clients'
    fine-tuning and blend results. ``info``: what :func:`~.folders.setup` returned."""
    files = FederationFiles(out)
    hist = read_rounds(files.server.root)
    best = min(hist, key=lambda r: r["val_mae"])
    sizes = np.bincount(info["labels"], minlength=fed.clients).tolist()
    summary = {"engine": engine, "clients": fed.clients, "partition": fed.partition, "strategy": fed.strategy,
               "rounds": len(hist), "local_epochs": fed.local_epochs, "best_round": best["round"],
               "best_global_val_mae": best["val_mae"], "rounds_to_converge": rounds_to_converge(hist),
               "uplink_bytes_per_round": hist[-1]["uplink_bytes"],
               "downlink_bytes_per_round": hist[-1]["downlink_bytes"],
               "sensors_per_client": sizes, "cut_edges": info["cut_edges"], "seconds": round(seconds, 1),
               "dp_noise": fed.dp_noise}
    if finetune:
        summary["finetune"] = finetune
    if blend:
        summary["blend"] = blend
    atomic_write(files.summary, json.dumps(summary, indent=1))
    return summary
