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

Every update is screened on arrival by :class:`~.guard.UpdateGuard` before it is aggregated (finite,
the global model's arrays and shapes, an example count the client can hold, a distance from the global
model within :data:`~.guard.BOUND_FACTOR` times the round's median, one client per partition id); a
refused update is dropped with a WARNING naming the client. ``federated.aggregate`` picks the
aggregation: ``fedavg`` (the mean weighted by training windows; FedProx's with ``strategy: fedprox``),
``median`` (Flower's ``FedMedian``: the coordinate-wise median, unweighted) or ``trimmed-mean``
(Flower's ``FedTrimmedAvg``: per coordinate the mean without the :func:`trim_count` largest and smallest
values, unweighted); FedProx's ``proximal_mu`` reaches the clients under each. A round that cannot
complete (too few valid updates, a client failed or left) raises
:class:`~stgraph.errors.FederationError`; the strategy keeps it in ``failure`` for the caller and no
global model of that round is saved.
"""
from __future__ import annotations

import csv
import logging
import math
import numbers
import time
from pathlib import Path

import numpy as np

from ..errors import FederationError
from ..files import atomic_open
from .config import FederatedConfig, round_lr_factor
from .guard import UpdateGuard, folder_limits
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
        self.guard = UpdateGuard(self.fed.clients, folder_limits(self.files.root))
        self.failure: FederationError | None = None
        self._sent: list = []
        self._screened = 0

    def configure_fit(self, server_round, parameters, client_manager):
        from flwr.common import parameters_to_ndarrays

        self._t0 = time.perf_counter()
        self._sent = parameters_to_ndarrays(parameters)
        if not all(np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() for a in self._sent):
            self._fail(FederationError(f"round {server_round}: the global model is not finite floating point (the "
                                       f"initial parameters come from one client); the federation cannot start"))
        self._wait_for_clients(server_round, client_manager)
        pairs = super().configure_fit(server_round, parameters, client_manager)
        factor = round_lr_factor(self.fed, server_round)
        for _, ins in pairs:
            ins.config["server_round"] = server_round
            ins.config["lr_factor"] = factor
            ins.config["keep_optimizer"] = bool(self.fed.keep_optimizer)
            if self.fed.strategy == "fedprox":
                ins.config["proximal_mu"] = float(self.fed.proximal_mu)
        self._down = sum(_nbytes(ins.parameters) for _, ins in pairs)
        return pairs

    def _wait_for_clients(self, server_round: int, client_manager) -> None:
        """After the first round, a client that left is not waited for longer than a round."""
        if server_round > 1 and hasattr(client_manager, "wait_for") and \
                not client_manager.wait_for(self.fed.clients, timeout=self.fed.round_timeout):
            self._fail(FederationError(
                f"round {server_round}: {client_manager.num_available()} of {self.fed.clients} clients connected "
                f"after {self.fed.round_timeout:g} s (a client left); the round cannot start"))

    def _fail(self, error: FederationError):
        self.failure = self.failure or error
        log.error(f"{error}; the last good global model is in '{self.files.global_shared}'")
        raise error

    def screen(self, server_round, results, failures) -> list:
        """The results that pass :class:`~.guard.UpdateGuard` (once a round), in partition order."""
        if self._screened == server_round:
            return results
        try:
            results = self.guard.screen(server_round, self._sent, results, failures)
        except FederationError as e:
            self._fail(e)
        self._screened = server_round
        return results

    def aggregate_fit(self, server_round, results, failures):
        # in client order, not arrival order: a float sum depends on its order, and a federation run twice
        # should give the same global model bit for bit
        results = self.screen(server_round, results, failures)
        if self.fed.aggregate == "trimmed-mean":  # Flower's FedTrimmedAvg: its beta for this round's count
            self.beta = trim_beta(len(results))
        self._fit = {int(r.metrics["partition_id"]): {"train_loss": r.metrics.get("train_loss"),
                                                      "train_windows": r.num_examples,
                                                      "uplink_bytes": _nbytes(r.parameters)}
                     for _, r in results}
        return super().aggregate_fit(server_round, results, [])

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
        results = self._valid_evaluations(server_round, results)
        agg = super().aggregate_evaluate(server_round, results, [])
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


    def _valid_evaluations(self, server_round, results) -> list:
        """The evaluations of known clients with a finite loss (the others logged and left out of the
        global row), in partition order."""
        kept = []
        for pid, pair in self.guard.identify(server_round, results, what="evaluation"):
            loss, n = pair[1].loss, pair[1].num_examples
            if not (isinstance(loss, numbers.Real) and math.isfinite(loss)) or not isinstance(n, numbers.Integral) \
                    or n < 1:
                self.guard._refuse(server_round, pair, f"validation MAE {loss!r} over {n!r} examples: expected a "
                                                       f"finite number over >= 1", what="evaluation", pid=pid)
            else:
                kept.append(pair)
        return kept


def trim_count(n: int) -> int:
    """Values trimmed from each end per coordinate by ``trimmed-mean`` among ``n`` updates: a fifth of them,
    at least one when ``n >= 3``, none below (the plain mean)."""
    return max(1, int(0.2 * n)) if n >= 3 else 0


def trim_beta(n: int) -> float:
    """Flower's ``FedTrimmedAvg.beta`` that trims :func:`trim_count` values from each end of ``n``."""
    return (trim_count(n) + 0.25) / n if trim_count(n) else 0.0  # < 0.5, as Flower requires


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
    """Flower's strategy for ``fed.aggregate`` (FedAvg, or FedProx with ``fed.strategy == 'fedprox'``;
    FedMedian; FedTrimmedAvg) waiting for all ``fed.clients``, with :class:`RoundLog` and its update checks.

    With ``fed.dp_noise > 0`` it is wrapped in Flower's central DP with fixed clipping:
    ``DifferentialPrivacyServerSideFixedClipping`` (``fed.dp_side == 'server'``: the server
    clips each client's update to ``fed.dp_clip`` in L2 norm) or
    ``DifferentialPrivacyClientSideFixedClipping`` (``'client'``: each client clips its own
    update with Flower's ``fixedclipping_mod``, see :func:`client_mods`); either way Gaussian
    noise of standard deviation ``dp_noise * dp_clip / K`` is added to the average. The updates are
    screened before the wrapper clips them. Each fit instruction carries ``server_round``,
    ``lr_factor`` (:func:`~.config.round_lr_factor`), ``keep_optimizer`` and, under FedProx,
    ``proximal_mu``. Returns ``(strategy, logger)``: ``logger`` is the inner :class:`RoundLog` (its
    ``history`` holds the global rows, its ``failure`` a round that could not complete).
    """
    from flwr.server.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                      DifferentialPrivacyServerSideFixedClipping, FedAvg, FedMedian, FedProx,
                                      FedTrimmedAvg)

    base = {"median": FedMedian, "trimmed-mean": FedTrimmedAvg}.get(fed.aggregate)
    base = base or (FedProx if fed.strategy == "fedprox" else FedAvg)
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
        screened = type(f"Screened{wrapper.__name__}", (_ScreenFirst, wrapper), {})
        strategy = screened(inner, noise_multiplier=float(fed.dp_noise), clipping_norm=float(fed.dp_clip),
                            num_sampled_clients=k)
    return strategy, inner


class _ScreenFirst:
    """Mixin for Flower's DP wrappers: the inner :class:`RoundLog` screens the updates before the wrapper
    clips them (a NaN or wrong-shape update never reaches the clipping arithmetic)."""

    def aggregate_fit(self, server_round, results, failures):
        return super().aggregate_fit(server_round, self.strategy.screen(server_round, results, failures), [])


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
