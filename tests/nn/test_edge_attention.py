"""The memory-efficient edge attention kernel: exact values, exact gradients, bounded memory."""
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch_geometric.utils import softmax as pyg_softmax

from stgraph.nn.edge_attention import build_csr, edge_attention, edge_attention_weights, plan_chunks


def reference(q, k, v, bias, edge_index, num_nodes):
    """Plain edge-wise attention: gather, segment softmax (PyG), scatter."""
    src, dst = edge_index
    logits = (q[dst] * k[src]).sum(-1) / math.sqrt(q.size(-1)) + bias[:, None, :]
    alpha = pyg_softmax(logits, dst, num_nodes=num_nodes, dim=0)
    return torch.zeros_like(q).index_add_(0, dst, alpha[..., None] * v[src]), alpha


# node 5: only its self loop; nodes 3, 4 (sources only) and 6 (isolated): no in-edge;
# 1->2 and 1->0 duplicated
MESSY = torch.tensor([[0, 1, 2, 3, 1, 1, 4, 0, 2, 3, 4, 5, 1],
                      [1, 2, 2, 2, 0, 0, 1, 0, 0, 0, 2, 5, 2]])


def tensors(N, S, H, d, E, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(N, S, H, d, generator=g, dtype=dtype).requires_grad_() for _ in range(3)]
    bias = torch.randn(E, H, generator=g, dtype=dtype).requires_grad_()
    return (*qkv, bias)


@pytest.mark.parametrize("chunk_bytes", [1, 300, 1 << 30])  # one edge a chunk .. all edges at once
def test_values_and_gradients_match_reference(chunk_bytes):
    N = 7
    csr, perm = build_csr(MESSY, N)
    q, k, v, bias = tensors(N, 3, 2, 4, MESSY.size(1), torch.float32)
    out = edge_attention(q, k, v, bias[perm], csr, chunk_bytes=chunk_bytes)
    ref, _ = reference(q, k, v, bias, MESSY, N)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.all(out[[3, 4, 6]] == 0)  # nodes without in-edges: output 0
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v, bias), g)
    want = torch.autograd.grad(ref, (q, k, v, bias), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_bytes", [1, 200, 1 << 30])
def test_gradcheck_float64(chunk_bytes):
    N = 7
    csr, perm = build_csr(MESSY, N)
    inputs = tensors(N, 2, 2, 3, MESSY.size(1), torch.float64, seed=1)
    f = lambda q, k, v, b: edge_attention(q, k, v, b[perm], csr, chunk_bytes=chunk_bytes)
    assert torch.autograd.gradcheck(f, inputs)


def test_gradcheck_self_loops_only_and_long_rows():
    # one target with 9 in-edges split over many chunks (online softmax across chunks)
    ei = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0]])
    ei = torch.cat([ei, torch.arange(10).repeat(2, 1)], dim=1)
    csr, perm = build_csr(ei, 10)
    inputs = tensors(10, 2, 1, 2, ei.size(1), torch.float64, seed=2)
    f = lambda q, k, v, b: edge_attention(q, k, v, b[perm], csr, chunk_bytes=40)
    assert torch.autograd.gradcheck(f, inputs)


def test_attention_weights_and_lse():
    N = 7
    csr, perm = build_csr(MESSY, N)
    q, k, v, bias = tensors(N, 3, 2, 4, MESSY.size(1), torch.float64)
    out, lse = edge_attention(q, k, v, bias[perm], csr, return_lse=True, chunk_bytes=100)
    _, alpha = reference(q, k, v, bias, MESSY, N)  # [E, S, H] in input order
    w = edge_attention_weights(q, k, bias[perm], csr, lse, reduce="none")
    torch.testing.assert_close(w, alpha[perm].detach())
    torch.testing.assert_close(edge_attention_weights(q, k, bias[perm], csr, lse), alpha[perm].mean(1).detach())
    assert torch.isinf(lse[[3, 4, 6]]).all() and torch.isfinite(lse[[0, 1, 2, 5]]).all()


def test_low_precision_inputs_computed_in_float32():
    N = 7
    csr, perm = build_csr(MESSY, N)
    q, k, v, bias = tensors(N, 3, 2, 8, MESSY.size(1), torch.float32)
    out16 = edge_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), bias[perm].bfloat16(), csr)
    assert out16.dtype == torch.bfloat16
    ref, _ = reference(q, k, v, bias, MESSY, N)
    torch.testing.assert_close(out16.float(), ref, atol=3e-2, rtol=3e-2)


def test_plan_chunks_respects_budget_and_marks_continuations():
    dst = [0, 0, 0, 1, 2, 2, 2, 2, 3]
    plan = plan_chunks(dst, row_bytes=10, rows_per_edge=2, chunk_bytes=60)  # 3 edges a chunk
    assert [(e0, e1) for e0, e1, *_ in plan] == [(0, 3), (3, 6), (6, 9)]
    assert [(t0, t1, c) for *_, t0, t1, c in plan] == [(0, 0, False), (1, 2, False), (2, 3, True)]
    assert all((e1 - e0) * 10 * 2 <= 60 for e0, e1, *_ in plan)


class LargestAllocation(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_nothing_of_size_edges_times_slices_times_width():
    """Forward and backward on a graph with E = 16 N: no op ever produces a tensor
    larger than the [N, S, H, d] inputs, whereas the plain formulation builds
    [E, S, H, d] several times."""
    N, S, H, d = 64, 16, 2, 8
    g = torch.Generator().manual_seed(0)
    ei = torch.stack([torch.randint(0, N, (16 * N,), generator=g), torch.arange(N).repeat(16)])
    csr, perm = build_csr(ei, N)
    q, k, v, bias = tensors(N, S, H, d, ei.size(1), torch.float32)
    budget = 64 * S * H * d * 4  # 64 edge rows: a few chunks
    with LargestAllocation() as mode:
        out = edge_attention(q, k, v, bias[perm], csr, chunk_bytes=budget)
        out.sum().backward()
    assert mode.largest <= N * S * H * d
    with LargestAllocation() as plain:
        reference(q, k, v, bias, ei, N)[0].sum().backward()
    assert plain.largest >= ei.size(1) * S * H * d


def test_bad_shapes_are_named():
    csr, perm = build_csr(MESSY, 7)
    q = torch.randn(7, 2, 2, 4)
    with pytest.raises(ValueError, match=r"bias must be \[E, H\] = \[13, 2\]"):
        edge_attention(q, q, q, torch.zeros(12, 2), csr)
    with pytest.raises(ValueError, match="q has 6 nodes but the graph has 7"):
        edge_attention(q[:6], q[:6], q[:6], torch.zeros(13, 2), csr)
    with pytest.raises(ValueError, match=r"\[N, S, H, d\]"):
        edge_attention(q[0], q[0], q[0], torch.zeros(13, 2), csr)
