"""The server's checks of every client update on arrival: a federation does not trust its clients.

:class:`UpdateGuard` screens a round's fit results before any aggregation (FedAvg, median, trimmed
mean, and before Flower's DP clipping). An update is refused, dropped from the round with a WARNING
log line naming the client (its partition id) and why, when

* its ``partition_id`` is not an integer in ``0 .. K-1``, is claimed by two clients in the round, or
  belongs to another node (the first node that sent it keeps it for the federation);
* its arrays are unreadable, not as many as the global model's, of another shape, not floating point,
  or not finite (NaN, inf);
* its example count is not an integer >= 1, or more than the client holds: the training windows of
  its folder (``OUT/client_<i>``, written from ``partition.csv``) when the server can read it, else
  more than :data:`BOUND_FACTOR` times the round's median count;
* its distance from the global model it started from (L2 over all arrays) is more than
  :data:`BOUND_FACTOR` times the median distance of the round's updates.

A round needs a majority of the clients (``K // 2 + 1``) with valid updates: with fewer, or with a
client that failed or left, the round cannot complete and :class:`~stgraph.errors.FederationError`
says so (the server then stops; its last good global model stays in ``server/global_shared.npz``).
The median-based bound holds as long as most clients are honest: with three clients one hostile update
is always measured against an honest one.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FederationError

log = logging.getLogger(__name__)

#: an update whose distance from the global model (or whose example count, when the server cannot read
#: the client's folder) is more than this many times the round's median is refused
BOUND_FACTOR = 10.0


def needed(clients: int) -> int:
    """Valid updates a round of ``clients`` clients needs: a majority."""
    return clients // 2 + 1


class UpdateGuard:
    """Checks of a round's updates for a federation of ``clients`` clients.

    Args:
        clients: K.
        limit: the most training windows client ``i`` can hold (``None``: unknown).
    """

    def __init__(self, clients: int, limit: Callable[[int], int | None] | None = None) -> None:
        self.clients = int(clients)
        self.limit = limit or (lambda pid: None)
        self.nodes: dict[int, str] = {}   # partition id -> the node that holds it
        self.refused: list[dict] = []     # every refusal: round, client, node, reason

    # ------------------------------------------------------------------ identity
    def identify(self, server_round: int, results: list, what: str = "update") -> list[tuple[int, tuple]]:
        """``(partition id, (proxy, result))`` of the results whose identity holds (see the module)."""
        claims: dict[int, list] = {}
        for pair in results:
            pid = self._partition_id(pair[1].metrics.get("partition_id"))
            if pid is None:
                self._refuse(server_round, pair, f"partition id {pair[1].metrics.get('partition_id')!r}: expected "
                                                 f"an integer 0 .. {self.clients - 1}", what)
                continue
            claims.setdefault(pid, []).append(pair)
        out = []
        for pid, pairs in sorted(claims.items()):
            owner = self.nodes.get(pid)
            for pair in pairs:
                cid = str(pair[0].cid)
                if owner is not None and cid != owner:
                    self._refuse(server_round, pair, f"claims partition id {pid}, which node {owner} holds", what)
                elif owner is None and len(pairs) > 1:
                    self._refuse(server_round, pair, f"partition id {pid} claimed by {len(pairs)} clients in "
                                                     f"this round", what)
                else:
                    out.append((pid, pair))
        return out

    def bind(self, accepted: list[tuple[int, tuple]]) -> None:
        """The nodes of accepted updates keep their partition ids for the rest of the federation."""
        for pid, (proxy, _) in accepted:
            self.nodes.setdefault(pid, str(proxy.cid))

    def _partition_id(self, value) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return None
        if not np.isfinite(value) or value != int(value) or not 0 <= int(value) < self.clients:
            return None
        return int(value)

    # ------------------------------------------------------------------ updates
    def screen(self, server_round: int, sent: list[np.ndarray], results: list, failures: list) -> list:
        """The ``(proxy, FitRes)`` pairs of ``results`` that pass every check, in partition order.

        ``sent``: the global arrays of this round (what every client started from).
        Raises :class:`~stgraph.errors.FederationError` when the round cannot complete.
        """
        from flwr.common import parameters_to_ndarrays

        candidates = []
        for pid, pair in self.identify(server_round, results):
            res = pair[1]
            try:
                arrays = parameters_to_ndarrays(res.parameters)
            except Exception as e:  # noqa: BLE001 - whatever a client sent, it is refused, never a crash
                self._refuse(server_round, pair, f"unreadable arrays ({type(e).__name__}: {e})", pid=pid)
                continue
            why = self._arrays_problem(arrays, sent) or self._count_problem(res.num_examples, pid)
            if why:
                self._refuse(server_round, pair, why, pid=pid)
            else:
                candidates.append((pid, pair, _distance(arrays, sent)))
        candidates = self._median_bounds(server_round, candidates)
        accepted = [(pid, pair) for pid, pair, _ in candidates]
        self._check_enough(server_round, accepted, failures)
        self.bind(accepted)
        return [pair for _, pair in accepted]

    def _arrays_problem(self, arrays: list[np.ndarray], sent: list[np.ndarray]) -> str | None:
        if len(arrays) != len(sent):
            return f"{len(arrays)} arrays; expected {len(sent)} (the global model's)"
        for i, (a, s) in enumerate(zip(arrays, sent)):
            if a.shape != s.shape:
                return f"array p{i:04d} has shape {a.shape}; expected {s.shape}"
            if not np.issubdtype(a.dtype, np.floating):
                return f"array p{i:04d} has dtype {a.dtype}; expected floating point"
            if not np.isfinite(a).all():
                bad = int(a.size - np.isfinite(a).sum())
                return f"array p{i:04d} has {bad} of {a.size} values not finite (NaN or inf)"
        return None

    def _count_problem(self, n, pid: int) -> str | None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            return f"example count {n!r}: expected an integer >= 1"
        most = self.limit(pid)
        if most is not None and n > most:
            return f"example count {n}: client {pid} holds {most} training windows"
        return None

    def _median_bounds(self, server_round: int, candidates: list) -> list:
        """Refuse the distances and, where the client's holdings are unknown, the counts beyond
        :data:`BOUND_FACTOR` times the round's medians."""
        if not candidates:
            return candidates
        dist = float(np.median([d for *_, d in candidates]))
        counts = float(np.median([pair[1].num_examples for _, pair, _ in candidates]))
        kept = []
        for pid, pair, d in candidates:
            n = pair[1].num_examples
            if d > BOUND_FACTOR * dist:
                self._refuse(server_round, pair, f"update norm {d:.4g} is more than {BOUND_FACTOR:g} x the round's "
                                                 f"median {dist:.4g}", pid=pid)
            elif self.limit(pid) is None and n > BOUND_FACTOR * counts:
                self._refuse(server_round, pair, f"example count {n} is more than {BOUND_FACTOR:g} x the round's "
                                                 f"median {counts:g}", pid=pid)
            else:
                kept.append((pid, pair, d))
        return kept

    def _check_enough(self, server_round: int, accepted: list, failures: list) -> None:
        want = needed(self.clients)
        lost = [_failure_text(f) for f in failures]
        if lost:
            raise FederationError(f"round {server_round}: {len(lost)} client(s) failed or left ({'; '.join(lost)}); "
                                  f"the round cannot complete")
        if len(accepted) < want:
            why = "; ".join(f"client {r['client']}: {r['reason']}" for r in self.refused
                            if r["round"] == server_round)
            raise FederationError(f"round {server_round}: {len(accepted)} valid update(s) of {self.clients}, at least "
                                  f"{want} needed (refused: {why or 'none'}); the round cannot complete")

    def _refuse(self, server_round: int, pair: tuple, reason: str, what: str = "update", pid=None) -> None:
        proxy, res = pair
        client = pid if pid is not None else res.metrics.get("partition_id")
        self.refused.append({"round": server_round, "client": client, "node": str(proxy.cid), "reason": reason})
        log.warning(f"round {server_round}: refused the {what} of client {client} (node {proxy.cid}): {reason}")


def _distance(arrays: list[np.ndarray], sent: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum((a.astype(np.float64) - s.astype(np.float64)) ** 2))
                             for a, s in zip(arrays, sent))))


def _failure_text(failure) -> str:
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    proxy, res = failure
    return f"node {proxy.cid}: {getattr(res.status, 'message', '') or 'failed'}"


def folder_limits(server_dir: str | Path) -> Callable[[int], int | None]:
    """``limit(i)``: the training windows of client ``i``'s folder beside the server folder
    (``OUT/client_<i>``), ``None`` when it cannot be read (a server on another machine)."""
    from .layout import FederationFiles

    root = FederationFiles(Path(server_dir).parent)
    known: dict[int, int | None] = {}

    def limit(pid: int) -> int | None:
        if pid not in known:
            known[pid] = _windows(root.client(pid).root)
        return known[pid]

    return limit


def _windows(client_dir: Path) -> int | None:
    from .folders import load_client
    from .layout import ClientFiles

    if not ClientFiles(client_dir).client_info.is_file():
        return None
    try:
        return int(load_client(client_dir).prepared.data.split_starts("train").numel())
    except Exception as e:  # noqa: BLE001 - the bound falls back to the round's median
        log.warning(f"cannot read the client folder '{client_dir}' ({type(e).__name__}: {e}); its example count "
                    f"is bounded by the round's median")
        return None
