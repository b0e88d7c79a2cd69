"""Graphs that change over time: :class:`DynamicGraph` (read by :func:`read_dynamic_graph`) and the
per-window graphs of a batch (:class:`WindowGraphs`).

File: a CSV ``timestamp,source,target,weight`` (the time column may also be named ``time``, ``date`` or
``datetime``; ``weight`` may be absent: every edge 1), read by the one edge-table reader
(:func:`stgraph.graph.edges.read_edge_table`: another weight column only when declared, e.g.
``--weight-column flow --weights flow``). All rows with the same timestamp are the graph of one **period**,
which starts at that timestamp and holds until the next period starts. A pair may appear once per period
(a repeated pair is an error unless ``aggregate`` is given). The weights of all periods go through one transform
(:func:`stgraph.graph.convert.edge_similarity` with ``weights=``), so they stay comparable over time.

Storage is compact: the periods' edge lists one after another (``edge_index [2, E_all]``,
``edge_weight [E_all]``) with pointers ``ptr [P + 1]`` (period ``p`` holds edges ``ptr[p]:ptr[p+1]``), and,
once aligned to a series (:meth:`DynamicGraph.aligned`), one period index per series step
(``step_period [T]``), never a copy of the graph per step.

Alignment is as-of, as for covariates (:func:`stgraph.io.covariates.align_times`): a step takes the latest
period that started at or before it. A period holds until the next one (no tolerance), unless
``tolerance`` is given; steps before the first period (or past the tolerance) have no graph (``-1``:
no edges, the models then see self loops only) and are counted in :meth:`DynamicGraph.info`.

A window takes the graph of its **last input step** (the newest graph known when the forecast is
issued; a graph of a later step would leak the future). :class:`WindowGraphs` holds the graphs of
``B`` windows as one disjoint union, as PyG batches graphs: window ``b``'s node ``n`` is node
``b * N + n`` of ``edge_index [2, E_b]``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataFormatError, GraphError, where
from ..files import fingerprint

log = logging.getLogger(__name__)

__all__ = ["DynamicGraph", "WindowGraphs", "TIME_NAMES", "is_dynamic_table", "read_dynamic_graph",
           "write_dynamic_graph"]

#: names of the time column of a dynamic graph table
TIME_NAMES = ("timestamp", "time", "date", "datetime")
_SOURCE_NAMES = ("source", "from", "src", "u")
_TARGET_NAMES = ("target", "to", "dst", "v")


@dataclass
class WindowGraphs:
    """The graphs of ``B`` windows as one disjoint union (PyG's batching).

    Attributes:
        edge_index: ``[2, E_b]`` int64; window ``b``'s node ``n`` is ``b * N + n``; edges grouped by window.
        edge_weight: ``[E_b]`` float32 similarities.
        num_nodes: ``N``, nodes of one window's graph.
        num_windows: ``B``.
        periods: ``[B]`` int64 on the CPU, the period of the :class:`DynamicGraph` each window holds (``-1``:
            none), and key: that graph's :attr:`DynamicGraph.key`; ``None`` when not known. A model may cache
            what it computes from one period's graph under ``(key, period)`` (STGCN's ``lambda_max``).
    """

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    num_nodes: int
    num_windows: int
    periods: torch.Tensor | None = None
    key: str | None = None

    def to(self, device, non_blocking: bool = False) -> "WindowGraphs":
        return replace(self, edge_index=self.edge_index.to(device, non_blocking=non_blocking),
                       edge_weight=self.edge_weight.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "WindowGraphs":
        return replace(self, edge_index=self.edge_index.pin_memory(), edge_weight=self.edge_weight.pin_memory())

    def join(self, other: "WindowGraphs") -> "WindowGraphs":
        """This batch's windows then ``other``'s as one union (``other``'s nodes shifted past this one's);
        the windows' periods are kept when both batches come from the same graph (the same :attr:`key`)."""
        if other is None:
            raise GraphError("joining per-window graphs with a batch that has none: replayed windows and new ones "
                             "must both come with a graph that changes over time (data.graph), or neither")
        if other.num_nodes != self.num_nodes:
            raise GraphError(f"joining per-window graphs of {self.num_nodes} and {other.num_nodes} nodes")
        same = self.key is not None and self.key == other.key and self.periods is not None and other.periods is not None
        return WindowGraphs(torch.cat([self.edge_index, other.edge_index + self.num_windows * self.num_nodes], 1),
                            torch.cat([self.edge_weight, other.edge_weight]), self.num_nodes,
                            self.num_windows + other.num_windows,
                            periods=torch.cat([self.periods, other.periods]) if same else None,
                            key=self.key if same else None)

    def node_major(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(edge_index, edge_weight, N * B)`` with window ``b``'s node ``n`` renumbered ``n * B + b``:
        the row of node-major features ``[N, B, ...]`` viewed as ``[N * B, ...]``."""
        N, B = self.num_nodes, self.num_windows
        ei = self.edge_index
        return (ei % N) * B + ei // N, self.edge_weight, N * B

    def window(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window ``b``'s own ``(edge_index [2, E], edge_weight [E])`` on nodes ``0..N-1``."""
        keep = (self.edge_index[0] // self.num_nodes) == b
        return self.edge_index[:, keep] - b * self.num_nodes, self.edge_weight[keep]


@dataclass
class DynamicGraph:
    """A graph per period over fixed nodes (the series' sensors), stored compactly (module docstring).

    Attributes:
        sensor_ids: ``N`` node ids, in the series' order.
        times: ``[P]`` datetime64[ns], strictly increasing: period ``p`` starts at ``times[p]``.
        edge_index: ``[2, E_all]`` int64 tensor, the periods' edges one after another.
        edge_weight: ``[E_all]`` float32 tensor, similarities in ``[0, 1]``.
        ptr: ``[P + 1]`` int64 tensor: period ``p``'s edges are ``ptr[p]:ptr[p + 1]``.
        step_period: ``[T]`` int64 tensor, the period of each series step (``-1``: none), once aligned.
        source: the file it came from; weights_done: what was done to the weights.
        key: 16 hex digits of the periods (start times, edges, weights, node count): the run's graph
            fingerprint, and the key of caches by period (the same file read twice gives the same key).
    """

    sensor_ids: list
    times: np.ndarray
    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    ptr: torch.Tensor
    step_period: torch.Tensor | None = None
    source: str = ""
    weights_done: str = ""
    key: str = field(default="", compare=False, repr=False)

    def __post_init__(self):
        if not self.key:  # replace() (to, aligned) passes the key on: the periods are the same
            self.key = fingerprint(self.times.astype("datetime64[ns]").astype(np.int64), self.ptr.cpu().numpy(),
                                   self.edge_index.cpu().numpy(), self.edge_weight.cpu().numpy().astype(np.float32),
                                   str(len(self.sensor_ids)), "dynamic")

    @property
    def num_nodes(self) -> int:
        return len(self.sensor_ids)

    @property
    def num_periods(self) -> int:
        return int(self.times.shape[0])

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    def to(self, device) -> "DynamicGraph":
        sp = None if self.step_period is None else self.step_period.to(device)
        return replace(self, edge_index=self.edge_index.to(device), edge_weight=self.edge_weight.to(device),
                       ptr=self.ptr.to(device), step_period=sp)

    def period(self, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Period ``p``'s ``(edge_index [2, E_p], edge_weight [E_p])``."""
        a, b = int(self.ptr[p]), int(self.ptr[p + 1])
        return self.edge_index[:, a:b], self.edge_weight[a:b]

    def aligned(self, timestamps: np.ndarray, tolerance=None) -> "DynamicGraph":
        """This graph with ``step_period [T]`` for a series' ``timestamps [T]`` (as-of; module docstring).

        ``tolerance``: how old a period may be (a ``numpy.timedelta64``); ``None``: until the next period.

        Raises:
            SeriesError: no step of the series has a period at or before it (names the file and both ranges).
        """
        from ..io.covariates import align_times

        tol = np.timedelta64(2 ** 62, "ns") if tolerance is None else tolerance
        rows = align_times(self.times, np.asarray(timestamps), tol, self.source)
        before = int((rows < 0).sum())
        if before:
            log.warning("dynamic graph %s: %d of %d series steps come before its first period (%s) or past the "
                        "tolerance; windows ending there see no edges", where(self.source), before, len(rows),
                        self.times[0])
        return replace(self, step_period=torch.from_numpy(rows.astype(np.int64)).to(self.device))

    def _steps(self) -> torch.Tensor:
        if self.step_period is None:
            raise GraphError(f"dynamic graph {where(self.source)}: not aligned to a series; call "
                             f"DynamicGraph.aligned(series.timestamps) first")
        return self.step_period

    def edges_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The graph valid at series step ``step``: ``(edge_index [2, E], edge_weight [E])`` (empty: none)."""
        p = int(self._steps()[step])
        if p < 0:
            return self.edge_index[:, :0], self.edge_weight[:0]
        return self.period(p)

    def window_graphs(self, last_steps: torch.Tensor) -> WindowGraphs:
        """The graphs at series steps ``last_steps [B]`` (each window's last input step) as a
        :class:`WindowGraphs`; one gather, no per-window loop."""
        return self.period_graphs(self._steps()[last_steps.to(self.device)])

    def period_at(self, when) -> int:
        """The period valid at time ``when`` (as-of; ``-1``: before the first period)."""
        t = np.datetime64(when, "ns").astype(np.int64)
        return int(np.searchsorted(self.times.astype("datetime64[ns]").astype(np.int64), t, side="right")) - 1

    def period_graphs(self, periods: torch.Tensor) -> WindowGraphs:
        """The graphs of periods ``periods [B]`` (``-1``: no edges) as a :class:`WindowGraphs`."""
        N = self.num_nodes
        p = periods.to(self.device)
        has = p >= 0
        pc = p.clamp(min=0)
        lo = torch.where(has, self.ptr[pc], 0)
        counts = torch.where(has, self.ptr[pc + 1], 0) - lo            # [B]
        B = int(p.numel())
        win = torch.repeat_interleave(torch.arange(B, device=self.device), counts)  # [E_b]
        first = torch.cumsum(counts, 0) - counts
        eid = lo[win] + torch.arange(win.numel(), device=self.device) - first[win]
        return WindowGraphs(self.edge_index[:, eid] + win * N, self.edge_weight[eid], N, B,
                            periods=periods if periods.device.type == "cpu" else None, key=self.key)

    def mean_graph(self, steps: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The static graph of the mean weights over series ``steps`` (default all aligned steps; a step
        without a pair counts 0): every pair seen in one of them, ``(edge_index [2, E], edge_weight [E])``."""
        sp = self._steps().cpu().numpy()
        sp = sp if steps is None else sp[np.asarray(steps)]
        used = np.bincount(sp[sp >= 0], minlength=self.num_periods).astype(np.float64)  # steps per period
        ptr = self.ptr.cpu().numpy()
        reps = used[np.repeat(np.arange(self.num_periods), np.diff(ptr))]               # [E_all]
        ei = self.edge_index.cpu().numpy()
        N = self.num_nodes
        keys, inv = np.unique(ei[0] * N + ei[1], return_inverse=True)
        total = np.bincount(inv, weights=self.edge_weight.cpu().numpy() * reps, minlength=keys.size)
        keep = total > 0
        w = total[keep] / max(len(sp), 1)
        k = keys[keep]
        return (torch.from_numpy(np.stack([k // N, k % N]).astype(np.int64)), torch.from_numpy(w.astype(np.float32)))

    def info(self) -> dict:
        """Periods, their time range, edges per period (min / mean / max), churn (the mean share of a period's
        edges that were not in the one before, over consecutive periods), weights, and, once aligned, the
        steps without a graph."""
        ptr = self.ptr.cpu().numpy()
        sizes = np.diff(ptr)
        ei = self.edge_index.cpu().numpy()
        keys = ei[0] * self.num_nodes + ei[1]
        churn = []
        for p in range(1, self.num_periods):  # one set difference per period, not per step
            prev, cur = keys[ptr[p - 1]:ptr[p]], keys[ptr[p]:ptr[p + 1]]
            churn.append(np.setdiff1d(cur, prev).size / max(cur.size, 1))
        w = self.edge_weight.cpu().numpy()
        out = {"dynamic": True, "nodes": self.num_nodes, "periods": self.num_periods,
               "first_period": _iso(self.times[0]), "last_period": _iso(self.times[-1]),
               "edges_per_period": {"min": int(sizes.min()), "mean": round(float(sizes.mean()), 2),
                                    "max": int(sizes.max())},
               "distinct_pairs": int(np.unique(keys).size),
               "churn": round(float(np.mean(churn)), 4) if churn else 0.0,
               "weights": f"{float(w.min()):.4g} .. {float(w.max()):.4g}" if w.size else "no edges",
               "weight_meaning": self.weights_done}
        if self.step_period is not None:
            sp = self.step_period.cpu().numpy()
            out.update(steps=int(sp.size), steps_without_graph=int((sp < 0).sum()))
        return out


def _iso(t) -> str:
    return str(np.datetime_as_string(np.datetime64(t, "s"))).replace("T00:00:00", "")


# ----------------------------------------------------------------------------------- reading
def _column(header: list[str], names: Sequence[str]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def is_dynamic_table(path) -> bool:
    """Whether ``path`` is a CSV edge table with a time column, or an HDF5 file of one graph per period
    (:mod:`stgraph.graph.dynamic_h5`): a dynamic graph."""
    p = Path(str(path))
    if p.suffix.lower() in (".h5", ".hdf5"):
        from .dynamic_h5 import is_dynamic_h5
        return is_dynamic_h5(p)
    if p.suffix.lower() not in (".csv", ".txt") or not p.is_file():
        return False
    from ..io.csv import read_header
    header = [h.strip().lower() for h in read_header(p)]
    return _column(header, TIME_NAMES) is not None and _column(header, _SOURCE_NAMES) is not None


def _times(cells: np.ndarray, name: str, path) -> np.ndarray:
    try:
        return np.array([c.replace(" ", "T") for c in cells], dtype="datetime64[ns]")
    except ValueError:
        for i, c in enumerate(cells):
            try:
                np.datetime64(c.replace(" ", "T"), "ns")
            except ValueError:
                raise DataFormatError(f"{where(path)}: row {i + 1}, column '{name}': {str(c)!r} is not a date/time; "
                                      f"expected ISO text such as 2020-03-05 or 2020-03-05 08:00") from None
        raise


def read_dynamic_graph(path, sensor_ids: Sequence[str] | None, weights: str | None = None,
                       weight_column: str | None = None, aggregate: str | None = None) -> DynamicGraph:
    """Read a dynamic graph table (module docstring) over the series' ``sensor_ids``.

    The table is read by the one edge-table reader (:func:`stgraph.graph.edges.read_edge_table`, with its time
    column found by name, :data:`TIME_NAMES`), so its rules hold: another weight column is read only when named
    (``weight_column``, with ``weights``), and a pair repeated at one time is an error unless ``aggregate``.

    Args:
        path: CSV ``timestamp,source,target[,weight]``, or an HDF5 file of one graph per period
            (:mod:`stgraph.graph.dynamic_h5`; ``weights``, ``weight_column`` and ``aggregate`` do not apply).
        sensor_ids: the ``N`` node ids, in the series' order (the model's node positions); ``None``: the
            table's own ids in order of appearance.
        weights: what the weights are (``'similarity'``, ``'distance'``, ``'flow'``, as in
            :func:`stgraph.graph.convert.edge_similarity`, applied once over all periods); ``None``: inferred
            there, with its warning.
        weight_column, aggregate: as in :func:`~stgraph.graph.edges.read_edge_table`.

    Raises:
        MissingFileError / DataFormatError: no such file, no time column, a bad time or weight.
        GraphError: an id that is not a sensor of the series (row named), or a pair repeated within a period.
    """
    from ..io.csv import read_header
    from ..io.sniff import existing_file
    from .convert import edge_similarity
    from .edges import read_edge_table

    path = existing_file(str(path))
    if path.suffix.lower() in (".h5", ".hdf5"):  # one graph per period, weights stored as similarities
        from .dynamic_h5 import read_dynamic_h5
        a = read_dynamic_h5(path, sensor_ids)
        return DynamicGraph(a["sensor_ids"], a["times"], *(torch.from_numpy(a[k]) for k in
                                                           ("edge_index", "edge_weight", "ptr")),
                            source=a["source"], weights_done="similarity (stored in [0, 1]), used as is")
    header = [h.strip().lower() for h in read_header(path)]
    tc = _column(header, TIME_NAMES)
    if tc is None:
        raise DataFormatError(f"{where(path)}: columns {header}; a graph that changes over time needs a time column "
                              f"named one of {list(TIME_NAMES)} (timestamp,source,target,weight)")
    table = read_edge_table(path, weight_column=weight_column, weights=weights, aggregate=aggregate,
                            time_column=header[tc])
    sensor_ids = table.ids if sensor_ids is None else sensor_ids
    t = _times(table.time, header[tc], path)
    pos = {s: i for i, s in enumerate(str(s) for s in sensor_ids)}
    ends = []
    for name, ids in (("source", table.src), ("target", table.dst)):
        idx = np.array([pos.get(s, -1) for s in ids.tolist()], dtype=np.int64)
        if (idx < 0).any():
            i = int(np.flatnonzero(idx < 0)[0])
            raise GraphError(f"{where(path)}: edge {i + 1} ({table.src[i]} -> {table.dst[i]} at {table.time[i]}), "
                             f"{name} {str(ids[i])!r} is not a sensor of the series; expected one of its {len(pos)} "
                             f"ids (e.g. {list(pos)[:3]})")
        ends.append(idx)
    w, meaning = table.weight, table.meaning
    if w is None and table.distance is not None:
        w, meaning = table.distance, "distance"
    w = np.ones(len(t)) if w is None else w
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        i = int(bad[0])
        raise GraphError(f"{where(path)}: edge {i + 1} ({table.src[i]} -> {table.dst[i]} at {table.time[i]}): weight "
                         f"{w[i]:g}; expected a finite number >= 0")
    order = np.lexsort((ends[1], ends[0], t.astype(np.int64)))  # by period, then pair
    key = t.astype(np.int64)[order]
    times, starts = np.unique(key, return_index=True)
    ptr = np.append(starts, key.size).astype(np.int64)
    sim, done = edge_similarity(w[order], meaning, source=path)
    for note in table.notes:
        log.debug("dynamic graph %s: %s", where(path), note)
    return DynamicGraph([str(s) for s in sensor_ids], times.astype("datetime64[ns]"),
                        torch.from_numpy(np.stack([ends[0][order], ends[1][order]]).astype(np.int64)),
                        torch.from_numpy(np.asarray(sim, dtype=np.float32)), torch.from_numpy(ptr),
                        source=str(path), weights_done=done)


def write_dynamic_graph(path, graph: DynamicGraph) -> Path:
    """Write ``graph`` as ``timestamp,source,target,weight`` (its similarities; read it back with
    ``weights='similarity'``), atomically. Returns the path."""
    from ..cells import safe_cell
    from ..files import atomic_write

    ptr = graph.ptr.cpu().numpy()
    ei, w = graph.edge_index.cpu().numpy(), graph.edge_weight.cpu().numpy()
    period = np.repeat(np.arange(graph.num_periods), np.diff(ptr))
    ids = [safe_cell(s) for s in graph.sensor_ids]
    stamps = [_iso(t) for t in graph.times]
    lines = ["timestamp,source,target,weight"]
    lines += [f"{stamps[p]},{ids[a]},{ids[b]},{x:.6g}" for p, a, b, x in zip(period, ei[0], ei[1], w)]
    return atomic_write(path, "\n".join(lines) + "\n")
