"""DCRNN's diffusion convolution that keeps its input, not the diffused stack, for the backward."""
import torch

from stgraph.nn.graph_ops import diffuse, diffusion_linear, random_walk_operators


def _setup(seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 0, 2], [1, 2, 3, 4, 5, 3, 5]])
    edge_weight = torch.rand(7, generator=g) + 0.1
    supports = random_walk_operators(edge_index, edge_weight, 6)
    x = torch.randn(6, 4, 3, generator=g, dtype=torch.float64)
    w = torch.randn(5, 5 * 3, generator=g, dtype=torch.float64)  # 1 + 2 supports x 2 steps = 5 blocks
    b = torch.randn(5, generator=g, dtype=torch.float64)
    return supports, x, w, b


def test_same_values_and_gradients_as_linear_of_diffuse():
    supports, x, w, b = _setup()
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref_leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    out = diffusion_linear(leaves[0], supports, 2, leaves[1], leaves[2])
    ref = torch.nn.functional.linear(diffuse(ref_leaves[0], supports, 2), ref_leaves[1], ref_leaves[2])
    assert out.shape == (6, 4, 5)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    for a, r in zip(leaves, ref_leaves):
        torch.testing.assert_close(a.grad, r.grad, rtol=0, atol=1e-10)


def test_gradcheck_without_bias():
    supports, x, w, _ = _setup(1)
    x.requires_grad_(), w.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w: diffusion_linear(x, supports, 2, w), (x, w))


def test_keeps_only_the_input_for_backward():
    """The diffused stack (5x wider than x) is not among the tensors autograd keeps."""
    supports, x, w, b = _setup(2)
    x.requires_grad_()
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t.shape) or t, lambda t: t):
        diffusion_linear(x, supports, 2, w, b)
    assert (6, 4, 15) not in kept and tuple(x.shape) in kept
