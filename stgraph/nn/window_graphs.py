"""Per-window graphs in the graph models (a dynamic graph, :mod:`stgraph.graph.dynamic`).

A model's ``graph`` argument is either one static graph (PyG ``Data``: ``edge_index [2, E]``,
``edge_weight [E]``) or the graphs of the batch's ``B`` windows as one disjoint union
(:class:`stgraph.graph.dynamic.WindowGraphs`: ``edge_index [2, E_b]`` over ``B * N`` nodes, window ``b``'s
node ``n`` being ``b * N + n``, plus ``num_nodes = N`` and ``num_windows = B``). :func:`per_window` tells
them apart (duck typing: this module imports nothing of :mod:`stgraph.graph`).

* Attention (stgt): :func:`fold` puts the windows side by side as ``B * N`` nodes of one slice
  (``[B, T, N, D] -> [1, T, B * N, D]``), so the unchanged sparse attention kernel runs over the union's
  edges (every other stgt layer works per sensor and step, so it is unaffected); :func:`unfold` undoes it.
* Sparse operators (GWNet, DCRNN, STGCN): the union renumbered node-major (``n * B + b``,
  :meth:`~stgraph.graph.dynamic.WindowGraphs.node_major`) is one block-diagonal ``N B x N B`` sparse matrix,
  built by the model's own operator builder (degrees and normalisations are per node, hence per window) and
  applied to node-major features ``[N, B, ...]`` seen as ``[N B, ...]`` (:class:`WindowOperator`). No dense
  ``N x N`` per window. STGCN's ``lambda_max``, when estimated, is estimated per window
  (:func:`window_laplacian`), once per period of a dynamic graph when the model keeps a cache.

With every window's graph equal to the static graph these compute the static model's numbers (float rounding).
"""
from __future__ import annotations

from typing import Callable

import torch

from .graph_ops import SparseOperator, scaled_laplacian

__all__ = ["per_window", "fold", "unfold", "WindowOperator", "window_operators", "window_laplacian"]


def per_window(graph) -> bool:
    """Whether ``graph`` holds one graph per window (a ``WindowGraphs``) rather than one static graph."""
    return getattr(graph, "num_windows", None) is not None


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, N, D] -> [1, T, B * N, D]`` (window ``b``'s node ``n`` at ``b * N + n``)."""
    B, T, N, D = x.shape
    return x.transpose(0, 1).reshape(1, T, B * N, D)


def unfold(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``[1, T, B * N, D] -> [B, T, N, D]``, the inverse of :func:`fold`."""
    _, T, M, D = x.shape
    return x.view(T, batch, M // batch, D).transpose(0, 1)


class WindowOperator:
    """A block-diagonal operator over ``N * B`` node-major rows applied to features ``[N, B, *]``.

    Args:
        op: a :class:`~stgraph.nn.graph_ops.SparseOperator` (or any ``[N B, *] -> [N B, *]`` callable with
            ``transpose_apply``) on the union renumbered ``n * B + b``.
        num_nodes: ``N``; num_windows: ``B``.
    """

    def __init__(self, op, num_nodes: int, num_windows: int):
        self.op, self.num_nodes, self.num_windows = op, num_nodes, num_windows

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.size(0) != self.num_nodes or x.size(1) != self.num_windows:
            raise ValueError(f"per-window operator: expected features [N={self.num_nodes}, B={self.num_windows}, "
                             f"...], got {tuple(x.shape)}")
        return x.reshape(self.num_nodes * self.num_windows, *x.shape[2:])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self._flat(x)).view(x.shape)

    def transpose_apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.transpose_apply(self._flat(x)).view(x.shape)


def window_operators(graph, build: Callable) -> list[WindowOperator]:
    """The operators ``build(edge_index, edge_weight, num_nodes)`` gives (one or a list), built on the
    node-major union of ``graph``'s windows and wrapped to apply to ``[N, B, *]``."""
    ei, w, M = graph.node_major()
    with torch.no_grad():
        ops = build(ei, w.float(), M)
    ops = ops if isinstance(ops, (list, tuple)) else [ops]
    return [WindowOperator(op, graph.num_nodes, graph.num_windows) for op in ops]


class _WindowLaplacian:
    """``L~_b = 2 L_b / lambda_b - I`` per window from ``-A_norm`` (``op``) and ``scale [B] = 2 / lambda_b``."""

    def __init__(self, neg_a: SparseOperator, scale: torch.Tensor):
        self.neg_a, self.scale = neg_a, scale

    def _scaled(self, x, y):  # x, y [N B, *]: scale * (x + y) - x, scale per window (rows n * B + b)
        s = self.scale.repeat(x.size(0) // self.scale.numel()).view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return s * (x + y) - x

    def __call__(self, x):
        return self._scaled(x, self.neg_a(x))

    def transpose_apply(self, x):  # L~ is symmetric
        return self._scaled(x, self.neg_a.transpose_apply(x))


def window_laplacian(graph, lambda_max: float | None = None, iterations: int = 200,
                     cache: dict | None = None) -> WindowOperator:
    """STGCN's Chebyshev operator per window (:func:`stgraph.nn.graph_ops.scaled_laplacian`) for features
    ``[N, B, *]``; ``lambda_max=None`` estimates each window's largest eigenvalue by power iteration from the
    start vector the static path uses.

    ``cache``: a dict the caller keeps, ``{(graph key, period): lambda}``. When ``graph`` says which period of
    which graph each window holds (``graph.key``, ``graph.periods [B]`` on the CPU, as
    :meth:`stgraph.graph.dynamic.DynamicGraph.period_graphs` gives), a batch whose periods are all in it runs
    no power iteration; one that is not estimates the batch's windows and stores each period's value (the same
    numbers: each window's iteration is its own)."""
    if lambda_max is not None:
        return window_operators(graph, lambda ei, w, m: scaled_laplacian(ei, w, m, lambda_max=lambda_max))[0]
    N, B = graph.num_nodes, graph.num_windows
    ei, w, M = graph.node_major()
    periods, key = getattr(graph, "periods", None), getattr(graph, "key", None)
    keys = ([(key, p) for p in periods.tolist()] if cache is not None and key is not None and periods is not None
            and periods.device.type == "cpu" else None)
    with torch.no_grad():
        neg_a = scaled_laplacian(ei, w.float(), M, lambda_max=2.0)  # 2 L / 2 - I = -A_norm
        if keys is not None and all(k in cache for k in keys):
            lam = torch.tensor([cache[k] for k in keys], dtype=torch.float32).to(w.device, non_blocking=True)
        else:
            lam = _power_lambdas(neg_a, N, B, M, w.device, iterations)
            if keys is not None:
                cache.update(zip(keys, lam.cpu().tolist()))
    return WindowOperator(_WindowLaplacian(neg_a, 2.0 / lam), N, B)


def _power_lambdas(neg_a, N: int, B: int, M: int, device, iterations: int) -> torch.Tensor:
    """``[B]`` the largest eigenvalue of each window's ``L = I - A_norm`` (``neg_a``: ``-A_norm`` on the
    node-major union), by power iteration; 2 where a window has none above 0 (no edges)."""
    v = torch.cos(torch.arange(N, device=device, dtype=torch.float32) * 1.7 + 0.3)[:, None].expand(N, B)
    v = v / v.norm(dim=0)
    lam = torch.zeros(B, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for _ in range(iterations):
        lv = v + neg_a(v.reshape(M, 1)).view(N, B)
        lam = torch.where(done, lam, (v * lv).sum(0))
        norm = lv.norm(dim=0)
        done = done | (norm == 0)
        v = torch.where(done, v, lv / norm.clamp(min=1e-30))
    return torch.where(lam > 1e-6, lam, torch.full_like(lam, 2.0))
