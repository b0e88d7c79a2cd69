"""Series larger than memory: ``read_series(path, lazy=True)`` leaves the values in the HDF5 file.

* the lazy series gives the loaded series' scaler, fingerprint, dead sensors and batches (bit for bit),
  from a METR-LA-layout frame and from a chunked plain file, with a cache far smaller than the array;
  training on it gives the same weights;
* a process that reads batches from a lazy 96 MiB file with a 4 MiB cache grows its peak memory by much less
  than the array (and the same process loading the file grows by at least the array);
* the errors: a CSV cannot be lazy, whole-array operations are refused, a bad chunk size.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from stgraph.config import TrainConfig
from stgraph.data import ForecastData
from stgraph.errors import ConfigError, SeriesError
from stgraph.io import LazySeries, Series, read_series, write_series

ROOT = Path(__file__).resolve().parents[2]


def _series(T=700, N=9, C=2, seed=0) -> Series:
    rng = np.random.default_rng(seed)
    v = (50 + 10 * rng.standard_normal((T, N, C))).astype(np.float32)
    v[rng.random((T, N, C)) < 0.05] = 0.0  # missing readings
    v[:, 3, 0] = 0.0  # a sensor without any reading in channel 0
    ts = np.datetime64("2024-01-01T00:00") + np.arange(T) * np.timedelta64(5, "m")
    ts[400:] += np.timedelta64(15, "m")  # a gap: windows over it are dropped
    return Series(v, ts, [f"s{i}" for i in range(N)], ["speed", "flow"][:C], 0.0)


def _batches(data: ForecastData, split: str, shuffle: bool):
    g = torch.Generator().manual_seed(7)
    return list(data.loader(split, 16, shuffle=shuffle, generator=g))


@pytest.mark.parametrize("layout", ["plain-chunked", "pandas"])
def test_lazy_series_gives_the_loaded_batches(tmp_path, layout, tiny_synth):
    if layout == "pandas":  # METR-LA's layout, contiguous
        path = tiny_synth["data"]
    else:
        path = write_series(_series(), tmp_path / "s.h5", chunk_rows=7)
    loaded = read_series(path)
    lazy = read_series(path, lazy=True, cache_bytes=4 * 7 * 9 * 2 * 4)  # a few chunks, far less than the array
    assert isinstance(lazy, LazySeries) and lazy.shape == loaded.shape
    assert lazy.values.max_chunks < lazy.num_steps // lazy.values.chunk_rows
    assert np.array_equal(lazy.values[5:40], loaded.values[5:40])
    assert lazy.missing_ratio == pytest.approx(loaded.missing_ratio, abs=0)
    with pytest.warns(UserWarning) if layout != "pandas" else _nothing():
        a = ForecastData.from_series(loaded, target="speed" if layout != "pandas" else 0)
    with pytest.warns(UserWarning) if layout != "pandas" else _nothing():
        b = ForecastData.from_series(lazy, target="speed" if layout != "pandas" else 0)
    assert np.array_equal(a.scaler.mean, b.scaler.mean) and np.array_equal(a.scaler.std, b.scaler.std)
    assert a.fingerprint() == b.fingerprint() and a.dead_sensors == b.dead_sensors
    assert a.split.sizes() == b.split.sizes() and a.dropped_windows == b.dropped_windows
    for split, shuffle in (("train", True), ("val", False), ("test", False)):
        got, ref = _batches(b, split, shuffle), _batches(a, split, shuffle)
        assert len(got) == len(ref) > 0
        for x, y in zip(got, ref):
            for name in ("x", "y", "tod_in", "dow_in", "tod_out", "dow_out", "starts"):
                assert torch.equal(getattr(x, name), getattr(y, name)), (split, name)
    stats = lazy.values.stats()
    assert stats["chunk_reads"] > lazy.values.max_chunks and stats["cache_hits"] > 0  # evicted and reused


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_training_on_a_lazy_series_gives_the_same_weights(tmp_path):
    from stgraph.models.registry import build_model
    from stgraph.training.forecaster import Forecaster
    from stgraph.training.run import empty_graph, model_sizes
    from stgraph.training.trainer import Trainer

    path = write_series(_series(T=500, C=1, seed=1), tmp_path / "s.h5", chunk_rows=5)
    cfg = TrainConfig(epochs=1, batch_size=8, max_batches=5, device="cpu", progress=False, seed=2)
    weights = []
    for lazy in (False, True):
        with pytest.warns(UserWarning):
            data = ForecastData.from_series(read_series(path, lazy=lazy, cache_bytes=1 << 14))
        torch.manual_seed(0)
        model = build_model("stgt", model_sizes(data, False), {"hidden": 8, "dropout": 0.0})
        trainer = Trainer(Forecaster(model, data, empty_graph(data.num_nodes), cfg), cfg)
        trainer.fit()
        weights.append(trainer.model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


_PEAK = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from stgraph.data import ForecastData
    from stgraph.io import read_series

    def status(key):  # bytes of VmRSS (now) or VmHWM (peak since the reset)
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    path, lazy = sys.argv[1], sys.argv[2] == "lazy"
    torch.zeros(1) + 1  # warm up torch's allocator before the baseline
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current resident size
    base = status("VmRSS")
    data = ForecastData.from_series(read_series(path, lazy=lazy, cache_bytes=4 << 20))
    g = torch.Generator().manual_seed(0)
    n = 0
    for i, batch in enumerate(data.loader("train", 8, shuffle=True, generator=g)):
        n += batch.x.shape[0]
        if i == 20:
            break
    print(json.dumps({"growth": status("VmHWM") - base, "windows": n}))
""")


def test_lazy_peak_memory_stays_below_the_array(tmp_path):
    T, N = 12288, 2048  # 96 MiB of float32: 24 times the 4 MiB cache
    rng = np.random.default_rng(0)
    values = (50 + rng.standard_normal((T, N, 1))).astype(np.float32)
    ts = np.datetime64("2024-01-01") + np.arange(T) * np.timedelta64(5, "m")
    path = write_series(Series(values, ts, [str(i) for i in range(N)]), tmp_path / "big.h5", chunk_rows=16)
    size = values.nbytes
    del values
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    out = {}
    for mode in ("lazy", "loaded"):
        proc = subprocess.run([sys.executable, "-c", _PEAK, str(path), mode], capture_output=True, text=True,
                              timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["lazy"]["windows"] == out["loaded"]["windows"] == 21 * 8
    assert out["loaded"]["growth"] >= size  # the measurement sees a loaded array
    # the lazy process holds the cache, one batch and the ~1 MB row blocks of the streaming passes
    assert out["lazy"]["growth"] < size / 3, (out, size)


def test_lazy_errors_name_the_file_and_what_is_expected(tmp_path, tiny_synth):
    csv = tmp_path / "s.csv"
    csv.write_text("timestamp,a\n2024-01-01 00:00,1\n2024-01-01 00:05,2\n")
    with pytest.raises(ConfigError, match=r"s.csv'?: lazy=True \(data.lazy\) reads HDF5 files only, and this file "
                                          r"is csv"):
        read_series(csv, lazy=True)
    lazy = read_series(tiny_synth["data"], lazy=True)
    with pytest.raises(SeriesError, match=r"select_sensors\(\) needs the whole \[T, N, C\] array in memory"):
        lazy.select_sensors(lazy.sensor_ids[:2])
    with pytest.raises(Exception, match=r"a lazy series reads row ranges values\[a:b\]"):
        lazy.values[[1, 2]]
    with pytest.raises(ConfigError, match=r"chunk_rows=0; expected a number of time steps >= 1"):
        write_series(read_series(tiny_synth["data"]), tmp_path / "x.h5", chunk_rows=0)
    with pytest.raises(SeriesError, match=r"ForecastData.inputs would hold the whole scaled \[T, N, C_in\] series"):
        ForecastData.from_series(lazy).inputs
    with pytest.raises(ConfigError, match=r"cache_bytes = 0: expected a positive number of bytes"):
        read_series(tiny_synth["data"], lazy=True, cache_bytes=0)


def test_lazy_run_from_the_config(tmp_path, tiny_synth):
    """``--set data.lazy=true`` (with 2 loader worker processes) trains from the file to the weights of the loaded run."""
    from stgraph.cli.main import main as cli_main
    from stgraph.training.checkpoint import load_checkpoint

    base = ["train", "--data", str(tiny_synth["data"]), "--graph", str(tiny_synth["adj"]), "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--no-progress", "--set", "model.params.hidden=8",
            "--set", "train.max_batches=3"]
    assert cli_main(base + ["--out", str(tmp_path / "a")]) == 0
    assert cli_main(base + ["--out", str(tmp_path / "b"), "--set", "data.lazy=true", "--set", "data.cache_mb=1",
                            "--set", "train.workers=2"]) == 0
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a["fingerprint"] == b["fingerprint"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert b["config"]["data"]["lazy"] is True


def test_worker_processes_prefetch_the_same_batches(tmp_path):
    path = write_series(_series(T=400, C=1, seed=3), tmp_path / "s.h5", chunk_rows=6)
    with pytest.warns(UserWarning):
        data = ForecastData.from_series(read_series(path, lazy=True, cache_bytes=1 << 14))
    g = [torch.Generator().manual_seed(4) for _ in range(2)]
    ref = list(data.loader("train", 16, shuffle=True, generator=g[0], start=2, shard=(1, 2)))
    got = list(data.loader("train", 16, shuffle=True, generator=g[1], start=2, shard=(1, 2), workers=2))
    assert len(got) == len(ref) > 3
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.starts, b.starts)
               for a, b in zip(got, ref))
    with pytest.raises(ConfigError, match=r"workers is -1; expected an integer >= 0"):
        data.loader("train", 16, workers=-1)


def test_write_series_blocks_streams_a_series_to_the_plain_layout(tmp_path):
    from stgraph.errors import DataFormatError
    from stgraph.io import write_series_blocks

    s = _series(T=100, C=2, seed=5)
    path = write_series_blocks(tmp_path / "b.h5", s.timestamps, s.sensor_ids, s.channels,
                               (s.values[a:a + 30] for a in range(0, 100, 30)), chunk_rows=8)
    back = read_series(path)
    assert np.array_equal(back.values, s.values) and back.channels == s.channels
    assert read_series(path, lazy=True).values.chunk_rows == 8
    with pytest.raises(DataFormatError, match=r"the blocks hold 90 rows; expected 100"):
        write_series_blocks(tmp_path / "c.h5", s.timestamps, s.sensor_ids, s.channels, [s.values[:90]])
    with pytest.raises(DataFormatError, match=r"block 0 has shape \(10, 9, 1\) at row 0; expected \[t, 9, 2\]"):
        write_series_blocks(tmp_path / "c.h5", s.timestamps, s.sensor_ids, s.channels, [s.values[:10, :, :1]])
    assert not (tmp_path / "c.h5").exists()  # nothing half-written is left
