"""DCRNN: diffusion convolutional recurrent neural network.

Li, Yu, Shahabi, Liu, "Diffusion Convolutional Recurrent Neural Network:
Data-Driven Traffic Forecasting", ICLR 2018. The defaults are the paper's and
those of the authors' code (github.com/liyaguang/DCRNN, ``dcrnn_la.yaml``):
an encoder and a decoder of 2 DCGRU layers with 64 units each, ``K = 2``
diffusion steps on the dual random walk (the forward and the backward
transition matrix of the weighted adjacency), speed plus time of day as the
encoder's 2 input features, and a decoder that starts from a zero "GO" frame
and is then fed its own previous forecast.

A DCGRU cell is a GRU whose two matrix products are diffusion convolutions
(paper eq. 2-3): for every feature the filter mixes the signal diffused
``k = 0..K`` steps along each transition matrix, ``1 + 2K = 5`` matrices in
all.

Transition matrices. With ``W[u, v]`` the weight of edge ``u -> v`` and
``d_out``/``d_in`` its row/column sums, ``P_f = D_out^-1 W`` and
``P_b = D_in^-1 W^T`` are the transition matrices of a random walk along and
against the edges. As in the authors' code (which diffuses with
``calculate_random_walk_matrix(adj).T``), a diffusion step moves the signal
the way the walk moves probability mass: ``x <- P_f^T x``, i.e. sensor ``v``
receives ``sum_u W[u, v] / d_out(u) * x_u`` from its upstream sensors (and
``P_b^T`` from its downstream ones). The paper's eq. 2 writes ``P_f x``; the
two differ by the transpose. The ``k``-step term is the power ``P^k x``
(paper). The authors' code uses the recursion ``x_k = 2 P x_{k-1} - x_{k-2}``
instead, which spans the same polynomials (the learned filter absorbs the
change of basis), but it does not reset ``x_0`` between the two supports, so
its backward terms start from the forward-diffused signal (liyaguang/DCRNN
issues #45, #90); this file follows the paper. The METR-LA adjacency of the release has ones on its diagonal;
``self_loops=True`` (default) gives every sensor such a self loop of weight 1
(replacing any it had), as graphs read by :mod:`stgraph.graph` carry none.

Operators are sparse ``N x N`` CSR matrices built once per graph and cached;
a forward never touches a dense ``N x N`` array. The model runs node-major
(``[N, ..., C]``) so that a diffusion step is one sparse matrix product on a
``[N, F]`` view without copies.

Parameters at METR-LA size (``N = 207``, speed + time of day in, speed out,
12 -> 12 steps): 372,353 here, the exact count of the authors' architecture
(their TensorFlow output projection has no bias: 372,352). Figures quoted for
DCRNN on METR-LA: about 372k; 371,905 in BasicTS-style tables (not verified
here).

Scheduled sampling: the authors train with curriculum learning (each decoder
step reads the ground truth with probability ``k / (k + exp(step / k))``,
``k = 2000``, see :meth:`DCRNN.teacher_forcing_probability`). The trainer
does not pass targets, so by default the decoder always reads its own
forecasts; ``forward(..., targets=y_z, teacher_forcing=p)`` switches it on
for callers that have z-scored targets.

This file also holds the sparse helpers that :mod:`.gwnet` and :mod:`.stgcn`
use (:class:`SparseOperator`, :class:`GraphCache`,
:func:`random_walk_operators`).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from ..nn.spatial import with_self_loops
from .registry import check_input, register


# =============================================================================
# Sparse graph operators (shared with gwnet.py and stgcn.py)
# =============================================================================
class _SparseMatmul(torch.autograd.Function):
    """``A @ X`` for a constant CSR ``A``; the backward uses a stored ``A^T``
    (PyTorch's own CSR backward transposes ``A`` on every call). Autocast is
    off inside: it would cast ``A`` to a dtype the sparse kernels lack."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, a_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        with torch.autocast(x.device.type, enabled=False):
            return a @ x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        with torch.autocast(grad.device.type, enabled=False):
            return None, None, ctx.a_t @ grad.to(ctx.a_t.dtype).contiguous()


def _csr(row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """CSR ``[N, N]`` matrix with entries ``(row, col) -> value``; duplicates are summed."""
    key = row * num_nodes + col
    uniq, inverse = torch.unique(key, return_inverse=True)  # sorted by row, then column
    val = value.new_zeros(uniq.numel()).index_add_(0, inverse, value)
    counts = torch.bincount(uniq // num_nodes, minlength=num_nodes)
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, uniq % num_nodes, val, (num_nodes, num_nodes))


class SparseOperator:
    r"""A fixed sparse ``N x N`` matrix ``A`` applied to node-major features.

    Args:
        row, col: ``[E]`` long, the positions of the non-zeros (duplicates are summed).
        value: ``[E]`` float, their values.
        num_nodes: ``N``.

    ``op(x)`` with ``x`` ``[N, *]`` returns ``A @ x`` of the same shape
    (``y[i] = sum_j A[i, j] x[j]``), differentiable in ``x``. The matrix is
    stored in CSR together with its transpose for the backward; float64 inputs
    get a float64 copy of both, any other dtype (e.g. bf16 under autocast) is
    multiplied in float32 and cast back.
    """

    def __init__(self, row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, num_nodes: int):
        value = value.float()
        self.num_nodes = num_nodes
        self._mats = {torch.float32: (_csr(row, col, value, num_nodes), _csr(col, row, value, num_nodes))}

    def _pair(self, dtype: torch.dtype):
        if dtype not in self._mats:
            a, a_t = self._mats[torch.float32]
            self._mats[dtype] = (a.to(dtype), a_t.to(dtype))
        return self._mats[dtype]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(0) != self.num_nodes:
            raise ValueError(f"expected {self.num_nodes} nodes along dim 0, got shape {tuple(x.shape)}")
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        a, a_t = self._pair(dtype)
        flat = x.reshape(self.num_nodes, -1).to(dtype)
        return _SparseMatmul.apply(a, a_t, flat.contiguous()).to(x.dtype).view(x.shape)

    def transpose_apply(self, x: torch.Tensor) -> torch.Tensor:
        """``A^T @ x`` for ``x`` ``[N, *]`` (not differentiable; for hand-written backwards)."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        a_t = self._pair(dtype)[1]
        with torch.autocast(x.device.type, enabled=False):
            out = a_t @ x.reshape(self.num_nodes, -1).to(dtype).contiguous()
        return out.to(x.dtype).view(x.shape)

    def to_dense(self) -> torch.Tensor:
        """The matrix as a dense ``[N, N]`` tensor (for tests and inspection)."""
        return self._mats[torch.float32][0].to_dense()


def graph_tensors(graph, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edge_index [2, E], edge_weight [E])`` of a PyG ``Data``; a missing
    weight becomes ones. Checks ``graph.num_nodes`` against ``num_nodes``."""
    n = getattr(graph, "num_nodes", None)
    if n is not None and int(n) != num_nodes:
        raise ValueError(f"graph has {n} nodes, the model {num_nodes}")
    edge_index = graph.edge_index
    edge_weight = getattr(graph, "edge_weight", None)
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    return edge_index, edge_weight


class GraphCache:
    """Operators of the last graph seen, rebuilt only when the graph changes.

    ``cache(graph, num_nodes)`` returns ``build(edge_index, edge_weight,
    num_nodes)``, computed once per graph. The key is the identity (data
    pointer, shape, device, in-place version counter) of ``edge_index`` and
    ``edge_weight`` plus ``num_nodes``; the cache keeps references to both
    tensors, so their memory cannot be reused by another graph while cached.
    """

    def __init__(self, build: Callable):
        self.build = build
        self._key = None
        self._refs = None
        self._value = None

    @staticmethod
    def _ident(t: Optional[torch.Tensor]):
        if t is None:
            return None
        try:
            version = t._version
        except RuntimeError:  # inference tensors keep no version counter
            version = -1
        return (t.data_ptr(), tuple(t.shape), t.dtype, str(t.device), version)

    def __call__(self, graph, num_nodes: int):
        edge_index = graph.edge_index
        edge_weight = getattr(graph, "edge_weight", None)
        key = (self._ident(edge_index), self._ident(edge_weight), int(num_nodes))
        if key != self._key:
            with torch.no_grad():
                ei, ew = graph_tensors(graph, num_nodes)
                self._value = self.build(ei, ew.float(), int(num_nodes))
            self._key, self._refs = key, (edge_index, edge_weight)
        return self._value

    def clear(self) -> None:
        self._key = self._refs = self._value = None

    def __getstate__(self):  # copies and pickles start empty
        return {"build": self.build, "_key": None, "_refs": None, "_value": None}


def random_walk_operators(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int,
                          self_loops: bool = True) -> list[SparseOperator]:
    r"""The forward and backward diffusion operators ``[P_f^T, P_b^T]``.

    With ``W[u, v]`` the weight of edge ``u -> v`` (``edge_index[0] = u``):

    - forward: ``y_v = sum_u W[u, v] / d_out(u) * x_u`` (``P_f^T x``,
      ``P_f = D_out^-1 W``), mass flows along the edges;
    - backward: ``y_u = sum_v W[u, v] / d_in(v) * x_v`` (``P_b^T x``,
      ``P_b = D_in^-1 W^T``), mass flows against them.

    Both are the ``support`` matrices of the DCRNN and Graph WaveNet code for
    ``dual_random_walk`` / ``doubletransition``. Nodes without out- (in-)
    edges send nothing forward (backward). Duplicate edges are merged (mean
    weight); ``self_loops`` replaces self loops by weight-1 loops, else drops them.
    """
    g = with_self_loops(edge_index, edge_weight, num_nodes)  # drops loops, merges duplicates, adds loops
    ei, w = (g.edge_index, g.edge_weight) if self_loops else (g.edge_index[:, :-num_nodes],
                                                              g.edge_weight[:-num_nodes])
    src, dst = ei
    d_out = w.new_zeros(num_nodes).index_add_(0, src, w)
    d_in = w.new_zeros(num_nodes).index_add_(0, dst, w)
    inv = lambda d: torch.where(d > 0, 1.0 / d.clamp(min=1e-12), torch.zeros_like(d))
    forward = SparseOperator(dst, src, w * inv(d_out)[src], num_nodes)
    backward = SparseOperator(src, dst, w * inv(d_in)[dst], num_nodes)
    return [forward, backward]


def diffuse(x: torch.Tensor, supports: Sequence[SparseOperator], steps: int) -> torch.Tensor:
    r"""Stack ``x`` and its diffusion ``S^k x`` (``k = 1..steps``) along each support.

    Args:
        x: node-major ``[N, *, C]``.
        supports: ``S`` operators.
        steps: ``K``.

    Returns:
        ``[N, *, (1 + S * K) * C]``: ``x``, then ``K`` powers per support.
    """
    out = [x]
    for op in supports:
        h = x
        for _ in range(steps):
            h = op(h)
            out.append(h)
    return torch.cat(out, dim=-1)


class _DiffusionLinear(torch.autograd.Function):
    """``F.linear(diffuse(x), weight, bias)`` that keeps ``x`` for the backward, not the stack.

    The diffused stack is ``1 + S K`` times wider than ``x`` (5x in DCRNN); autograd would keep
    one per diffusion convolution of every step, which was most of DCRNN's training memory.
    The backward rebuilds it from ``x`` (sparse products, cheap next to the dense ones) and
    sends the gradient back through the transposed operators.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, supports, steps):
        stack = diffuse(x, supports, steps)
        ctx.save_for_backward(x, weight)
        ctx.supports, ctx.steps, ctx.has_bias = supports, steps, bias is not None
        return nn.functional.linear(stack, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        with torch.autocast(grad.device.type, enabled=False):
            g = grad.to(weight.dtype)
            stack = diffuse(x.to(weight.dtype), ctx.supports, ctx.steps)
            g2 = g.reshape(-1, g.size(-1))
            grad_w = g2.t() @ stack.reshape(-1, stack.size(-1)) if ctx.needs_input_grad[1] else None
            grad_b = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
            grad_x = None
            if ctx.needs_input_grad[0]:
                blocks = (g @ weight).split(x.size(-1), dim=-1)
                grad_x = blocks[0]
                for s, op in enumerate(ctx.supports):  # adjoint of S^k, in Horner form
                    acc = None
                    for b in reversed(blocks[1 + s * ctx.steps: 1 + (s + 1) * ctx.steps]):
                        acc = op.transpose_apply(b if acc is None else b + acc)
                    if acc is not None:
                        grad_x = grad_x + acc
                grad_x = grad_x.to(x.dtype)
        return grad_x, grad_w, grad_b, None, None


def diffusion_linear(x: torch.Tensor, supports: Sequence[SparseOperator], steps: int,
                     weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""``F.linear(diffuse(x, supports, steps), weight, bias)``, keeping only ``x`` for the backward.

    Args:
        x: node-major ``[N, *, C]``.
        supports: ``S`` operators; steps: ``K``.
        weight: ``[C_out, (1 + S * K) * C]``; bias: ``[C_out]`` or ``None``.

    Returns:
        ``[N, *, C_out]``; the same numbers as the plain composition (the forward is that
        composition), its gradients equal to float rounding.
    """
    if not torch.is_grad_enabled():
        return nn.functional.linear(diffuse(x, supports, steps), weight, bias)
    return _DiffusionLinear.apply(x, weight, bias, supports, steps)


# =============================================================================
# Model
# =============================================================================
class DCGRUCell(nn.Module):
    r"""GRU cell with diffusion convolutions in place of matrix products.

    ``r, u = sigmoid(G_x(x) + G_h(h))``, ``c = tanh(C_x(x) + C_h(r * h))``,
    ``h' = u * h + (1 - u) * c``, where each ``G``/``C`` is a diffusion
    convolution: a linear map of :func:`diffuse`'s output. The input terms
    (with the biases) are split off in :meth:`project_input` so that a caller
    can compute them for all time steps at once.

    Args:
        in_channels: input features ``C``.
        hidden: units ``H``.
        num_supports: number of diffusion operators ``S``.
        steps: diffusion steps ``K``.

    Shapes:
        - :meth:`project_input`: ``x`` ``[N, *, C]`` -> ``[N, *, 3H]``
        - :meth:`forward`: ``x_proj`` ``[N, B, 3H]``, ``h`` ``[N, B, H]`` -> ``[N, B, H]``
    """

    def __init__(self, in_channels: int, hidden: int, num_supports: int, steps: int):
        super().__init__()
        m = 1 + num_supports * steps
        self.hidden, self.steps = hidden, steps
        self.input = nn.Linear(m * in_channels, 3 * hidden)  # gates (2H) | candidate (H), with biases
        self.hidden_gates = nn.Linear(m * hidden, 2 * hidden, bias=False)
        self.hidden_candidate = nn.Linear(m * hidden, hidden, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal weights; gate biases 1 (start near "keep the state"),
        candidate bias 0, as in the authors' code."""
        for lin in (self.input, self.hidden_gates, self.hidden_candidate):
            nn.init.xavier_normal_(lin.weight)
        with torch.no_grad():
            self.input.bias[: 2 * self.hidden].fill_(1.0)
            self.input.bias[2 * self.hidden:].zero_()

    def project_input(self, x: torch.Tensor, supports) -> torch.Tensor:
        return diffusion_linear(x, supports, self.steps, self.input.weight, self.input.bias)

    def forward(self, x_proj: torch.Tensor, h: torch.Tensor, supports) -> torch.Tensor:
        x_gates, x_cand = x_proj.split([2 * self.hidden, self.hidden], dim=-1)
        gates = torch.sigmoid(x_gates + diffusion_linear(h, supports, self.steps, self.hidden_gates.weight))
        r, u = gates.chunk(2, dim=-1)
        c = torch.tanh(x_cand + diffusion_linear(r * h, supports, self.steps, self.hidden_candidate.weight))
        return u * h + (1.0 - u) * c


@register("dcrnn")
class DCRNN(nn.Module):
    r"""DCRNN sequence-to-sequence forecaster.

    Args:
        num_nodes: sensors ``N``.
        in_channels: input channels ``C_in`` of ``x``.
        out_channels: forecast channels ``C_out``.
        input_len: observed steps ``T_in``.
        horizon: forecast steps ``T_out``.
        hidden: DCGRU units per layer (64).
        num_layers: DCGRU layers in the encoder and in the decoder (2).
        diffusion_steps: ``K`` (2).
        time_of_day: append ``covariates['tod_in']`` to the encoder input (True).
        self_loops: give every sensor a weight-1 self loop before normalising (True).

    Shapes:
        - input: ``x`` ``[B, T_in, N, C_in]``; ``graph`` with ``edge_index``
          ``[2, E]`` and optionally ``edge_weight`` ``[E]``; ``covariates`` with
          ``tod_in`` ``[B, T_in]``
        - output: ``[B, T_out, N, C_out]`` (z-score units)
    """

    def __init__(self, num_nodes: int, in_channels: int, out_channels: int, input_len: int,
                 horizon: int, hidden: int = 64, num_layers: int = 2, diffusion_steps: int = 2,
                 time_of_day: bool = True, self_loops: bool = True):
        super().__init__()
        if num_layers < 1 or diffusion_steps < 0 or hidden < 1:
            raise ValueError("num_layers and hidden must be >= 1 and diffusion_steps >= 0")
        self.num_nodes, self.in_channels, self.out_channels = num_nodes, in_channels, out_channels
        self.input_len, self.horizon, self.hidden = input_len, horizon, hidden
        self.time_of_day, self.self_loops = time_of_day, self_loops
        c_enc = in_channels + (1 if time_of_day else 0)
        cell = lambda c: DCGRUCell(c, hidden, 2, diffusion_steps)
        self.encoder = nn.ModuleList([cell(c_enc if i == 0 else hidden) for i in range(num_layers)])
        self.decoder = nn.ModuleList([cell(out_channels if i == 0 else hidden) for i in range(num_layers)])
        self.proj = nn.Linear(hidden, out_channels)
        self._supports = GraphCache(functools.partial(random_walk_operators, self_loops=self_loops))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for c in (*self.encoder, *self.decoder):
            c.reset_parameters()
        self.proj.reset_parameters()

    @staticmethod
    def teacher_forcing_probability(step: int, decay_steps: int = 2000) -> float:
        """The authors' curriculum at global training step ``step``:
        ``k / (k + exp(step / k))`` with ``k = decay_steps`` (1 at the start, ~0 after ~20k steps)."""
        k = float(decay_steps)
        return k / (k + math.exp(min(step / k, 700.0)))

    def forward(self, x: torch.Tensor, graph, covariates: dict, targets: Optional[torch.Tensor] = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        r"""Encode ``T_in`` steps, then decode ``T_out`` steps one at a time.

        Args:
            x: ``[B, T_in, N, C_in]`` z-scored inputs.
            graph: ``edge_index`` ``[2, E]`` (source -> target), ``edge_weight`` ``[E]`` or absent.
            covariates: ``tod_in`` ``[B, T_in]`` in ``[0, 1)`` (others unused).
            targets: optional z-scored ``[B, T_out, N, C_out]`` for scheduled sampling.
            teacher_forcing: in training mode with ``targets``, the probability that a
                decoder step reads the true previous value instead of its forecast.

        Returns:
            ``[B, T_out, N, C_out]``.
        """
        B, T, N, C = check_input(self, x)
        supports = self._supports(graph, N)
        if self.time_of_day:
            tod = covariates["tod_in"].to(x.dtype)[:, :, None, None].expand(B, T, N, 1)
            x = torch.cat([x, tod], dim=-1)
        seq = x.permute(2, 1, 0, 3).contiguous()  # [N, T, B, C]: node-major

        states = []
        for cell in self.encoder:  # layer by layer: the input terms of all steps in one product
            x_proj = cell.project_input(seq, supports)  # [N, T, B, 3H]
            h = x.new_zeros(N, B, self.hidden)
            outs = []
            for x_t in x_proj.unbind(1):  # unbind: one gradient buffer, not one per step
                h = cell(x_t, h, supports)
                outs.append(h)
            states.append(h)
            seq = torch.stack(outs, dim=1)  # [N, T, B, H]

        use_truth = self.training and targets is not None and teacher_forcing > 0
        inp = x.new_zeros(N, B, self.out_channels)  # GO frame
        preds = []
        for t in range(self.horizon):
            for i, cell in enumerate(self.decoder):
                states[i] = cell(cell.project_input(inp, supports), states[i], supports)
                inp = states[i]
            out = self.proj(inp)  # [N, B, C_out]
            preds.append(out)
            if use_truth and torch.rand(()).item() < teacher_forcing:
                inp = targets[:, t].permute(1, 0, 2).to(out.dtype)
            else:
                inp = out
        return torch.stack(preds, dim=0).permute(2, 0, 1, 3)  # [B, T_out, N, C_out]
