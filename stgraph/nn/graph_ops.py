"""Sparse graph operators shared by the graph models (DCRNN, Graph WaveNet, STGCN).

A graph ``edge_index [2, E]`` (source -> target) with ``edge_weight [E]`` becomes a
fixed sparse ``N x N`` matrix (:class:`SparseOperator`, CSR, built once per graph and
cached by :class:`GraphCache`) applied to node-major features ``[N, *]``; a forward
never touches a dense ``N x N`` array. Operators:

- :func:`random_walk_operators`: the forward and backward random-walk transition
  matrices (DCRNN's and Graph WaveNet's dual random walk), with :func:`diffuse`
  stacking their powers;
- :func:`scaled_laplacian`: STGCN's Chebyshev operator ``L~ = 2 L / lambda_max - I``.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import torch
from torch.autograd.function import once_differentiable

from .kernels.graph import with_self_loops


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


def scaled_laplacian(edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int,
                     lambda_max: Optional[float] = None, iterations: int = 200) -> SparseOperator:
    r"""``L~ = 2 L / lambda_max - I`` of the symmetrised graph as a sparse operator.

    Args:
        edge_index: ``[2, E]`` long; edge_weight: ``[E]``; num_nodes: ``N``.
        lambda_max: largest eigenvalue of ``L``; ``None`` estimates it by
            ``iterations`` steps of power iteration (``L`` is symmetric PSD, so
            this converges to it; the Rayleigh quotient never overshoots).

    Returns:
        :class:`SparseOperator` of ``L~``.
    """
    keep = edge_index[0] != edge_index[1]
    src, dst, w = edge_index[0, keep], edge_index[1, keep], edge_weight[keep].float()
    row, col = torch.cat([src, dst]), torch.cat([dst, src])
    key = row * num_nodes + col
    uniq, inverse = torch.unique(key, return_inverse=True)
    w_sym = w.new_zeros(uniq.numel()).scatter_reduce(0, inverse, torch.cat([w, w]), "amax",
                                                    include_self=False)
    row, col = uniq // num_nodes, uniq % num_nodes
    deg = w.new_zeros(num_nodes).index_add_(0, row, w_sym)
    d_isqrt = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg))
    a_norm = w_sym * d_isqrt[row] * d_isqrt[col]  # D^-1/2 W D^-1/2
    if lambda_max is None:
        a_op = SparseOperator(row, col, a_norm, num_nodes)
        lap = lambda v: v - a_op(v)
        v = torch.cos(torch.arange(num_nodes, device=w.device, dtype=torch.float32) * 1.7 + 0.3)[:, None]
        v = v / v.norm()
        lam = 0.0
        for _ in range(iterations):
            lv = lap(v)
            lam = float((v * lv).sum())
            norm = lv.norm()
            if norm == 0:
                break
            v = lv / norm
        lambda_max = lam if lam > 1e-6 else 2.0
    scale = 2.0 / float(lambda_max)
    loops = torch.arange(num_nodes, device=w.device)
    # L~ = scale * (I - A_norm) - I = (scale - 1) I - scale * A_norm
    return SparseOperator(torch.cat([row, loops]), torch.cat([col, loops]),
                          torch.cat([-scale * a_norm, w.new_full((num_nodes,), scale - 1.0)]), num_nodes)


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
        return torch.nn.functional.linear(stack, weight, bias)

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
        return torch.nn.functional.linear(diffuse(x, supports, steps), weight, bias)
    return _DiffusionLinear.apply(x, weight, bias, supports, steps)
