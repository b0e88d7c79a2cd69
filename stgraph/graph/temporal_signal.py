"""Interop with PyTorch Geometric Temporal's signal layout (no dependency on that package).

PyG Temporal's ``DynamicGraphTemporalSignal(edge_indices, edge_weights, features, targets)`` holds one snapshot
per time step: ``edge_indices[t]`` ``[2, E_t]``, ``edge_weights[t]`` ``[E_t]``, ``features[t]`` ``[N, F]`` and
``targets[t]`` ``[N]`` or ``[N, C_out]`` (numpy arrays). The same layout with one graph for every snapshot is its
``StaticGraphTemporalSignal``.

* :func:`to_temporal_signal` gives that layout from a :class:`~stgraph.io.series.Series` ``[T, N, C]`` and a
  :class:`~stgraph.graph.dynamic.DynamicGraph` aligned to it: snapshot ``t`` (``t = 0 .. T-2``) holds the graph
  valid at step ``t``, ``features[t] = values[t]`` ``[N, C]`` and ``targets[t] = values[t + 1]`` of the target
  channel(s) (one step ahead, as PyG Temporal's loaders with one lag). ``DynamicGraphTemporalSignal(**out)``
  builds the signal.
* :func:`from_temporal_signal` reads such a signal (the object, or its four lists) back into a ``Series`` and a
  ``DynamicGraph``: the series is the features (plus the last target, when targets and features have the same
  channels), timestamps from ``start`` every ``freq``; consecutive snapshots with the same graph become one
  period (the compact storage of :mod:`stgraph.graph.dynamic`).

A round trip (to, then from) gives back the series and the graph at every step.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import GraphError, SeriesError
from ..io.series import Series, parse_interval
from .dynamic import DynamicGraph

__all__ = ["to_temporal_signal", "from_temporal_signal"]


def to_temporal_signal(series: Series, graph: DynamicGraph, target: int | Sequence[int] = 0) -> dict[str, list]:
    """``{'edge_indices', 'edge_weights', 'features', 'targets'}``, lists of ``T - 1`` numpy arrays (module doc).

    Args:
        series: values ``[T, N, C]`` (nulls as in the series).
        graph: a dynamic graph aligned to ``series`` (:meth:`DynamicGraph.aligned`) over its sensors.
        target: the target channel index (``targets[t]`` ``[N]``) or indices (``[N, C_out]``).

    Raises:
        GraphError: the graph is not aligned to this series or has other nodes.
    """
    steps = None if graph.step_period is None else int(graph.step_period.numel())
    if steps != series.num_steps:
        raise GraphError(f"dynamic graph {graph.source}: aligned to {steps} steps; expected the series' "
                         f"{series.num_steps} (DynamicGraph.aligned(series.timestamps))")
    if list(graph.sensor_ids) != list(series.sensor_ids):
        raise GraphError(f"dynamic graph {graph.source}: nodes {graph.sensor_ids[:3]}...; expected the series' sensors "
                         f"in its order ({series.sensor_ids[:3]}...)")
    values = np.asarray(series.values, dtype=np.float32)
    tgt = values[..., target]
    out: dict[str, list] = {"edge_indices": [], "edge_weights": [], "features": [], "targets": []}
    for t in range(series.num_steps - 1):  # one snapshot per step: the signal's own layout
        ei, w = graph.edges_at(t)
        out["edge_indices"].append(ei.cpu().numpy())
        out["edge_weights"].append(w.cpu().numpy())
        out["features"].append(values[t])
        out["targets"].append(tgt[t + 1])
    return out


def from_temporal_signal(signal=None, *, edge_indices=None, edge_weights=None, features=None, targets=None,
                         start: str = "2020-01-01", freq: str = "1D", sensor_ids: Sequence[str] | None = None,
                         channels: Sequence[str] | None = None) -> tuple[Series, DynamicGraph]:
    """A ``DynamicGraphTemporalSignal`` (or ``StaticGraphTemporalSignal``, or the four lists) as a ``Series``
    and a ``DynamicGraph`` aligned to it (module doc).

    Args:
        signal: an object with ``edge_indices``/``edge_index``, ``edge_weights``/``edge_weight``, ``features``,
            ``targets``; or give the lists as keywords.
        start, freq: the first timestamp and the interval (the signal has no clock).
        sensor_ids: ``N`` node ids (default ``'0' .. 'N-1'``); channels: ``F`` feature names.

    Raises:
        SeriesError / GraphError: lists of different lengths, features of changing shape, nodes out of range.
    """
    if signal is not None:
        edge_indices = getattr(signal, "edge_indices", None) or [getattr(signal, "edge_index")] * len(signal.features)
        edge_weights = getattr(signal, "edge_weights", None) or [getattr(signal, "edge_weight")] * len(signal.features)
        features, targets = signal.features, signal.targets
    lengths = {len(x) for x in (edge_indices, edge_weights, features, targets)}
    if len(lengths) != 1 or not features:
        raise SeriesError(f"temporal signal: edge_indices, edge_weights, features and targets have lengths "
                          f"{[len(x) for x in (edge_indices, edge_weights, features, targets)]}; expected one "
                          f"length >= 1 (one entry per snapshot)")
    feats = np.stack([np.asarray(f, dtype=np.float32).reshape(np.shape(f)[0], -1) for f in features])  # [S, N, F]
    last = np.asarray(targets[-1], dtype=np.float32).reshape(feats.shape[1], -1)
    values = np.concatenate([feats, last[None]]) if last.shape[1] == feats.shape[2] else feats
    N = feats.shape[1]
    ids = [str(i) for i in range(N)] if sensor_ids is None else [str(s) for s in sensor_ids]
    step = parse_interval(freq)
    times = np.datetime64(start, "ns") + np.arange(values.shape[0]) * step.astype("timedelta64[ns]")
    series = Series(values, times, ids, list(channels) if channels else [f"f{i}" for i in range(values.shape[2])],
                    float("nan"), source="temporal signal")
    return series, _graph(edge_indices, edge_weights, ids, times)


def _graph(edge_indices, edge_weights, ids, times) -> DynamicGraph:
    """Snapshots as periods; a snapshot equal to the one before extends its period."""
    N = len(ids)
    keep, eis, ws = [], [], []
    for s, (ei, w) in enumerate(zip(edge_indices, edge_weights)):
        ei = np.asarray(ei, dtype=np.int64).reshape(2, -1)
        w = np.ones(ei.shape[1], np.float32) if w is None else np.asarray(w, dtype=np.float32).reshape(-1)
        if ei.size and (ei.min() < 0 or ei.max() >= N):
            raise GraphError(f"temporal signal: snapshot {s} has node {int(ei.max())}; expected 0 .. {N - 1}")
        if eis and np.array_equal(ei, eis[-1]) and np.array_equal(w, ws[-1]):
            continue
        keep.append(s), eis.append(ei), ws.append(w)
    ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in eis])]).astype(np.int64)
    g = DynamicGraph(ids, times[keep], torch.from_numpy(np.concatenate(eis, 1)),
                     torch.from_numpy(np.concatenate(ws)), torch.from_numpy(ptr), source="temporal signal",
                     weights_done="as given")
    return g.aligned(times)
