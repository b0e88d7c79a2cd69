"""The Flower server's strategy: FedAvg / FedProx that log every round, optional Flower DP.

The strategies are Flower's own (``flwr.server.strategy.FedAvg`` / ``FedProx``,
weighted by each client's number of training windows); :class:`RoundLog` only
adds bookkeeping around them. Each round it appends to ``OUT/rounds.csv`` one
row per client and one ``global`` row::

    round, client, val_mae, train_loss, train_windows, uplink_bytes, downlink_bytes, seconds

``val_mae`` of the ``global`` row is the mean of the clients' validation MAE
weighted by validation windows x sensors (the MAE over all sensors); bytes are
the serialised parameter tensors Flower puts on the wire (``Parameters.tensors``).
The latest global shared weights are kept in ``OUT/global_shared.npz``
(``p0000, p0001, ...`` in the clients' shared-key order); with ``record`` every
round's are kept as ``OUT/rounds/round_NNN.npz`` (names: :class:`~.layout.ServerFiles`).
Each round's global row is also logged (``logging``, INFO).
"""
from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np

from ..files import atomic_open
from .config import FederatedConfig, round_lr_factor
from .layout import ServerFiles

log = logging.getLogger(__name__)

ROUND_FIELDS = ["round", "client", "val_mae", "train_loss", "train_windows", "uplink_bytes", "downlink_bytes",
                "seconds"]


def _nbytes(parameters) -> int:
    return int(sum(len(t) for t in parameters.tensors))


class RoundLog:
    """Mixin for a Flower strategy: per-round logging of MAE and bytes, saving the global weights."""

    def _init_log(self, out: str | Path, record: bool = False, fed: FederatedConfig | None = None) -> None:
        self.fed = fed or FederatedConfig()
        self.files = ServerFiles(out)
        self.files.root.mkdir(parents=True, exist_ok=True)
        self.record = record
        self._fit: dict = {}
        self._down = 0
        self._t0 = time.perf_counter()
        self.history: list[dict] = []
        self.rows: list[dict] = []

    def configure_fit(self, server_round, parameters, client_manager):
        self._t0 = time.perf_counter()
        pairs = super().configure_fit(server_round, parameters, client_manager)
        factor = round_lr_factor(self.fed, server_round)
        for _, ins in pairs:
            ins.config["server_round"] = server_round
            ins.config["lr_factor"] = factor
            ins.config["keep_optimizer"] = bool(self.fed.keep_optimizer)
        self._down = sum(_nbytes(ins.parameters) for _, ins in pairs)
        return pairs

    def aggregate_fit(self, server_round, results, failures):
        # in client order, not arrival order: a float sum depends on its order, and a federation run twice
        # should give the same global model bit for bit
        results = _by_client(results)
        self._fit = {int(r.metrics["partition_id"]): {"train_loss": r.metrics.get("train_loss"),
                                                      "train_windows": r.num_examples,
                                                      "uplink_bytes": _nbytes(r.parameters)}
                     for _, r in results}
        return super().aggregate_fit(server_round, results, failures)

    def configure_evaluate(self, server_round, parameters, client_manager):
        from flwr.common import parameters_to_ndarrays

        arrays = {f"p{i:04d}": a for i, a in enumerate(parameters_to_ndarrays(parameters))}
        _save_npz(self.files.global_shared, arrays)
        if self.record:
            self.files.round_weights(server_round).parent.mkdir(exist_ok=True)
            _save_npz(self.files.round_weights(server_round), arrays)
        pairs = super().configure_evaluate(server_round, parameters, client_manager)
        for _, ins in pairs:
            ins.config["server_round"] = server_round
        self._down += sum(_nbytes(ins.parameters) for _, ins in pairs)
        return pairs

    def aggregate_evaluate(self, server_round, results, failures):
        results = _by_client(results)
        agg = super().aggregate_evaluate(server_round, results, failures)
        if not results:
            return agg
        seconds = round(time.perf_counter() - self._t0, 3)
        rows = []
        total_n = sum(r.num_examples for _, r in results)
        for _, r in results:
            pid = int(r.metrics["partition_id"])
            f = self._fit.get(pid, {})
            rows.append({"round": server_round, "client": pid, "val_mae": round(float(r.loss), 6),
                         "train_loss": _round(f.get("train_loss")), "train_windows": f.get("train_windows"),
                         "uplink_bytes": f.get("uplink_bytes"), "downlink_bytes": None, "seconds": None})
        glob = sum(r.loss * r.num_examples for _, r in results) / max(1, total_n)
        up = sum(f["uplink_bytes"] for f in self._fit.values())
        rows.append({"round": server_round, "client": "global", "val_mae": round(float(glob), 6),
                     "train_loss": None, "train_windows": sum(f["train_windows"] for f in self._fit.values()),
                     "uplink_bytes": up, "downlink_bytes": self._down, "seconds": seconds})
        self.rows += rows
        _write_rows(self.files.round_log, self.rows)
        self.history.append(rows[-1])
        per = "  ".join(f"client {r['client']} {r['val_mae']:.4f}" for r in rows[:-1])
        log.info(f"round {server_round}: val MAE global {glob:.4f} ({per}); {up / 1e6:.2f} MB up, "
                 f"{self._down / 1e6:.2f} MB down, {seconds:.1f} s")
        return agg


def _by_client(results: list) -> list:
    """Flower's ``(client proxy, result)`` pairs in the order of the clients' partition ids."""
    return sorted(results, key=lambda cr: int(cr[1].metrics["partition_id"]))


def _round(v):
    return None if v is None else round(float(v), 6)


def _save_npz(path: Path, arrays: dict) -> None:
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _write_rows(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole log (small) through a temporary file, so a crash never leaves half a row."""
    with atomic_open(path, "w", newline="") as fh:
        csv.DictWriter(fh, fieldnames=ROUND_FIELDS).writeheader()
        csv.DictWriter(fh, fieldnames=ROUND_FIELDS).writerows(rows)


def make_strategy(fed: FederatedConfig, out: str | Path, *, record: bool = False):
    """Flower's FedAvg or FedProx (``fed.strategy``) waiting for all ``fed.clients``, with :class:`RoundLog`.

    With ``fed.dp_noise > 0`` it is wrapped in Flower's central DP with fixed clipping:
    ``DifferentialPrivacyServerSideFixedClipping`` (``fed.dp_side == 'server'``: the server
    clips each client's update to ``fed.dp_clip`` in L2 norm) or
    ``DifferentialPrivacyClientSideFixedClipping`` (``'client'``: each client clips its own
    update with Flower's ``fixedclipping_mod``, see :func:`client_mods`); either way Gaussian
    noise of standard deviation ``dp_noise * dp_clip / K`` is added to the average. Each fit
    instruction carries ``server_round``, ``lr_factor`` (:func:`~.config.round_lr_factor`)
    and ``keep_optimizer``. Returns ``(strategy, logger)``: ``logger`` is the inner
    :class:`RoundLog` (its ``history`` holds the global rows).
    """
    from flwr.server.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                      DifferentialPrivacyServerSideFixedClipping, FedAvg, FedProx)

    base = FedProx if fed.strategy == "fedprox" else FedAvg
    cls = type(f"Stgraph{base.__name__}", (RoundLog, base), {})
    k = fed.clients
    kwargs = dict(fraction_fit=1.0, fraction_evaluate=1.0, min_fit_clients=k, min_evaluate_clients=k,
                  min_available_clients=k, accept_failures=False,
                  fit_metrics_aggregation_fn=_no_metrics, evaluate_metrics_aggregation_fn=_no_metrics)
    if base is FedProx:
        kwargs["proximal_mu"] = float(fed.proximal_mu)
    inner = cls(**kwargs)
    inner._init_log(out, record=record, fed=fed)
    strategy = inner
    if fed.dp_noise > 0:
        wrapper = (DifferentialPrivacyClientSideFixedClipping if fed.dp_side == "client"
                   else DifferentialPrivacyServerSideFixedClipping)
        strategy = wrapper(inner, noise_multiplier=float(fed.dp_noise), clipping_norm=float(fed.dp_clip),
                           num_sampled_clients=k)
    return strategy, inner


def client_mods(fed: FederatedConfig) -> list:
    """Flower mods of every client app: ``fixedclipping_mod`` under client-side DP, else none."""
    if fed.dp_noise > 0 and fed.dp_side == "client":
        from flwr.client.mod import fixedclipping_mod
        return [fixedclipping_mod]
    return []


def _no_metrics(pairs):
    """Per-client metrics are logged by :class:`RoundLog`; nothing more to aggregate."""
    return {}


def read_rounds(server_dir: str | Path) -> list[dict]:
    """The ``global`` rows of ``server/rounds.csv`` (numbers parsed)."""
    with ServerFiles(server_dir).round_log.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["client"] == "global"]
    return [{"round": int(r["round"]), "val_mae": float(r["val_mae"]), "uplink_bytes": int(r["uplink_bytes"]),
             "downlink_bytes": int(r["downlink_bytes"]), "seconds": float(r["seconds"])} for r in rows]
