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

The sparse operators (:class:`~stgraph.nn.graph_ops.SparseOperator`,
:class:`~stgraph.nn.graph_ops.GraphCache`,
:func:`~stgraph.nn.graph_ops.random_walk_operators`) live in :mod:`stgraph.nn.graph_ops`.
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn as nn

from ..nn.calendar import append_time_of_day
from ..nn.graph_ops import GraphCache, diffusion_linear, random_walk_operators
from ..nn.window_graphs import per_window, window_operators
from .registry import check_input, register


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
            raise ValueError(f"num_layers = {num_layers}, hidden = {hidden}, diffusion_steps = {diffusion_steps}: set "
                             f"model.params.num_layers and model.params.hidden to 1 or more and "
                             f"model.params.diffusion_steps to 0 or more")
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
            graph: ``edge_index`` ``[2, E]`` (source -> target), ``edge_weight`` ``[E]`` or absent; or one
                graph per window (:mod:`stgraph.nn.window_graphs`; the sequence then runs ``[N, B, T, C]``).
            covariates: ``tod_in`` ``[B, T_in]`` in ``[0, 1)`` (others unused).
            targets: optional z-scored ``[B, T_out, N, C_out]`` for scheduled sampling.
            teacher_forcing: in training mode with ``targets``, the probability that a
                decoder step reads the true previous value instead of its forecast.

        Returns:
            ``[B, T_out, N, C_out]``.
        """
        B, T, N, C = check_input(self, x)
        windows = per_window(graph)
        supports = window_operators(graph, self._supports.build) if windows else self._supports(graph, N)
        if self.time_of_day:
            x = append_time_of_day(x, covariates["tod_in"])
        tdim = 2 if windows else 1  # per-window operators need B next to N: [N, B, T, C]
        seq = x.permute(2, 0, 1, 3).contiguous() if windows else x.permute(2, 1, 0, 3).contiguous()  # node-major

        states = []
        for cell in self.encoder:  # layer by layer: the input terms of all steps in one product
            x_proj = cell.project_input(seq, supports)  # [N, T, B, 3H]
            h = x.new_zeros(N, B, self.hidden)
            outs = []
            for x_t in x_proj.unbind(tdim):  # unbind: one gradient buffer, not one per step
                h = cell(x_t, h, supports)
                outs.append(h)
            states.append(h)
            seq = torch.stack(outs, dim=tdim)  # [N, T, B, H] ([N, B, T, H] per window)

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
