"""Baselines DCRNN, STGCN and Graph WaveNet: forward contract, training, registry,
parameter counts, sparse graph operators, and one trainer epoch each."""
import math

import pytest
import torch
from torch_geometric.data import Data

from stgraph.errors import ConfigError
from stgraph.models import dcrnn, gwnet, stgcn  # importing registers them
from stgraph.models.registry import available_models, build_model, count_parameters, get_model_class
from stgraph.nn.graph_ops import SparseOperator, random_walk_operators, scaled_laplacian



NAMES = ["dcrnn", "stgcn", "gwnet"]
N, C_IN, C_OUT, T_IN, T_OUT = 10, 2, 2, 12, 3
#: small widths so that the tests are quick; the structure is the default one
SMALL = {
    "dcrnn": dict(hidden=16),
    "stgcn": dict(channels=(16, 8, 16)),
    "gwnet": dict(residual_channels=8, dilation_channels=8, skip_channels=16, end_channels=32, dropout=0.0),
}
#: published parameter counts at METR-LA size (STGCN: none published, the docstring's own count)
PUBLISHED = {"dcrnn": 371_905, "stgcn": 163_308, "gwnet": 309_400}
MODULES = {"dcrnn": dcrnn, "stgcn": stgcn, "gwnet": gwnet}


def sizes(n=N, c_in=C_IN, c_out=C_OUT, t_in=T_IN, t_out=T_OUT):
    return dict(num_nodes=n, in_channels=c_in, out_channels=c_out, input_len=t_in, horizon=t_out,
                steps_per_day=288, target_channels=tuple(range(c_out)), probabilistic=False)


def make(name, seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(name, sizes(**kw), SMALL[name])


def random_graph(n=N, seed=0, weights=True):
    """A directed ring (so that no node is isolated) plus random chords, weights in (0.1, 1]."""
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(n)
    src = torch.cat([i, torch.randint(0, n, (2 * n,), generator=g)])
    dst = torch.cat([(i + 1) % n, torch.randint(0, n, (2 * n,), generator=g)])
    keep = src != dst
    key = torch.unique(src[keep] * n + dst[keep])
    ei = torch.stack([key // n, key % n])
    data = Data(edge_index=ei, num_nodes=n)
    if weights:
        data.edge_weight = 0.1 + 0.9 * torch.rand(ei.size(1), generator=g)
    return data


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_output_shape_and_registry(name, calendar_batch):
    assert name in available_models()
    m = make(name)
    assert type(m) is get_model_class(name) and m.registry_name == name
    x, cov = calendar_batch(3, T_IN, T_OUT, N, C_IN)
    y = m(x, random_graph(), cov)
    assert y.shape == (3, T_OUT, N, C_OUT) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_registry_rejects_bad_params(name):
    with pytest.raises(ConfigError):
        build_model(name, sizes(), {"no_such_argument": 1})
    with pytest.raises(ConfigError, match="probabilistic"):
        build_model(name, {**sizes(), "probabilistic": True}, SMALL[name])


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_shape(name, calendar_batch):
    x, cov = calendar_batch(3, T_IN, T_OUT, N, C_IN)
    with pytest.raises(ValueError):
        make(name)(x[:, 1:], random_graph(), cov)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_at_metr_la_size(name):
    m = build_model(name, sizes(n=207, c_in=1, c_out=1, t_in=12, t_out=12), {})
    count = count_parameters(m)
    assert abs(count - PUBLISHED[name]) <= 0.1 * PUBLISHED[name]
    assert f"{count:,}" in MODULES[name].__doc__  # the docstring reports the count it has


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_masked_mae(name, sinusoid_series):
    # Each node is a sinusoid of the time of day with its own phase; the target is its future.
    torch.manual_seed(0)
    graph = random_graph()
    B = 8
    steps, series = sinusoid_series(B, T_IN + T_OUT, N)  # [B, T_IN+T_OUT], [B, T_IN+T_OUT, N]
    x = series[:, :T_IN, :, None].expand(-1, -1, -1, C_IN).contiguous()
    y = series[:, T_IN:, :, None].expand(-1, -1, -1, C_OUT).contiguous()
    mask = torch.rand(y.shape) > 0.1  # 10% of the targets are missing
    cov = {"tod_in": steps[:, :T_IN] / 288.0, "tod_out": steps[:, T_IN:] / 288.0,
           "dow_in": torch.zeros(B, T_IN, dtype=torch.long), "dow_out": torch.zeros(B, T_OUT, dtype=torch.long)}
    m = make(name)
    opt = torch.optim.AdamW(m.parameters(), lr=5e-3)
    losses = []
    for _ in range(20):
        err = (m(x, graph, cov) - y).abs()
        loss = (err * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_dcrnn_teacher_forcing_uses_targets(calendar_batch):
    m = make("dcrnn")
    x, cov = calendar_batch(3, T_IN, T_OUT, N, C_IN)
    graph = random_graph()
    y = torch.randn(3, T_OUT, N, C_OUT)
    free = m(x, graph, cov)
    forced = m(x, graph, cov, targets=y, teacher_forcing=1.0)
    assert torch.equal(free[:, 0], forced[:, 0])  # the first step reads the GO frame either way
    assert not torch.allclose(free[:, 1:], forced[:, 1:])
    m.eval()  # never in evaluation
    torch.testing.assert_close(m(x, graph, cov, targets=y, teacher_forcing=1.0), m(x, graph, cov))
    p = [m.teacher_forcing_probability(step) for step in (0, 2000, 20000, 100000)]
    assert p[0] > 0.99 and p == sorted(p, reverse=True) and p[-1] < 1e-6


# ----------------------------------------------------------------------------- graphs
@pytest.mark.parametrize("name", NAMES)
def test_edge_order_does_not_matter(name, calendar_batch):
    m = make(name).eval()
    x, cov = calendar_batch(3, T_IN, T_OUT, N, C_IN)
    g = random_graph()
    perm = torch.randperm(g.edge_index.size(1), generator=torch.Generator().manual_seed(1))
    shuffled = Data(edge_index=g.edge_index[:, perm], edge_weight=g.edge_weight[perm], num_nodes=N)
    torch.testing.assert_close(m(x, shuffled, cov), m(x, g, cov), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_graph_change_is_seen_and_missing_weight_means_ones(name, calendar_batch):
    m = make(name).eval()
    x, cov = calendar_batch(3, T_IN, T_OUT, N, C_IN)
    g = random_graph()
    out = m(x, g, cov)
    unweighted = random_graph(weights=False)
    ones = Data(edge_index=unweighted.edge_index, edge_weight=torch.ones(unweighted.edge_index.size(1)),
                num_nodes=N)
    out_unweighted = m(x, unweighted, cov)  # the cache must not return g's operators
    assert not torch.allclose(out_unweighted, out)
    torch.testing.assert_close(out_unweighted, m(x, ones, cov))
    g.edge_weight.mul_(0.5).add_(0.3)  # in-place edit of the same tensor: rebuilt too
    assert not torch.allclose(m(x, g, cov), out)


def dense_adjacency(g, n=N):
    w = torch.zeros(n, n, dtype=torch.float64)
    w[g.edge_index[0], g.edge_index[1]] = g.edge_weight.double()
    return w


def test_random_walk_operators_match_dense():
    g = random_graph()
    fwd, bwd = random_walk_operators(g.edge_index, g.edge_weight, N)
    w = dense_adjacency(g) + torch.eye(N, dtype=torch.float64)  # self loops of weight 1
    p_f = w / w.sum(1, keepdim=True)  # D_out^-1 W
    p_b = w.t() / w.t().sum(1, keepdim=True)  # D_in^-1 W^T
    torch.testing.assert_close(fwd.to_dense().double(), p_f.t(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(bwd.to_dense().double(), p_b.t(), atol=1e-6, rtol=1e-5)


def test_scaled_laplacian_matches_dense():
    g = random_graph()
    w = dense_adjacency(g)
    w = torch.maximum(w, w.t())
    d = w.sum(1).rsqrt()
    lap = torch.eye(N, dtype=torch.float64) - d[:, None] * w * d[None]
    lam = torch.linalg.eigvalsh(lap).max()
    ref = 2 * lap / lam - torch.eye(N, dtype=torch.float64)
    torch.testing.assert_close(scaled_laplacian(g.edge_index, g.edge_weight, N).to_dense().double(), ref,
                               atol=1e-4, rtol=1e-4)
    fixed = scaled_laplacian(g.edge_index, g.edge_weight, N, lambda_max=2.0).to_dense().double()
    torch.testing.assert_close(fixed, lap - torch.eye(N, dtype=torch.float64), atol=1e-6, rtol=1e-5)


def test_sparse_operator_gradient():
    g = random_graph()
    a = dense_adjacency(g)
    op = SparseOperator(g.edge_index[1], g.edge_index[0], g.edge_weight, N)  # y[dst] += w x[src]
    x = torch.randn(N, 3, 4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(op(x), torch.einsum("uv,ubc->vbc", a.float().double(), x))
    assert torch.autograd.gradcheck(op, (x,))


# ----------------------------------------------------------------------------- trainer
@pytest.fixture(scope="module")
def tiny_problem():
    from stgraph.data import ForecastData
    from stgraph.graph import to_pyg
    from stgraph.synth import generate

    series, nx_graph = generate(num_sensors=12, days=1, seed=0)
    data = ForecastData.from_series(series, input_len=12, horizon=3)
    return data, to_pyg(nx_graph, series.sensor_ids)


@pytest.mark.parametrize("name", NAMES)
def test_trainer_runs_one_epoch(name, tiny_problem):
    from stgraph.config import TrainConfig
    from stgraph.training.run import model_sizes
    from stgraph.training.forecaster import Forecaster
    from stgraph.training.trainer import Trainer

    data, graph = tiny_problem
    torch.manual_seed(0)
    model = build_model(name, model_sizes(data, False), SMALL[name])
    cfg = TrainConfig(epochs=1, max_batches=3, batch_size=8, progress=False, device="cpu")
    trainer = Trainer(Forecaster(model, data, graph, cfg), cfg)
    state = trainer.fit()
    assert state["finished"] and state["epoch"] == 1
    result = trainer.forecaster.evaluate("test")["average"]
    assert math.isfinite(result["mae"])
