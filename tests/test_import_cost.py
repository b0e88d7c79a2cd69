"""What importing stgraph costs: torch only, never PyG or torch._dynamo (about 2 s more on a small CPU)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_training_modules_import_neither_pyg_nor_dynamo():
    code = ("import sys, stgraph, stgraph.data, stgraph.models, stgraph.training, stgraph.io, stgraph.graph\n"
            "print(sorted(m for m in ('torch_geometric', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_graph_helpers_still_work_after_the_lazy_import():
    import torch

    from stgraph.nn.spatial import with_self_loops
    from stgraph.runtime import eager_when_compiled

    ei = torch.tensor([[0, 1, 1, 2, 2], [1, 2, 2, 0, 2]])  # a duplicate 1->2 (weights 2, 4 -> mean 3), a loop 2->2
    g = with_self_loops(ei, torch.tensor([1.0, 2.0, 4.0, 5.0, 9.0]), 3, self_loop_weight=0.5)
    pairs = {(int(s), int(d)): float(w) for s, d, w in zip(g.edge_index[0], g.edge_index[1], g.edge_weight)}
    assert pairs == {(0, 1): 1.0, (1, 2): 3.0, (2, 0): 5.0, (0, 0): 0.5, (1, 1): 0.5, (2, 2): 0.5}

    calls = []

    @eager_when_compiled
    def double(x):
        calls.append(1)
        return 2 * x

    assert double(torch.ones(2)).tolist() == [2.0, 2.0] and calls == [1]
    assert double.__name__ == "double"
