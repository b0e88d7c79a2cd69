"""Models with one graph per window (a dynamic graph): with every window's graph the static one they give the
static model's numbers; with different graphs per window each window gets its own graph's forecast."""
import pytest
import torch
from torch_geometric.data import Data

from stgraph.graph.dynamic import WindowGraphs
from stgraph.models.registry import build_model
from stgraph.nn.window_graphs import fold, unfold, window_laplacian, window_operators
from stgraph.nn.graph_ops import random_walk_operators, scaled_laplacian

N, C, T_IN, T_OUT, B = 7, 2, 12, 3, 3
PARAMS = {
    "stgt": dict(hidden=16, heads=2, encoder_layers=2, decoder_layers=1, dropout=0.0),
    "gwnet": dict(residual_channels=8, dilation_channels=8, skip_channels=16, end_channels=32, dropout=0.0),
    "dcrnn": dict(hidden=8),
    "stgcn": dict(channels=(8, 4, 8)),
}


def graph(seed):
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(N)
    src = torch.cat([i, torch.randint(0, N, (2 * N,), generator=g)])
    dst = torch.cat([(i + 1) % N, torch.randint(0, N, (2 * N,), generator=g)])
    key = torch.unique(src[src != dst] * N + dst[src != dst])
    return torch.stack([key // N, key % N]), 0.1 + 0.9 * torch.rand(key.numel(), generator=g)


def union(graphs):
    """The per-window graphs as WindowGraphs (node b * N + n)."""
    ei = torch.cat([e + b * N for b, (e, _) in enumerate(graphs)], 1)
    return WindowGraphs(ei, torch.cat([w for _, w in graphs]), N, len(graphs))


def model(name):
    torch.manual_seed(0)
    sizes = dict(num_nodes=N, in_channels=C, out_channels=C, input_len=T_IN, horizon=T_OUT, steps_per_day=288,
                 target_channels=(0, 1), probabilistic=False)
    m = build_model(name, sizes, PARAMS[name]).eval()
    with torch.no_grad():  # stgt's head starts at zero (persistence only): random weights make the graph matter
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("name", ["stgt", "gwnet", "dcrnn", "stgcn"])
def test_same_graph_in_every_window_gives_the_static_numbers(name, calendar_batch):
    x, cov = calendar_batch(B, T_IN, T_OUT, N, C)
    ei, w = graph(1)
    m = model(name)
    with torch.no_grad():
        static = m(x, Data(edge_index=ei, edge_weight=w, num_nodes=N), cov)
        dynamic = m(x, union([(ei, w)] * B), cov)
    assert dynamic.shape == static.shape == (B, T_OUT, N, C)
    torch.testing.assert_close(dynamic, static, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["stgt", "gwnet", "dcrnn", "stgcn"])
def test_each_window_gets_its_own_graph(name, calendar_batch):
    x, cov = calendar_batch(B, T_IN, T_OUT, N, C)
    graphs = [graph(s) for s in (1, 2, 3)]
    m = model(name)
    with torch.no_grad():
        dynamic = m(x, union(graphs), cov)
        for b, (ei, w) in enumerate(graphs):  # window b alone, with its own static graph
            alone = {k: v[b:b + 1] for k, v in cov.items()}
            one = m(x[b:b + 1], Data(edge_index=ei, edge_weight=w, num_nodes=N), alone)
            torch.testing.assert_close(dynamic[b:b + 1], one, atol=2e-5, rtol=1e-4)
        other = m(x, Data(edge_index=graphs[0][0], edge_weight=graphs[0][1], num_nodes=N), cov)
    assert (dynamic[1:] - other[1:]).abs().max() > 1e-3  # windows 1, 2 differ from graph 0's forecast


def test_fold_and_operators_by_hand():
    x = torch.arange(2 * 3 * 4 * 1, dtype=torch.float32).view(2, 3, 4, 1)  # [B=2, T=3, N=4, D=1]
    f = fold(x)
    assert f.shape == (1, 3, 8, 1) and f[0, 1, 4 + 2, 0] == x[1, 1, 2, 0]  # window 1's node 2 at 1 * 4 + 2
    assert torch.equal(unfold(f, 2), x)
    # window 0: 0 -> 1 (weight 1); window 1: 1 -> 0 (weight 1); forward random walk moves mass along edges
    wg = WindowGraphs(torch.tensor([[0, 4 + 1], [1, 4 + 0]]), torch.ones(2), 4, 2)
    fwd = window_operators(wg, lambda e, w, n: random_walk_operators(e, w, n, self_loops=False))[0]
    h = torch.zeros(4, 2, 1)
    h[0, 0, 0], h[1, 1, 0] = 3.0, 5.0
    y = fwd(h)
    assert y[1, 0, 0] == 3.0 and y[0, 1, 0] == 5.0 and y.abs().sum() == 8.0


def test_per_window_laplacian_estimates_lambda_per_window():
    graphs = [graph(4), graph(5)]
    lap = window_laplacian(union(graphs))
    v = torch.randn(N, 2, 3)
    for b, (ei, w) in enumerate(graphs):
        ref = scaled_laplacian(ei, w, N)(v[:, b])
        torch.testing.assert_close(lap(v)[:, b], ref, atol=1e-5, rtol=1e-4)


def test_lambda_is_estimated_once_per_period_of_a_dynamic_graph(monkeypatch):
    import stgraph.nn.window_graphs as wgm
    graphs = [graph(4), graph(5), graph(6)]
    calls = []
    real = wgm._power_lambdas
    monkeypatch.setattr(wgm, "_power_lambdas", lambda *a: calls.append(a[2]) or real(*a))

    def batch(periods, key="g1"):  # windows holding periods of one dynamic graph (keyed `key`)
        wg = union([graphs[p] for p in periods])
        return WindowGraphs(wg.edge_index, wg.edge_weight, N, len(periods), periods=torch.tensor(periods), key=key)

    cache = {}
    v = torch.randn(N, 2, 3)
    first = window_laplacian(batch([0, 1]), cache=cache)(v)
    assert calls == [2] and set(cache) == {("g1", 0), ("g1", 1)}
    again = window_laplacian(batch([1, 0]), cache=cache)(v.flip(1))              # both cached: no iteration
    assert calls == [2]
    torch.testing.assert_close(again, first.flip(1), atol=1e-6, rtol=1e-6)
    for b, p in enumerate((1, 0)):                                                # the periods' own operators
        torch.testing.assert_close(again[:, b], scaled_laplacian(*graphs[p], N)(v.flip(1)[:, b]), atol=1e-5,
                                   rtol=1e-4)
    window_laplacian(batch([0, 2]), cache=cache)                                  # a new period: estimated
    window_laplacian(batch([0, 1], key="g2"), cache=cache)                        # another graph: estimated
    assert calls == [2, 2, 2] and len(cache) == 5
    assert cache[("g1", 0)] == pytest.approx(cache[("g2", 0)])


def test_stgcn_on_a_dynamic_graph_keeps_lambda_per_period():
    from stgraph.graph.dynamic import DynamicGraph
    import numpy as np
    (e0, w0), (e1, w1) = graph(4), graph(5)
    dg = DynamicGraph([str(i) for i in range(N)], np.array(["2012-03-01", "2012-03-02"], "datetime64[ns]"),
                      torch.cat([e0, e1], 1), torch.cat([w0, w1]), torch.tensor([0, e0.size(1), e0.size(1) + e1.size(1)]))
    dg = dg.aligned(np.array(["2012-03-01T12", "2012-03-02T12", "2012-03-03"], "datetime64[ns]"))
    m = model("stgcn")
    x = torch.randn(2, T_IN, N, C)
    wg = dg.window_graphs(torch.tensor([0, 2]))
    assert wg.periods.tolist() == [0, 1] and wg.key == dg.key == dg.to("cpu").key
    with torch.no_grad():
        out = m(x, wg)
        assert set(m._window_lambdas) == {(dg.key, 0), (dg.key, 1)}
        torch.testing.assert_close(m(x, wg), out)
        static = [m(x[b:b + 1], Data(edge_index=e, edge_weight=w, num_nodes=N)) for b, (e, w) in
                  enumerate(((e0, w0), (e1, w1)))]
    torch.testing.assert_close(out, torch.cat(static), atol=1e-4, rtol=1e-3)
