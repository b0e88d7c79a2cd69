"""The STGT model: forward contract, attention maps, persistence start, training, backends."""
import math

import pytest
import torch
from torch.distributions import Normal
from torch_geometric.data import Data

from stgraph.models import STGT


N, C_IN, T_IN, T_OUT = 8, 3, 6, 4


def ring_graph(n=N):
    """Each node receives from its two ring neighbours; weights in (0, 1]."""
    i = torch.arange(n)
    src = torch.cat([(i - 1) % n, (i + 1) % n])
    dst = torch.cat([i, i])
    w = torch.linspace(0.3, 1.0, 2 * n)
    return Data(edge_index=torch.stack([src, dst]), edge_weight=w, num_nodes=n)


def batch(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T_IN, N, C_IN, generator=g)
    start = torch.randint(0, 288 - T_IN - T_OUT, (B, 1), generator=g)
    steps = start + torch.arange(T_IN + T_OUT)
    dow = torch.randint(0, 7, (B, 1), generator=g).expand(B, T_IN + T_OUT)
    cov = {"tod_in": steps[:, :T_IN] / 288.0, "dow_in": dow[:, :T_IN],
           "tod_out": steps[:, T_IN:] / 288.0, "dow_out": dow[:, T_IN:]}
    return x, cov


def model(**kw):
    torch.manual_seed(kw.pop("seed", 0))
    args = dict(hidden=16, heads=2, encoder_layers=2, decoder_layers=1, ff_mult=2, dropout=0.0,
                target_channels=(0, 2))
    args.update(kw)
    return STGT(N, C_IN, len(args["target_channels"]), T_IN, T_OUT, **args)


def perturb_head(m):
    """Give the zero-initialised output layer weights so outputs depend on the input."""
    with torch.no_grad():
        m.head_out.weight.normal_(std=0.3)
        m.head_out.bias.normal_(std=0.1)
        m.persistence_gate.uniform_(0.5, 1.0)


def test_point_output_shape():
    x, cov = batch()
    y = model()(x, ring_graph(), cov)
    assert isinstance(y, torch.Tensor) and y.shape == (2, T_OUT, N, 2)


def test_probabilistic_output():
    x, cov = batch()
    m = model(probabilistic=True)
    perturb_head(m)
    dist = m(x, ring_graph(), cov)
    assert isinstance(dist, Normal)
    assert dist.loc.shape == dist.scale.shape == (2, T_OUT, N, 2)
    assert torch.all(dist.scale > 0)
    assert torch.isfinite(dist.log_prob(torch.zeros_like(dist.loc))).all()


@pytest.mark.parametrize("probabilistic", [False, True])
def test_initial_forecast_is_persistence(probabilistic):
    x, cov = batch()
    out = model(probabilistic=probabilistic)(x, ring_graph(), cov)
    mean = out.loc if probabilistic else out
    last = x[:, -1:, :, [0, 2]].expand(-1, T_OUT, -1, -1)
    torch.testing.assert_close(mean, last)
    if probabilistic:
        torch.testing.assert_close(out.scale, torch.full_like(out.scale, 1.0 + 1e-3))


def test_without_persistence():
    x, cov = batch()
    m = STGT(N, C_IN, 1, T_IN, T_OUT, target_channels=None, hidden=16, heads=2)
    assert torch.all(m(x, ring_graph(), cov) == 0)  # zero head, no persistence


def test_return_attention_shapes():
    x, cov = batch()
    graph = ring_graph()
    m = model()
    perturb_head(m)
    m.eval()
    y, attn = m(x, graph, cov, return_attention=True)
    torch.testing.assert_close(y, m(x, graph, cov))
    E = graph.edge_index.size(1)
    assert attn["temporal"].shape == (2, N, 2, T_IN, T_IN)
    assert attn["spatial"].shape == (E + N, 2)
    assert torch.equal(attn["spatial_edge_index"][:, :E], graph.edge_index)
    assert attn["cross"].shape == (2, N, 2, T_OUT, T_IN)
    sums = torch.zeros(N, 2).index_add_(0, attn["spatial_edge_index"][1], attn["spatial"])
    torch.testing.assert_close(sums, torch.ones(N, 2))
    torch.testing.assert_close(attn["cross"].sum(-1), torch.ones(2, N, 2, T_OUT))


def test_bad_inputs():
    x, cov = batch()
    with pytest.raises(ValueError):
        model()(x[:, 1:], ring_graph(), cov)
    with pytest.raises(ValueError):
        STGT(N, C_IN, 2, T_IN, T_OUT, target_channels=(0,))
    with pytest.raises(ValueError):
        STGT(N, C_IN, 1, T_IN, T_OUT, target_channels=(5,))


def test_backends_agree():
    x, cov = batch()
    graph = ring_graph()
    sparse, dense = model(spatial_backend="sparse"), model(spatial_backend="dense")
    perturb_head(sparse)
    dense.load_state_dict(sparse.state_dict())
    assert sparse.spatial_backend(graph) == "sparse" and dense.spatial_backend(graph) == "dense"
    sparse.eval(), dense.eval()
    torch.testing.assert_close(sparse(x, graph, cov), dense(x, graph, cov), atol=1e-5, rtol=1e-5)
    sparse.train(), dense.train()  # dropout=0: training forward (dense: explicit path) agrees too
    grads = []
    for m in (sparse, dense):
        m(x, graph, cov).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_deterministic_with_seed():
    x, cov = batch()
    outs = []
    for _ in range(2):
        m = model(dropout=0.2, seed=123)
        perturb_head(m)
        torch.manual_seed(7)
        outs.append(m(x, ring_graph(), cov))  # training mode: dropout active
    assert torch.equal(outs[0], outs[1])


def test_num_parameters():
    """stgt is counted by the one parameter counter (registry.count_parameters): trainable parameters only."""
    from stgraph.models.registry import count_parameters
    m = model()
    assert count_parameters(m) == sum(p.numel() for p in m.parameters())
    m.persistence_gate.requires_grad_(False)
    assert count_parameters(m) == sum(p.numel() for p in m.parameters()) - T_OUT * 2


def sinusoid_task(B=16):
    """Each node is a sinusoid of the time of day with its own phase; the target is its future:
    ``x [B, T_IN, N, C_IN]``, ``y [B, T_OUT, N, 1]``, covariates."""
    torch.manual_seed(0)
    start = torch.randint(0, 288, (B, 1))
    steps = (start + torch.arange(T_IN + T_OUT)) % 288
    phase = torch.arange(N) * (2 * math.pi / N)
    series = torch.sin(2 * math.pi * steps[..., None] / 48 + phase)  # [B, T_IN+T_OUT, N]
    x = series[:, :T_IN, :, None].expand(-1, -1, -1, C_IN).contiguous()
    y = series[:, T_IN:, :, None]
    dow = torch.zeros(B, T_IN + T_OUT, dtype=torch.long)
    cov = {"tod_in": steps[:, :T_IN] / 288.0, "dow_in": dow[:, :T_IN],
           "tod_out": steps[:, T_IN:] / 288.0, "dow_out": dow[:, T_IN:]}
    return x, y, cov


@pytest.mark.parametrize("shape", ["classic", "efficient"])
def test_training_lowers_loss(shape):
    """Both shapes learn the sinusoid task; the efficient one's window skip is trained."""
    x, y, cov = sinusoid_task()
    graph = ring_graph()
    extra = {} if shape == "classic" else dict(patch_len=3, **EFFICIENT)
    m = STGT(N, C_IN, 1, T_IN, T_OUT, hidden=16, heads=2, ff_mult=2, dropout=0.0, **extra)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    w0 = None if m.window is None else m.window.weight.detach().clone()
    losses = []
    for _ in range(30):
        loss = (m(x, graph, cov) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    if w0 is not None:
        assert (m.window.weight.detach() - w0).abs().max() > 1e-3  # the skip was trained


# ------------------------------------------------------------------ the efficient shape (stgt.yaml)
EFFICIENT = dict(decoder_layers=0, spatial_ff=False, window_skip=True)


@pytest.mark.parametrize("patch_len", [2, 3, 4])
def test_patched_shapes_and_persistence_start(patch_len):
    """Patches that divide T_IN / T_OUT (2), that do not (4: 6 = 4 + 2 padded), and a horizon of 4 with
    patches of 3 (two horizon patches, the second padded): every output step is there, and the untrained
    model is persistence exactly, as the classic shape is."""
    x, cov = batch()
    m = model(patch_len=patch_len, probabilistic=True, **EFFICIENT)
    out = m(x, ring_graph(), cov)
    assert out.loc.shape == (2, T_OUT, N, 2)
    torch.testing.assert_close(out.loc, x[:, -1:, :, [0, 2]].expand(-1, T_OUT, -1, -1))
    torch.testing.assert_close(out.scale, torch.full_like(out.scale, 1.0 + 1e-3))
    perturb_head(m)
    m.eval()
    y, attn = m(x, ring_graph(), cov, return_attention=True)
    P, P_out = -(-T_IN // patch_len), -(-T_OUT // patch_len)
    assert attn["temporal"].shape == (2, N, 2, P, P)
    assert attn["cross"].shape == (2, N, 2, P_out, P)
    torch.testing.assert_close(y.loc, m(x, ring_graph(), cov).loc)


def test_patches_are_the_window_cut_from_the_end():
    """patch_len 4 on a 6-step window: patch 0 = two zero steps + steps 0, 1; patch 1 = steps 2..5; each
    patch's calendar is its last step's."""
    m = model(patch_len=4, **EFFICIENT)
    x, cov = batch()
    xp, tod, dow = m._patches(x, cov["tod_in"], cov["dow_in"])
    assert xp.shape == (2, 2, N, 4 * C_IN)
    b, n = 1, 5
    want0 = torch.cat([torch.zeros(2 * C_IN), x[b, 0, n], x[b, 1, n]])
    want1 = torch.cat([x[b, t, n] for t in range(2, 6)])
    torch.testing.assert_close(xp[b, 0, n], want0)
    torch.testing.assert_close(xp[b, 1, n], want1)
    torch.testing.assert_close(tod, cov["tod_in"][:, [1, 5]])
    assert torch.equal(dow, cov["dow_in"][:, [1, 5]])


def test_horizon_patches_unfold_in_step_order():
    """A head whose output for each horizon patch is (step-in-patch + 10 * channel) puts step k of patch p at
    horizon step p * patch_len + k: set the head to a constant bias and read it back."""
    m = STGT(N, C_IN, 2, T_IN, T_OUT, target_channels=None, hidden=16, heads=2, patch_len=3, **EFFICIENT)
    with torch.no_grad():  # bias laid out [patch_len, C_out]: values k + 10 c
        m.head_out.bias.copy_(torch.tensor([k + 10.0 * c for k in range(3) for c in range(2)]))
    x, cov = batch()
    y = m(x, ring_graph(), cov)  # T_OUT = 4: patch 0 -> steps 0, 1, 2; patch 1 -> step 3 (+ 2 padded, dropped)
    want = torch.tensor([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [0.0, 10.0]])
    torch.testing.assert_close(y[0, :, 3], want)


def test_efficient_shape_is_cheaper_and_classic_keys_unchanged():
    """Fewer parameters than the classic shape at the same width; the classic shape (constructor defaults)
    keeps the state-dict keys of runs trained before the efficient one."""
    classic, eff = model(), model(patch_len=3, **EFFICIENT)
    assert sum(p.numel() for p in eff.parameters()) < sum(p.numel() for p in classic.parameters())
    keys = set(classic.state_dict())
    assert "encoder.0.spatial.ffn.fc1.weight" in keys and "decoder.0.temporal.qkv.weight" in keys
    assert "window.weight" not in keys and "window.weight" in eff.state_dict()
    assert not any(".spatial.ffn." in k for k in eff.state_dict())


def test_registry_allows_zero_decoder_layers_only_where_declared():
    from stgraph.errors import ConfigError
    from stgraph.models.registry import build_model
    sizes = dict(num_nodes=N, in_channels=C_IN, out_channels=1, input_len=T_IN, horizon=T_OUT, target_channels=(0,))
    assert len(build_model("stgt", sizes, {"decoder_layers": 0, "hidden": 16, "heads": 2}).decoder) == 0
    with pytest.raises(ConfigError, match="decoder_layers = -1: expected an integer >= 0"):
        build_model("stgt", sizes, {"decoder_layers": -1})
    with pytest.raises(ConfigError, match="encoder_layers = 0: expected a positive integer"):
        build_model("stgt", sizes, {"encoder_layers": 0})
    with pytest.raises(ConfigError, match="patch_len"):
        build_model("stgt", sizes, {"patch_len": 0})
