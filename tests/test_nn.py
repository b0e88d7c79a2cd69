"""Layers of stgraph.nn: shapes, backend equivalence, graph masking, causality."""
import pytest
import torch
from torch_geometric.utils import softmax as pyg_softmax

from stgraph.nn import (CrossAttention, FeedForward, InputEmbedding, NodeEmbedding,
                        SpatialGraphAttention, TemporalTransformerBlock, TimeEmbedding,
                        add_self_loops, segment_softmax)



def random_graph(N=12, E=40, seed=0):
    """Random directed graph without self loops or duplicate edges."""
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(N * N, generator=g)
    src, dst = pairs // N, pairs % N
    keep = src != dst
    ei = torch.stack([src[keep], dst[keep]])[:, :E]
    return ei, torch.rand(ei.size(1), generator=g) * 0.9 + 0.1


def spatial_pair(dim=16, heads=4, **kw):
    torch.manual_seed(0)
    sparse = SpatialGraphAttention(dim, heads, backend="sparse", **kw)
    dense = SpatialGraphAttention(dim, heads, backend="dense", **kw)
    with torch.no_grad():  # make the edge bias non-trivial, then share all weights
        sparse.edge_scale.uniform_(-2, 2)
        sparse.loop_bias.uniform_(-1, 1)
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


# ---------------------------------------------------------------- temporal
@pytest.mark.parametrize("causal", [False, True])
def test_temporal_block_shape_and_attention(causal):
    torch.manual_seed(0)
    blk = TemporalTransformerBlock(16, heads=4, ff_mult=2, dropout=0.1, causal=causal).eval()
    x = torch.randn(2, 7, 5, 16)
    y = blk(x)
    assert y.shape == x.shape
    y2, w = blk(x, return_attention=True)
    assert w.shape == (2, 5, 4, 7, 7)
    torch.testing.assert_close(y2, y, atol=1e-5, rtol=1e-5)  # explicit path == SDPA path
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5, 4, 7))
    if causal:
        assert torch.all(w.triu(1) == 0)


def test_temporal_causal_mask_respected():
    torch.manual_seed(0)
    blk = TemporalTransformerBlock(16, heads=2, causal=True).eval()
    x = torch.randn(1, 6, 3, 16)
    x2 = x.clone()
    x2[:, 4:] += 3.0 * torch.randn(16)  # change the future only
    y, y2 = blk(x), blk(x2)
    torch.testing.assert_close(y[:, :4], y2[:, :4])
    assert not torch.allclose(y[:, 4:], y2[:, 4:])


def test_temporal_is_per_node():
    torch.manual_seed(0)
    blk = TemporalTransformerBlock(16, heads=2).eval()
    x = torch.randn(2, 5, 4, 16)
    x2 = x.clone()
    x2[:, :, 1] += 3.0 * torch.randn(16)
    y, y2 = blk(x), blk(x2)
    torch.testing.assert_close(y[:, :, [0, 2, 3]], y2[:, :, [0, 2, 3]])


def test_cross_attention_shapes():
    torch.manual_seed(0)
    ca = CrossAttention(16, heads=4).eval()
    q, mem = torch.randn(2, 3, 5, 16), torch.randn(2, 7, 5, 16)
    y = ca(q, mem)
    assert y.shape == (2, 3, 5, 16)
    y2, w = ca(q, mem, return_attention=True)
    assert w.shape == (2, 5, 4, 3, 7)
    torch.testing.assert_close(y2, y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5, 4, 3))


def test_feedforward_shape():
    assert FeedForward(8, 2)(torch.randn(3, 4, 8)).shape == (3, 4, 8)


# --------------------------------------------------------------- embedding
def test_embeddings():
    torch.manual_seed(0)
    te = TimeEmbedding(288, 8)
    tod = torch.arange(288.0)[None] / 288.0  # k / 288 must land in slot k despite float error
    assert torch.equal(te.slot(tod), torch.arange(288)[None])
    assert te.slot(torch.tensor([[1.0, -0.1]])).tolist() == [[287, 0]]
    assert te(tod[:, :5], torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, 1, 8)
    assert NodeEmbedding(7, 8)().shape == (7, 8)
    assert NodeEmbedding(7, 8, emb_dim=3)().shape == (7, 8)
    emb = InputEmbedding(2, 8, num_nodes=7, steps_per_day=288, node_emb_dim=4)
    x = torch.randn(3, 5, 7, 2)
    out = emb(x, torch.rand(3, 5), torch.randint(0, 7, (3, 5)))
    assert out.shape == (3, 5, 7, 8)
    with pytest.raises(ValueError):
        emb(torch.randn(3, 5, 6, 2), torch.rand(3, 5), torch.randint(0, 7, (3, 5)))


# ----------------------------------------------------------------- spatial
def test_add_self_loops_and_segment_softmax():
    ei = torch.tensor([[0, 1, 1, 2, 1], [1, 2, 2, 2, 0]])  # a duplicate 1->2 and a loop 2->2
    ew = torch.tensor([0.2, 0.4, 0.8, 0.5, 0.3])
    g = add_self_loops(ei, ew, 3)
    assert g.edge_index[:, -3:].tolist() == [[0, 1, 2], [0, 1, 2]]
    pairs = {tuple(p): w for p, w in zip(g.edge_index.t().tolist(), g.edge_weight.tolist())}
    assert len(pairs) == g.edge_index.size(1) == 6
    assert pairs[(1, 2)] == pytest.approx(0.6) and pairs[(2, 2)] == 1.0
    assert g.is_loop.tolist() == [0, 0, 0, 1, 1, 1]
    logits = torch.randn(6, 4, 2)
    ref = pyg_softmax(logits, g.edge_index[1], num_nodes=3, dim=0)
    torch.testing.assert_close(segment_softmax(logits, g.edge_index[1], 3), ref)


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_spatial_shapes(backend):
    ei, ew = random_graph()
    layer = SpatialGraphAttention(16, heads=4, backend=backend).eval()
    x = torch.randn(2, 3, 12, 16)
    assert layer(x, ei, ew).shape == x.shape
    assert layer(x, ei).shape == x.shape  # default weights: ones
    y, (ei_loop, alpha) = layer(x, ei, ew, return_attention=True)
    assert y.shape == x.shape and layer.last_backend == backend
    assert ei_loop.shape == (2, ei.size(1) + 12) and alpha.shape == (ei.size(1) + 12, 4)
    assert torch.equal(ei_loop[:, : ei.size(1)], ei)  # input edges first, in input order
    _, (_, alpha_all) = layer(x, ei, ew, return_attention=True, attention_reduce="none")
    assert alpha_all.shape == (2, 3, ei.size(1) + 12, 4)


@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_equals_dense(weighted):
    ei, ew = random_graph(N=15, E=60, seed=1)
    ew = ew if weighted else None
    sparse, dense = spatial_pair(dropout=0.3)
    sparse.eval(), dense.eval()
    x = torch.randn(3, 4, 15, 16)
    ys, (eis, a_s) = sparse(x, ei, ew, return_attention=True, attention_reduce="none")
    yd, (eid, a_d) = dense(x, ei, ew, return_attention=True, attention_reduce="none")
    torch.testing.assert_close(ys, yd, atol=1e-5, rtol=1e-5)
    assert torch.equal(eis, eid)
    torch.testing.assert_close(a_s, a_d, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse(x, ei, ew), dense(x, ei, ew), atol=1e-5, rtol=1e-5)  # SDPA


def test_sparse_equals_dense_gradients_and_messy_graph():
    ei, ew = random_graph(N=10, E=30, seed=2)
    ei = torch.cat([ei, ei[:, :5], torch.tensor([[3], [3]])], dim=1)  # duplicates + a self loop
    ew = torch.cat([ew, torch.rand(6)]).requires_grad_(True)  # a learned adjacency
    sparse, dense = spatial_pair()
    x = torch.randn(2, 3, 10, 16, requires_grad=True)
    outs = []
    for layer in (sparse, dense):
        y = layer(x, ei, ew)
        (y ** 2).sum().backward()
        outs.append((y.detach(), x.grad.clone(), ew.grad.clone(), layer.edge_scale.grad.clone(),
                     layer.loop_bias.grad.clone(), layer.qkv.weight.grad.clone()))
        x.grad, ew.grad = None, None
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_spatial_masking(backend):
    ei, ew = random_graph(N=12, E=30, seed=3)
    layer = SpatialGraphAttention(16, heads=2, backend=backend).eval()
    x = torch.randn(1, 2, 12, 16)
    target = int(ei[1, 0])
    in_nbrs = set(ei[0, ei[1] == target].tolist())
    outsider = next(j for j in range(12) if j not in in_nbrs and j != target)
    y = layer(x, ei, ew)
    x_out = x.clone()
    x_out[:, :, outsider] += 3.0 * torch.randn(16)  # (a constant shift would vanish in LayerNorm)
    torch.testing.assert_close(layer(x_out, ei, ew)[:, :, target], y[:, :, target])
    x_in = x.clone()
    x_in[:, :, next(iter(in_nbrs))] += 3.0 * torch.randn(16)
    assert not torch.allclose(layer(x_in, ei, ew)[:, :, target], y[:, :, target])


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_spatial_attention_sums_to_one(backend):
    ei, ew = random_graph(N=9, E=25, seed=4)
    layer = SpatialGraphAttention(16, heads=4, backend=backend).eval()
    _, (ei_loop, alpha) = layer(torch.randn(2, 3, 9, 16), ei, ew, return_attention=True,
                                attention_reduce="none")
    sums = torch.zeros(2, 3, 9, 4).index_add_(2, ei_loop[1], alpha)
    torch.testing.assert_close(sums, torch.ones(2, 3, 9, 4))


def test_edge_weight_bias_matters():
    ei, ew = random_graph(N=8, E=20, seed=5)
    layer = SpatialGraphAttention(16, heads=2, backend="sparse").eval()
    x = torch.randn(1, 1, 8, 16)
    assert not torch.allclose(layer(x, ei, ew), layer(x, ei, torch.ones_like(ew)))


def test_auto_backend_and_cache():
    layer = SpatialGraphAttention(64, heads=4, backend="auto", dense_max_nodes=50)
    assert layer.resolve_backend(60, 10_000) == "sparse"  # too many nodes
    assert layer.resolve_backend(20, 9 * 20) == "dense"  # 4*400 <= 180*64
    assert layer.resolve_backend(40, 2 * 40) == "sparse"  # very sparse: edge-wise is cheaper
    assert layer.resolve_backend(40, 2 * 40, "cuda") == "dense"
    ei, ew = random_graph(N=8, E=20)
    x = torch.randn(1, 2, 8, 64)
    y = layer(x, ei, ew)
    cached = layer._cache[4]
    layer(x, ei, ew)
    assert layer._cache[4] is cached  # same graph: prepared once
    ew.mul_(0.5)  # in-place change: prepared again
    y2 = layer(x, ei, ew)
    assert layer._cache[4] is not cached and not torch.allclose(y, y2)
    assert not any("cache" in k for k in layer.state_dict())
