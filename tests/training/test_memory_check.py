"""Before training: the peak-memory estimate, the stop with settings that fit, one source of defaults."""
import pytest
import torch

from stgraph.cli.main import build_parser, main
from stgraph.cli.runs import build_config
from stgraph.config import load_config, shipped_config
from stgraph.errors import ConfigError
from stgraph.models.stgt import STGT
from stgraph.training.memory import check_training_memory, estimate_train_memory


def stgt(**kw):
    return STGT(50, 2, 1, 12, 12, **kw)


def test_estimate_grows_with_batch_width_and_falls_with_recompute():
    m = stgt(hidden=32)
    e8, e16 = estimate_train_memory(m, 8, 300), estimate_train_memory(m, 16, 300)
    assert e16 == 2 * e8  # activations are linear in the batch
    assert estimate_train_memory(stgt(hidden=64), 8, 300) == 2 * e8  # and in the width
    # 3 blocks x 62 numbers per A = B*T*N*D, float32
    assert e8 == 4 * 62 * 3 * (8 * 12 * 50 * 32)
    assert estimate_train_memory(m, 8, 300, recompute=True) < e8
    # the plain edge-wise path keeps E' x S x D per layer on top
    g = estimate_train_memory(stgt(hidden=32, spatial_backend="gather"), 8, 300)
    assert g - e8 == 4 * 3 * 8 * (300 + 50) * (8 * 12) * 32


class LoggedLines:
    """The messages logged so far, as a list."""

    def __init__(self, caplog) -> None:
        self.caplog = caplog

    def __getitem__(self, i):
        return [r.getMessage() for r in self.caplog.records][i]


def test_check_falls_back_to_lean_then_recompute_then_stops(monkeypatch, caplog):
    import stgraph.runtime as rt
    switched = []
    monkeypatch.setattr(rt, "lean_malloc", lambda: switched.append(1) or True)
    m = stgt(hidden=32)
    fast = estimate_train_memory(m, 32, 300)
    lean = estimate_train_memory(m, 32, 300, lean=True)
    lean_rc = estimate_train_memory(m, 32, 300, lean=True, recompute=True)
    assert lean_rc < lean < fast
    caplog.set_level("INFO", logger="stgraph")
    lines = LoggedLines(caplog)
    check = lambda avail, **kw: check_training_memory(m, batch_size=32, num_edges=300, device="cpu",  # noqa: E731
                                                      available=avail, base=0, **kw)
    assert check(2 * fast) == fast and not switched  # fits: fast allocator kept
    assert check(int(1.02 * lean / 0.9)) == lean and switched and not m.recompute
    assert "lean allocator" in lines[-1]
    assert check(int(1.02 * lean_rc / 0.9)) == lean_rc and m.recompute
    assert "recomputing each block" in lines[-1]
    m.recompute = False
    with pytest.raises(ConfigError) as e:
        check(int(0.5 * lean_rc))
    msg = str(e.value)
    assert "would be killed for lack of memory" in msg and "train.batch_size = " in msg
    assert "train.memory_check = false" in msg and lines[-1].startswith("estimated peak memory")
    # switched off: only the estimate is printed
    assert check(1, enabled=False) == fast
    # a model without an estimate is not checked
    assert check_training_memory(torch.nn.Linear(2, 2), batch_size=8, num_edges=1, device="cpu",
                                 available=1) is None


def test_train_refuses_before_touching_the_run_dir(capsys, tiny_synth, tmp_path, monkeypatch):
    import resource

    import stgraph.training.memory as memory

    def available():  # 4 MiB of room past what this process holds: a few windows fit, not all 387
        held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return int((held + (4 << 20)) / memory.HEADROOM) - held

    monkeypatch.setattr(memory, "available_bytes", available)
    out = tmp_path / "run"
    rc = main(["train", "--data", str(tiny_synth["data"]), "--graph", str(tiny_synth["adj"]), "--model", "stgt",
               "--out", str(out), "--epochs", "1", "--no-progress", "--batch-size", "387"])  # all 387 training windows
    err = capsys.readouterr().err
    assert rc == 2 and "would be killed for lack of memory" in err and "train.batch_size = " in err
    assert not out.exists()


def test_train_defaults_come_from_the_shipped_config():
    shipped = load_config(shipped_config("stgt"))
    args = build_parser().parse_args(["train", "--data", "x.h5", "--out", "r", "--model", "stgt"])
    cfg = build_config(args)
    assert cfg.train.batch_size == shipped.train.batch_size
    assert cfg.model.params == shipped.model.params
    # named set-ups resolve by name; flags and --set still win
    args = build_parser().parse_args(["train", "--data", "x.h5", "--out", "r", "--config", "stgt-large",
                                      "--batch-size", "8", "--set", "model.params.heads=2"])
    cfg = build_config(args)
    large = load_config(shipped_config("stgt-large"))
    assert cfg.train.batch_size == 8 and cfg.model.params["heads"] == 2
    assert cfg.model.params["hidden"] == large.model.params["hidden"]  # a later file adds, not replaces
    assert shipped_config("../etc/passwd") is None and shipped_config("nope") is None


def test_unknown_config_name_lists_the_shipped_ones(capsys):
    rc = main(["train", "--data", "x.h5", "--out", "r", "--config", "stgt-huge"])
    err = capsys.readouterr().err
    assert rc == 2 and "--config 'stgt-huge': no such file, and not a shipped set-up" in err
    assert "'stgt-large'" in err and "'dcrnn'" in err


@pytest.mark.parametrize("threshold", ["default", None])
def test_tune_malloc_maps_only_blocks_above_its_threshold(monkeypatch, threshold):
    """The trainer's allocator keeps blocks up to 32 MiB in the heap and maps larger ones (given back when
    freed: the tensors of an 8,600-sensor step no longer fragment the heap); None keeps every block."""
    import stgraph.runtime as rt
    calls = []
    monkeypatch.setattr(rt, "_mallopt", lambda: lambda opt, val: calls.append((opt, val)) or 1)
    monkeypatch.setattr(rt, "_done", False)
    monkeypatch.setattr(rt, "_lean", False)
    monkeypatch.delenv("STGRAPH_NO_MALLOC_TUNING", raising=False)
    assert rt.tune_malloc() if threshold == "default" else rt.tune_malloc(None)
    got = dict(calls)
    if threshold == "default":
        assert got[rt._M_MMAP_THRESHOLD] == 32 << 20 == rt.MMAP_THRESHOLD and got[rt._M_MMAP_MAX] > 0
    else:
        assert got[rt._M_MMAP_MAX] == 0 and rt._M_MMAP_THRESHOLD not in got
    assert got[rt._M_TRIM_THRESHOLD] == 1 << 30
    calls.clear()
    assert rt.tune_malloc() and not calls  # once per process


def test_estimate_of_the_efficient_shape_and_of_tensors_the_allocator_gives_back():
    """The efficient shape counts its decoder (cross-attention + head) as a unit beside its blocks, on patch
    tokens (T = 12 / 3 = 4); where one activation tensor (4 * A bytes) is above the allocator's mmap threshold
    it is given back when freed, and the lean numbers apply without switching allocators."""
    from stgraph.runtime import MMAP_THRESHOLD
    eff = STGT(50, 2, 1, 12, 12, hidden=32, patch_len=3, spatial_ff=False, window_skip=True, decoder_layers=0)
    A = 8 * 4 * 50 * 32
    assert estimate_train_memory(eff, 8, 300) == 4 * 40 * 3 * A
    assert estimate_train_memory(eff, 8, 300, lean=True) == 4 * 20 * 3 * A
    big = STGT(8600, 2, 1, 12, 12, hidden=32, patch_len=3, spatial_ff=False, window_skip=True, decoder_layers=0,
               node_emb_dim=1)
    A = 8 * 4 * 8600 * 32
    assert 4 * A > MMAP_THRESHOLD
    assert estimate_train_memory(big, 8, 30000) == estimate_train_memory(big, 8, 30000, lean=True) == 4 * 20 * 3 * A


def test_preflight_refuses_a_huge_model_before_building_it(capsys, tiny_synth, tmp_path):
    """hidden=100000 (370 billion parameters) is refused from the config in seconds, naming the field, the
    estimate and what is available; nothing is allocated and no run directory is made."""
    import time
    out = tmp_path / "run"
    t0 = time.perf_counter()
    rc = main(["train", "--data", str(tiny_synth["data"]), "--graph", str(tiny_synth["adj"]), "--out", str(out),
               "--epochs", "1", "--no-progress", "--set", "model.params.hidden=100000"])
    err = capsys.readouterr().err
    assert rc == 2 and time.perf_counter() - t0 < 60, err
    assert "model.params.hidden = 100000" in err and "parameters" in err and "is available on cpu" in err
    assert "a smaller model.params.hidden" in err and not out.exists()


def test_preflight_counts_parameters_exactly_and_the_workers(tiny_synth, monkeypatch):
    """The meta-device build gives the real model's parameter count; each worker process adds its footprint,
    so a run that fits without workers is refused with many, naming train.workers."""
    import stgraph.limits as limits
    from stgraph.config import compose_config
    from stgraph.errors import ConfigError as CE
    from stgraph.models.registry import count_parameters
    from stgraph.training import memory
    from stgraph.training.prepare import make_model, prepare

    monkeypatch.setattr(limits, "cpu_count", lambda: 64)
    cfg = compose_config(settings={"data.path": str(tiny_synth["data"]), "data.graph": str(tiny_synth["adj"]),
                                   "train.batch_size": 8})
    prep = prepare(cfg)
    shell = memory.preflight(cfg, prep.data, num_edges=300, device="cpu", batch_size=8, available=1 << 40)
    assert next(shell.parameters()).device.type == "meta"
    assert count_parameters(shell) == count_parameters(make_model(cfg, prep.data))
    assert memory.worker_bytes(cfg, prep.data, 8) == 0
    settings = {"data.path": str(tiny_synth["data"]), "data.graph": str(tiny_synth["adj"]), "train.batch_size": 8}
    many = compose_config(settings={**settings, "train.workers": 64})
    one = compose_config(settings={**settings, "train.workers": 1})
    assert memory.worker_bytes(many, prep.data, 8) == 64 * memory.worker_bytes(one, prep.data, 8)
    assert memory.worker_bytes(one, prep.data, 8) > memory.WORKER_BYTES
    import resource
    held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fits_alone = int((held + (256 << 20)) / memory.HEADROOM)  # 256 MiB past the process: the model fits
    memory.preflight(cfg, prep.data, num_edges=300, device="cpu", batch_size=8, available=fits_alone)
    with pytest.raises(CE) as e:
        memory.preflight(many, prep.data, num_edges=300, device="cpu", batch_size=8, available=fits_alone)
    assert "train.workers = 64" in str(e.value) and "would be killed for lack of memory" in str(e.value)


def test_threads_of_a_larger_machine_are_capped_when_a_run_is_opened(caplog):
    import torch

    from stgraph.limits import max_threads
    from stgraph.runtime import configure_process

    caplog.set_level("WARNING", logger="stgraph")
    configure_process(torch.device("cpu"), 100 * max_threads())
    assert torch.get_num_threads() == max_threads()
    assert f"train.threads = {100 * max_threads()} is more than this machine takes" in caplog.text
