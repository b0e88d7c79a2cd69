"""Layers of stgraph.nn: shapes, backend equivalence, graph masking, causality."""
import warnings

import pytest
import torch

from stgraph.nn import (CrossAttention, FeedForward, InputEmbedding, NodeEmbedding,
                        SpatialGraphAttention, TemporalTransformerBlock, TimeEmbedding,
                        GraphAttention, with_self_loops)
from stgraph.nn.kernels import AttentionGraph



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
        sparse.attn.edge_scale.uniform_(-2, 2)
        sparse.attn.loop_bias.uniform_(-1, 1)
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
def test_calendar_inputs():
    from stgraph.nn import append_time_of_day, tod_slot
    # 5-minute data: 07:30 is slot 90 of 288; k / 96 lands in slot k despite float error
    assert tod_slot(torch.tensor([7.5 / 24]), 288).tolist() == [90]
    assert torch.equal(tod_slot(torch.arange(96.0) / 96.0, 96), torch.arange(96))
    assert tod_slot(torch.tensor([[1.0, -0.1, 0.9999]]), 4).tolist() == [[3, 0, 3]]
    x = torch.arange(2 * 3 * 4 * 2, dtype=torch.float64).view(2, 3, 4, 2)
    tod = torch.tensor([[0.0, 0.25, 0.5], [0.75, 0.5, 0.25]])
    y = append_time_of_day(x, tod)
    assert y.shape == (2, 3, 4, 3) and y.dtype == torch.float64
    assert torch.equal(y[..., :2], x)
    assert y[1, 0, :, 2].tolist() == [0.75] * 4 and y[0, 2, 3, 2].item() == 0.5


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


def test_feedforward_recompute_matches_plain():
    torch.manual_seed(0)
    ff = FeedForward(8, 3)
    x = torch.randn(4, 5, 8, requires_grad=True)
    y = ff(x)  # training path: hidden layer recomputed in backward
    y.square().sum().backward()
    got = [x.grad.clone()] + [p.grad.clone() for p in ff.parameters()]
    x.grad = None
    ff.zero_grad()
    plain = x + ff.fc2(torch.nn.functional.gelu(ff.fc1(ff.norm(x))))
    plain.square().sum().backward()
    want = [x.grad] + [p.grad for p in ff.parameters()]
    torch.testing.assert_close(y, plain)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_lean_dropout():
    from stgraph.nn.lean import Dropout
    torch.manual_seed(0)
    d = Dropout(0.25)
    x = torch.ones(200, 100, requires_grad=True)
    y = d(x)
    kept = y != 0
    assert 0.7 < kept.float().mean() < 0.8
    torch.testing.assert_close(y[kept], torch.full((int(kept.sum()),), 1 / 0.75))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)  # same mask in backward
    assert torch.equal(d.eval()(x), x)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


# ----------------------------------------------------------------- spatial
def test_with_self_loops():
    ei = torch.tensor([[0, 1, 1, 2, 1], [1, 2, 2, 2, 0]])  # a duplicate 1->2 and a loop 2->2
    ew = torch.tensor([0.2, 0.4, 0.8, 0.5, 0.3])
    g = with_self_loops(ei, ew, 3)
    assert g.edge_index[:, -3:].tolist() == [[0, 1, 2], [0, 1, 2]]
    pairs = {tuple(p): w for p, w in zip(g.edge_index.t().tolist(), g.edge_weight.tolist())}
    assert len(pairs) == g.edge_index.size(1) == 6
    assert pairs[(1, 2)] == pytest.approx(0.6) and pairs[(2, 2)] == 1.0
    assert g.is_loop.tolist() == [0, 0, 0, 1, 1, 1]
    # CSR by target: the edges of target i are rowptr[i]:rowptr[i+1], in the perm order
    assert g.csr.rowptr.tolist() == [0, 2, 4, 6]  # each node: one in-edge + its loop
    assert torch.equal(g.edge_index[1, g.perm], g.csr.dst)
    assert torch.equal(g.edge_index[0, g.perm], g.csr.src)
    no_dup = with_self_loops(torch.tensor([[2, 0], [0, 1]]), None, 3)
    assert no_dup.edge_index[:, :2].tolist() == [[2, 0], [0, 1]]  # input order kept
    with pytest.raises(ValueError, match="outside"):
        with_self_loops(torch.tensor([[0], [3]]), None, 3)


def _block(backend, dim=16, heads=4, seed=0, **kw):
    torch.manual_seed(seed)
    layer = SpatialGraphAttention(dim, heads, backend=backend, **kw)
    with torch.no_grad():  # make the edge bias non-trivial
        layer.attn.edge_scale.uniform_(-2, 2)
        layer.attn.loop_bias.uniform_(-1, 1)
    return layer


@pytest.mark.parametrize("backend", ["sparse", "gather", "dense"])
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
@pytest.mark.parametrize("backend", ["sparse", "dense", "flex"])
def test_backends_equal_reference(backend, weighted):
    """Every backend computes the plain edge-wise ('gather') function: outputs and weights."""
    ei, ew = random_graph(N=15, E=60, seed=1)
    ew = ew if weighted else None
    ref = _block("gather", dropout=0.3).eval()
    other = _block(backend, dropout=0.3).eval()
    other.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4, 15, 16)
    with warnings.catch_warnings(), torch.no_grad():  # flex: CPU inference only
        warnings.simplefilter("ignore")  # flex on CPU: "running unfused" notice
        y = other(x, ei, ew)
    assert other.last_backend == backend
    torch.testing.assert_close(y, ref(x, ei, ew), atol=1e-5, rtol=1e-5)
    if backend != "flex":  # fused flex kernels do not expose the weights
        yr, (eir, ar) = ref(x, ei, ew, return_attention=True, attention_reduce="none")
        yo, (eio, ao) = other(x, ei, ew, return_attention=True, attention_reduce="none")
        assert torch.equal(eir, eio)
        torch.testing.assert_close(ao, ar, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(yo, yr, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("N", [40, 700])  # 700: 6 tiles of 128 a side, most of them empty
def test_flex_reorders_and_restores(N):
    """The flex path renumbers sensors by reverse Cuthill-McKee: on a path graph
    numbered at random the band shrinks to 1, and outputs come back in input order."""
    from stgraph.nn.flex_graph import prepare_flex
    order = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    path = torch.stack([order[:-1], order[1:]])
    ei = torch.cat([path, path.flip(0)], dim=1)
    g = with_self_loops(ei, None, N)
    assert prepare_flex(g.edge_index, g.edge_weight, N, reorder=False).bandwidth > 10
    fg = prepare_flex(g.edge_index, g.edge_weight, N)
    assert fg.bandwidth == 1 and fg.band_weight.shape == (N, 3)
    assert torch.equal(fg.rank[fg.order], torch.arange(N))
    ref, flex = _block("sparse").eval(), _block("flex").eval()
    x = torch.randn(2, 2, N, 16)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(flex(x, ei), ref(x, ei), atol=1e-5, rtol=1e-5)
        assert flex.last_backend == "flex"
    assert not flex.attn.warned_flex_cpu  # inference: no warning yet
    with pytest.warns(UserWarning, match="no FlexAttention backward on CPU"):
        y = flex(x, ei)  # with gradients: the same function on the 'sparse' path
    assert flex.last_backend == "sparse" and y.requires_grad


@pytest.mark.parametrize("backend", ["sparse", "dense"])
def test_gradients_equal_reference_on_messy_graph(backend):
    """Gradients of every parameter, the input and a learned adjacency, with
    duplicate edges, a self loop in the input and a node with no in-edges."""
    ei, ew = random_graph(N=10, E=30, seed=2)
    ei = ei[:, ei[1] != 9]  # node 9: its self loop only
    ei = torch.cat([ei, ei[:, :5], torch.tensor([[3], [3]])], dim=1)  # duplicates + a self loop
    ew = torch.cat([ew[: ei.size(1) - 6], torch.rand(6)])
    outs = []
    for b in ("gather", backend):
        layer = _block(b, seed=3)
        x = torch.randn(2, 3, 10, 16, generator=torch.Generator().manual_seed(4), requires_grad=True)
        w = ew.clone().requires_grad_(True)  # a learned adjacency
        y = layer(x, ei, w)
        (y ** 2).sum().backward()
        outs.append([y.detach(), x.grad, w.grad] + [p.grad for p in layer.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", ["sparse", "gather", "dense"])
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


@pytest.mark.parametrize("backend", ["sparse", "gather", "dense"])
def test_spatial_attention_sums_to_one(backend):
    ei, ew = random_graph(N=9, E=25, seed=4)
    layer = SpatialGraphAttention(16, heads=4, backend=backend).eval()
    _, (ei_loop, alpha) = layer(torch.randn(2, 3, 9, 16), ei, ew, return_attention=True,
                                attention_reduce="none")
    sums = torch.zeros(2, 3, 9, 4).index_add_(2, ei_loop[1], alpha)
    torch.testing.assert_close(sums, torch.ones(2, 3, 9, 4))


def test_graph_attention_alone_like_pyg():
    """The attention layer alone: no norm, residual or feed-forward; PyG-style
    ``return_attention_weights`` returns ``(out, (edge_index, alpha))``."""
    ei, ew = random_graph(N=6, E=12, seed=6)
    att = GraphAttention(8, heads=2, backend="sparse").eval()
    x = torch.randn(1, 1, 6, 8)
    out, (ei_loop, alpha) = att(x, ei, ew, return_attention_weights=True)
    # hand computation for node 0 from the layer's own projections
    q, k, v = att.qkv(x[0, 0]).chunk(3, dim=-1)
    bias = att.edge_bias(with_self_loops(ei, ew, 6))
    mine = ei_loop[1] == 0
    src = ei_loop[0, mine]
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        logits = (k[src, sl] @ q[0, sl]) / 2.0 + bias[mine, h]
        a = logits.softmax(0)
        torch.testing.assert_close(alpha[mine, h], a)
        heads.append(a @ v[src, sl])
    torch.testing.assert_close(out[0, 0, 0], att.proj(torch.cat(heads)))


def test_edge_weight_bias_matters():
    ei, ew = random_graph(N=8, E=20, seed=5)
    layer = SpatialGraphAttention(16, heads=2, backend="sparse").eval()
    x = torch.randn(1, 1, 8, 16)
    assert not torch.allclose(layer(x, ei, ew), layer(x, ei, torch.ones_like(ew)))


def test_old_checkpoint_keys_load():
    layer = _block("sparse")
    old = {k.replace("attn.", ""): v for k, v in layer.state_dict().items()}
    assert "qkv.weight" in old and "edge_scale" in old
    fresh = SpatialGraphAttention(16, 4)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.attn.edge_scale, layer.attn.edge_scale)


def test_auto_backend_and_cache():
    layer = SpatialGraphAttention(64, heads=4, backend="auto", dense_max_nodes=50)
    assert layer.resolve_backend(60, 10_000) == "sparse"  # too many nodes
    assert layer.resolve_backend(20, 9 * 20) == "dense"  # 4*400*4 <= 180*64: dense cheaper
    assert layer.resolve_backend(40, 2 * 40) == "sparse"  # very sparse: edge-wise
    assert layer.resolve_backend(40, 2 * 40, "cuda") == "dense"
    assert layer.resolve_backend(60, 2 * 60, "cuda") == "flex"  # above dense_max_nodes on CUDA
    assert layer.resolve_backend(60, 2 * 60, needs_grad=False) == "sparse"  # no flex on CPU
    ei, ew = random_graph(N=8, E=20)
    x = torch.randn(1, 2, 8, 64)
    y = layer(x, ei, ew)
    cached = layer.attn.cached_graph
    assert isinstance(cached, AttentionGraph) and cached.looped.num_nodes == 8
    layer(x, ei, ew)
    assert layer.attn.cached_graph is cached  # same graph: prepared once
    ew.mul_(0.5)  # in-place change: prepared again
    y2 = layer(x, ei, ew)
    assert layer.attn.cached_graph is not cached and not torch.allclose(y, y2)
    learned = ew.clone().requires_grad_(True)
    layer(x, ei, learned)
    assert layer.attn.cached_graph.edge_weight is ew  # a learned adjacency is never cached
    assert not any("cache" in k for k in layer.state_dict())
    with pytest.raises(ValueError, match="backend must be one of"):
        SpatialGraphAttention(16, 4, backend="fast")


def test_graph_cache_holds_what_each_backend_built():
    """The typed cache: the dense matrices and the flex layout are built on first use, then read again."""
    ei, ew = random_graph(N=8, E=20)
    x = torch.randn(1, 2, 8, 16)
    dense, flex = GraphAttention(16, 4, backend="dense").eval(), GraphAttention(16, 4, backend="flex").eval()
    with torch.no_grad():
        dense(x, ei, ew)
        g = dense.cached_graph
        assert g.flex is None and g.dense.weight.shape == (8, 8) and g.dense is g.for_dense()
        assert torch.isinf(g.dense.adj_neg).sum() == 64 - g.looped.edge_index.size(1)
        dense(x, ei, ew)
        assert dense.cached_graph.dense is g.dense  # read, not rebuilt
        flex(x, ei, ew)
        assert flex.cached_graph.dense is None and flex.cached_graph.flex.num_nodes == 8
        assert flex.last_backend == "flex"
