import os

import pytest

from stgraph.shared_data import shared_data_dir


def _require(*parts):
    root = shared_data_dir()
    path = None if root is None else root.joinpath(*parts)
    if path is None or not path.exists():
        msg = f"real data {'/'.join(parts)} not found beside the project (../shared/data)"
        if os.environ.get("STGRAPH_REQUIRE_SHARED_DATA"):
            pytest.fail(msg + " and STGRAPH_REQUIRE_SHARED_DATA is set")
        pytest.skip(msg)
    return path


@pytest.fixture
def metr_week_dir():
    """``../shared/data/metr-la-week``; skips (or fails in CI) when absent."""
    return _require("metr-la-week")


@pytest.fixture
def shared_graphs_dir():
    """``../shared/data/graphs``; skips (or fails in CI) when absent."""
    return _require("graphs")


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A 10-sensor, 2-day synthetic road network in METR-LA's layout (files: data, adj, locations, ...)."""
    from stgraph.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("tiny_synth"), num_sensors=10, days=2, seed=3)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors run faster on one thread than on two contended ones; restore afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
