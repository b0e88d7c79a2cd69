"""Issue 12: run directories and inputs that cannot betray the user.

One section per item of the issue; each test reproduces the attack or accident found on main
and checks the fix: nothing outside the inputs is read, a failed start or a full disk loses
nothing, results never silently belong to other inputs, tiny files neither hang nor exhaust
memory, and every failure is one line naming the file or field (exit status 2, no traceback).
"""
from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from stgraph.cli.main import main as cli_main
from stgraph.config import RunConfig, apply_override, load_config, shipped_config
from stgraph.errors import ConfigError, DataFormatError, DownloadError, GraphError, RunDirError, SeriesError
from stgraph.graph import from_adj_pickle, read_graph
from stgraph.io import Series, read_series, write_series

ROOT = Path(__file__).resolve().parents[1]
T0 = np.datetime64("2020-01-01T00:00", "ns")
FIVE = np.timedelta64(5, "m")
SMALL = ["--model", "last", "--no-progress", "--set", "data.input_len=3", "--set", "data.horizon=3"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + str(ROOT / "tests") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _cli(capsys, *args) -> str:
    """Run the CLI in-process; assert a one-line error and exit status 2; return the line."""
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == 2, f"rc={rc}\nstdout={out}\nstderr={err}"
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert len(err) < 1200, f"not a short line ({len(err)} characters)"
    return err


def _has(text: str, *needles: str) -> None:
    missing = [n for n in needles if n not in text]
    assert not missing, f"{missing} not in message:\n{text}"


def _ok(capsys, *args) -> str:
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out + err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def series_file(tmp_path) -> Path:
    """4 sensors x 120 steps, plain HDF5."""
    rng = np.random.default_rng(0)
    s = Series(rng.uniform(20, 70, (120, 4, 1)), T0 + np.arange(120) * FIVE, ["a", "b", "c", "d"], ["speed"])
    return write_series(s, tmp_path / "speed.h5")


@pytest.fixture
def graph_file(tmp_path) -> Path:
    p = tmp_path / "graph.csv"
    p.write_text("source,target,weight\na,b,1.0\nb,c,0.5\nc,d,0.7\n")
    return p


@pytest.fixture
def run(tmp_path, series_file, graph_file, capsys) -> Path:
    out = tmp_path / "run"
    _ok(capsys, "train", "--data", series_file, "--graph", graph_file, "--out", out, *SMALL)
    return out


# ================================================================ 1. reading what it must not
def _plain_with(path: Path, make_values) -> Path:
    with h5py.File(path, "w") as f:
        make_values(f)
        f["timestamps"] = (T0 + np.arange(8) * FIVE).astype(np.int64)
        f.create_dataset("sensor_ids", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype())
    return path


def test_hdf5_external_raw_storage_is_refused_naming_file_and_dataset(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:secret-password-line!" * 2)  # 64 bytes = 8 x 2 float32
    path = _plain_with(tmp_path / "ext.h5", lambda f: f.create_dataset(
        "values", shape=(8, 2), dtype="f4", external=[(str(secret), 0, 64)]))
    with pytest.raises(DataFormatError) as info:
        read_series(path)
    _has(str(info.value), str(path), "dataset '/values'", "external file", str(secret))
    _has(_cli(capsys, "data", "info", path), "ext.h5", "external")


def test_hdf5_virtual_dataset_and_external_link_are_refused(tmp_path):
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f["values"] = np.ones((8, 2), dtype="f4")
    layout = h5py.VirtualLayout(shape=(8, 2), dtype="f4")
    layout[:] = h5py.VirtualSource(str(src), "values", shape=(8, 2))
    vds = _plain_with(tmp_path / "vds.h5", lambda f: f.create_virtual_dataset("values", layout))
    with pytest.raises(DataFormatError, match=r"vds\.h5.*'/values' is a virtual dataset"):
        read_series(vds)

    def link(f):
        f["values"] = h5py.ExternalLink(str(src), "/values")
    lnk = _plain_with(tmp_path / "link.h5", link)
    with pytest.raises(DataFormatError, match=r"link\.h5.*'/values' is an external link"):
        read_series(lnk)


# ================================================================ 2. --overwrite validates first
def test_overwrite_with_a_typo_in_data_changes_nothing(run, tmp_path, series_file, graph_file, capsys):
    before = _tree(run)
    err = _cli(capsys, "train", "--data", tmp_path / "speed_typo.h5", "--graph", graph_file, "--out", run,
               "--overwrite", *SMALL)
    _has(err, "speed_typo.h5", "not found")
    assert _tree(run) == before  # the old run is intact
    # a good --overwrite replaces it as a whole, by renaming a new folder into place
    _ok(capsys, "train", "--data", series_file, "--graph", graph_file, "--out", run, "--overwrite", *SMALL,
        "--set", "data.horizon=2")
    assert load_config(run / "config.yaml").data.horizon == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".run.")) == []  # no stage, no lock


# ================================================================ 3. atomic writes
def _limited(limit: int):
    def pre():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return pre


def test_full_disk_keeps_the_old_forecast_and_names_the_file(run, tmp_path, capsys):
    fc = tmp_path / "forecast.csv"
    _ok(capsys, "predict", run, "--out", fc)
    good = fc.read_bytes()
    assert len(good) > 300
    proc = subprocess.run([sys.executable, "-m", "stgraph.cli.main", "predict", str(run), "--out", str(fc)],
                          capture_output=True, text=True, env=_env(), preexec_fn=_limited(200), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    _has(proc.stderr, str(fc), "File too large", "disk is full or a file-size limit")
    assert fc.read_bytes() == good  # the old forecast, not a cut-off one
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_truncated_run_config_is_an_error_naming_it(run, capsys, damage):
    cfg = run / "config.yaml"
    text = cfg.read_text()
    cfg.write_text({"truncated": text[: len(text) // 3], "empty": "", "garbage": "data: [1, 2\n"}[damage])
    _has(_cli(capsys, "evaluate", run), str(cfg), "damaged")


def test_every_run_file_is_written_through_the_one_atomic_helper(run, capsys, monkeypatch, tmp_path):
    """evaluate, predict and the trainer write through stgraph.files.atomic_path; nothing is opened for writing
    in the run directory by anything else."""
    from stgraph import files

    seen = []
    real = files.atomic_path

    def spy(path):
        seen.append(Path(path).name)
        return real(path)
    monkeypatch.setattr(files, "atomic_path", spy)
    _ok(capsys, "evaluate", run)
    _ok(capsys, "predict", run, "--out", tmp_path / "f.h5")
    _ok(capsys, "train", "--data", run.parent / "speed.h5", "--out", tmp_path / "r2", *SMALL)
    for name in ("evaluation_test.json", "f.h5", "config.yaml", "run.json", "last.pt", "best.pt",
                 "train_summary.json"):
        assert name in seen, (name, seen)


# ================================================================ 4. symlinks in a run directory
def test_symlinked_evaluation_file_is_never_written_through(run, tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (run / "evaluation_test.json").symlink_to(target)
    _has(_cli(capsys, "evaluate", run), "evaluation_test.json", "symbolic link", "never writes")
    assert target.read_text() == "keep me"


def test_symlinked_checkpoints_folder_is_not_deleted_through_on_overwrite(run, tmp_path, series_file, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.pt").write_bytes(b"weights of another project")
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    (run / "checkpoints").rmdir()
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    _has(_cli(capsys, "train", "--data", series_file, "--out", run, "--overwrite", *SMALL),
         "checkpoints", "symbolic link", str(elsewhere))
    assert (elsewhere / "precious.pt").read_bytes() == b"weights of another project"


# ================================================================ 5. an output that is an input
def test_predict_refuses_to_overwrite_its_input_series(run, tmp_path, series_file, capsys):
    before = series_file.read_bytes()
    _has(_cli(capsys, "predict", run, "--data", series_file, "--out", series_file), "--out", "speed.h5", "input")
    copy = tmp_path / "copy.h5"
    copy.write_bytes(before)
    _has(_cli(capsys, "predict", run, "--out", series_file), "the run's data.path")
    _has(_cli(capsys, "predict", run, "--out", run / "forecast.csv"), "inside the run directory")
    assert series_file.read_bytes() == before


# ================================================================ 6. one process per run directory
def test_second_train_on_the_same_out_is_refused_naming_the_holder(tmp_path, series_file, capsys):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from stgraph.files import run_lock
        with run_lock({str(out)!r}, command="stgraph train --out busy"):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = _cli(capsys, "train", "--data", series_file, "--out", out, *SMALL)
        _has(err, f"run directory '{out}' is in use by another process (pid {holder.pid}",
             "stgraph train --out busy", "choose another --out")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    _ok(capsys, "train", "--data", series_file, "--out", out, *SMALL)  # the lock dies with its process


# ================================================================ 7. a run file never picks a module
def test_tampered_model_name_in_config_is_refused_and_nothing_imported(run, capsys):
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("name: last", "name: this:Foo"))
    sys.modules.pop("this", None)
    err = _cli(capsys, "evaluate", run)
    _has(err, str(cfg), "disagrees with the checkpoint", "model.name", "this:Foo")
    assert "this" not in sys.modules


def test_user_model_import_path_comes_only_from_the_command_line(tmp_path, series_file, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    out = tmp_path / "user"
    _ok(capsys, "train", "--data", series_file, "--out", out, "--model", "user_model:TinyUserModel",
        "--no-progress", "--epochs", "1", "--batch-size", "8", "--set", "data.input_len=3",
        "--set", "data.horizon=3")
    _has(_cli(capsys, "evaluate", out), "user model 'user_model:TinyUserModel'", "never imports",
         "--model user_model:TinyUserModel")
    assert "average" in _ok(capsys, "evaluate", out, "--model", "user_model:TinyUserModel")


# ================================================================ 8. results that belong to their inputs
def test_evaluate_refuses_a_swapped_graph(run, graph_file, capsys):
    graph_file.write_text("source,target,weight\na,b,1.0\nb,c,0.5\nd,a,0.7\n")
    _has(_cli(capsys, "evaluate", run), "the graph", str(graph_file), "changed since", "fingerprint")


def test_resume_refuses_other_settings_and_says_what_differs(run, tmp_path, series_file, graph_file, capsys):
    base = ["train", "--out", run, "--resume", *SMALL]
    _has(_cli(capsys, *base, "--data", series_file, "--graph", graph_file, "--lr", "0.01"),
         "cannot resume", "train.lr: 0.001 in the run, 0.01 given", "train.epochs and train.patience")
    _has(_cli(capsys, *base[:-len(SMALL)], "--model", "var", "--no-progress"), "model.name: 'last' in the run, 'var'")
    other = tmp_path / "other.h5"
    s = read_series(series_file)
    write_series(Series(s.values * 2, s.timestamps, s.sensor_ids, s.channels), other)
    _has(_cli(capsys, *base, "--data", other), "cannot resume", "the data", "other.h5", "fingerprint")
    out = _ok(capsys, *base, "--epochs", "7", "--set", "train.patience=3")
    shipped = load_config(shipped_config("last")).train.epochs  # the model's defaults (stgraph/configs/last.yaml)
    _has(out, f"resume: train.epochs = 7 (the run had {shipped})", "resume: train.patience = 3")
    assert load_config(run / "config.yaml").train.epochs == 7


def test_bench_rerun_with_other_data_on_the_same_out_is_refused(tmp_path, series_file, capsys):
    bench = ["bench", "--models", "last", "--seeds", "1", "--set", "data.input_len=3", "--set", "data.horizon=3",
             "--out", tmp_path / "bench"]
    _ok(capsys, *bench, "--data", series_file)
    other = tmp_path / "other.h5"
    s = read_series(series_file)
    write_series(Series(s.values + 1, s.timestamps, s.sensor_ids, s.channels), other)
    _has(_cli(capsys, *bench, "--data", other), "holds results for other inputs", "data:", "delete")
    _ok(capsys, *bench, "--data", series_file)  # the same inputs: reused


# ================================================================ 9. downloads
def _manifest(tmp_path: Path, url: str, extra: str = "") -> Path:
    d = tmp_path / "manifests"
    d.mkdir(exist_ok=True)
    text = textwrap.dedent("""\
        name: tiny
        description: a tiny test dataset
        files:
          - name: speed.csv
            role: data
            manual: true
            page: https://example.org/speed
          - name: adj.csv
            role: graph
            url: URL
            sha256: null
            verified: false
        sensors: 2
        interval: 5min
        channels: [speed]
        null_value: 0.0
        format: csv
        graph: {method: adj-pickle, file: adj.csv}
        citation: none
        source: https://example.org
        """).replace("URL", url).replace("    verified: false\n", "    verified: false\n" + extra)
    (d / "tiny.yaml").write_text(text)
    return d


def _fetch(tmp_path, manifests, cache="cache", **kw):
    from stgraph.datasets import fetch
    return fetch("tiny", tmp_path / cache, manifests=[manifests], progress=False, retries=0, files=["adj.csv"], **kw)


def test_endless_body_without_content_length_is_capped(tmp_path, local_server):
    from stgraph.datasets.download import download

    with local_server() as srv:
        srv.state.endless.add("/endless.h5")
        t0 = time.monotonic()
        with pytest.raises(DownloadError) as info:
            download(srv.url("/endless.h5"), tmp_path / "x.h5", progress=False, retries=0, max_bytes=3 << 20)
    assert time.monotonic() - t0 < 30
    _has(str(info.value), "more than 3,145,728 bytes", "endless or wrong body", "x.h5")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.part").exists()


def test_html_error_page_served_as_a_file_is_refused(tmp_path, local_server):
    from stgraph.datasets.download import download

    page = b"<!DOCTYPE html>\n<html><body>Quota exceeded</body></html>"
    with local_server({"/metr-la.h5": page}) as srv:  # served as application/octet-stream
        with pytest.raises(DownloadError) as info:
            download(srv.url("/metr-la.h5"), tmp_path / "metr-la.h5", progress=False, retries=0)
    _has(str(info.value), "HTML page", "<!DOCTYPE html", "metr-la.h5", "Nothing was saved")
    assert list(tmp_path.iterdir()) == []


def test_unverified_entry_is_said_recorded_and_a_later_change_caught(tmp_path, monkeypatch, local_server):
    body = b"source,target,weight\na,b,1.0\n"
    with local_server({"/adj.csv": body}) as srv:
        manifests = _manifest(tmp_path, srv.url("/adj.csv"))
        with pytest.warns(UserWarning, match=r"unverified \(no published checksum.*recorded"):
            paths = _fetch(tmp_path, manifests)
        stamp = json.loads((tmp_path / "cache" / "tiny" / ".stgraph-verified.json").read_text())
        import hashlib
        assert stamp["adj.csv"]["sha256"] == hashlib.sha256(body).hexdigest()
        assert stamp["adj.csv"]["verified"] is False
        paths["adj.csv"].write_bytes(body + b"b,a,2.0\n")  # changed later (by hand, a sync, an attacker)
        with pytest.raises(DownloadError, match="changed since it was first downloaded"):
            _fetch(tmp_path, manifests)
        # a pinned checksum that the server's bytes do not match: never used
        paths["adj.csv"].unlink()
        with pytest.raises(Exception, match="sha256 mismatch"):
            _fetch(tmp_path, manifests, "cache2", sha256={"adj.csv": "0" * 64})
        assert not (tmp_path / "cache2" / "tiny" / "adj.csv").exists()


def test_manifest_size_caps_the_download(tmp_path, local_server):
    with local_server({"/adj.csv": b"x" * 5000}) as srv:
        manifests = _manifest(tmp_path, srv.url("/adj.csv"), "    size: 1000\n")
        with pytest.raises(Exception) as info:
            _fetch(tmp_path, manifests)
    _has(str(info.value), "announces 5,000 bytes", "more than the 1,000 bytes expected")


def test_every_shipped_manifest_file_has_a_checksum_or_is_marked_unverified():
    from stgraph.datasets import get_manifest, list_datasets

    for name in list_datasets():
        for f in get_manifest(name).files:
            assert f.sha256 is not None or f.verified is False, (name, f.name)


# ================================================================ 10. YAML alias bombs
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def test_yaml_alias_bomb_is_refused_at_once(tmp_path, series_file, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("model:\n  params:\n    " + BOMB.replace("\n", "\n    "))
    assert len(bomb.read_bytes()) < 1000
    t0 = time.monotonic()
    _has(_cli(capsys, "train", "--data", series_file, "--config", bomb, "--out", tmp_path / "r", *SMALL),
         "bomb.yaml", "alias '*a' refused", "line 4")
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="alias"):
        apply_override(RunConfig(), "model.params.x=[&a [1], *a]")


# ================================================================ 11. declared sizes beyond the file
def test_hdf5_chunked_values_declared_huge_are_refused_quickly(tmp_path):
    path = _plain_with(tmp_path / "huge.h5", lambda f: f.create_dataset(
        "values", shape=(10_000_000, 10_000), dtype="f4", chunks=(1, 16)))
    assert path.stat().st_size < 100_000
    t0 = time.monotonic()
    with pytest.raises(DataFormatError) as info:
        read_series(path)
    assert time.monotonic() - t0 < 5
    _has(str(info.value), "huge.h5", "'/values' declares shape (10000000, 10000) = 400.0 GB", "memory budget")


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_npy_header_declaring_more_than_the_file_is_refused(tmp_path, kind):
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (10000000, 100000), }"
    header = header.ljust(118) + "\n"  # magic (6) + version (2) + length (2) + header = 128 bytes
    raw = np.lib.format.magic(1, 0) + len(header).to_bytes(2, "little") + header.encode() + np.ones((4, 3)).tobytes()
    path = tmp_path / f"bad.{kind}"
    if kind == "npy":
        path.write_bytes(raw)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("data.npy", raw)
    with pytest.raises(DataFormatError) as info:
        read_series(path, start="2020-01-01", freq="5min")
    _has(str(info.value), path.name, "declares shape (10000000, 100000)")


def test_npz_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, data=np.zeros((8000, 2000, 1), dtype="f8"))  # 128 MB of zeros in ~125 kB
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DataFormatError) as info:
        read_series(path, start="2020-01-01", freq="5min")
    _has(str(info.value), "bomb.npz", "decompression bomb")


def test_tiny_adjacency_pickle_asking_for_a_huge_buffer_is_refused(tmp_path, capsys):
    from numpy._core.numeric import _frombuffer  # noqa: F401  (the global DCRNN pickles use)

    class R:
        def __init__(self, f, a):
            self.f, self.a = f, a

        def __reduce__(self):
            return self.f, self.a
    import builtins
    import numpy._core.numeric as num
    data = pickle.dumps([["a"], {"a": 0}, R(num._frombuffer, (R(builtins.bytearray, (60000 * 60000 * 4,)),
                                                             np.dtype("f4"), (60000, 60000), "C"))], protocol=2)
    path = tmp_path / "adj_mx.pkl"
    path.write_bytes(data)
    assert len(data) < 250
    with pytest.raises(DataFormatError, match=r"adj_mx\.pkl.*bytearray\(14400000000\)"):
        from_adj_pickle(path)
    _has(_cli(capsys, "graph", "info", path), "adj_mx.pkl", "refusing it")


def test_pandas_frame_with_absurd_nblocks_is_one_short_line(tmp_path, capsys):
    s = Series(np.ones((8, 2, 1)), T0 + np.arange(8) * FIVE, ["a", "b"], ["speed"])
    path = write_series(s, tmp_path / "frame.h5", layout="pandas")
    with h5py.File(path, "a") as f:
        f["df"].attrs["nblocks"] = np.int64(3_000_000)
    t0 = time.monotonic()
    err = _cli(capsys, "data", "info", path)
    assert time.monotonic() - t0 < 5
    _has(err, "frame.h5", "nblocks=3000000", "the group holds 4")


# ================================================================ 12. tracebacks
def test_model_param_zero_is_a_config_error(tmp_path, series_file, capsys):
    _has(_cli(capsys, "train", "--data", series_file, "--out", tmp_path / "r", "--model", "stgt", "--no-progress",
              "--set", "model.params.hidden=0"), "model.params.hidden = 0", "positive integer")


def test_non_numeric_milestones_are_a_config_error(tmp_path, series_file, capsys):
    _has(_cli(capsys, "train", "--data", series_file, "--out", tmp_path / "r", *SMALL, "--set",
              "train.scheduler=multistep", "--set", "train.milestones=[a, 1]"), "train.milestones", "['a', 1]",
         "increasing positive integers")


@pytest.mark.parametrize("graph", ['[1, 2]', '{"incoming_graph_data": [[0, 1]]}'])
def test_node_link_json_with_a_bad_graph_entry(tmp_path, capsys, graph):
    path = tmp_path / "g.json"
    path.write_text('{"directed": true, "graph": %s, "nodes": [{"id": "a"}, {"id": "b"}], '
                    '"edges": [{"source": "a", "target": "b"}]}' % graph)
    with pytest.raises(DataFormatError, match=r"g\.json.*'graph' entry"):
        read_graph(path)
    _has(_cli(capsys, "graph", "info", path), "g.json")


def test_graphml_holding_incoming_graph_data(tmp_path):
    path = tmp_path / "g.graphml"
    path.write_text(textwrap.dedent("""\
        <?xml version="1.0" encoding="UTF-8"?>
        <graphml xmlns="http://graphml.graphdrawing.org/xmlns">
          <key id="d0" for="graph" attr.name="incoming_graph_data" attr.type="string"/>
          <graph edgedefault="directed"><data key="d0">x</data>
            <node id="a"/><node id="b"/><edge source="a" target="b"/>
          </graph>
        </graphml>
        """))
    with pytest.raises(DataFormatError, match=r"g\.graphml.*'incoming_graph_data'"):
        read_graph(path)


def test_checkpoint_with_a_non_integer_epoch(run, capsys, series_file):
    last = run / "checkpoints" / "last.pt"
    ck = torch.load(last, weights_only=True)
    ck["trainer"]["epoch"] = "three"
    torch.save(ck, last)
    _has(_cli(capsys, "train", "--data", series_file, "--out", run, "--resume", *SMALL), str(last),
         "trainer.epoch = 'three'", "an integer >= 0")


def test_last_resort_handler_prints_one_line_naming_the_inputs(capsys, monkeypatch, series_file):
    from stgraph.cli import data as commands

    def boom(args):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(commands, "data_info", boom)
    _has(_cli(capsys, "data", "info", series_file), f"stgraph data info {series_file} failed",
         "ZeroDivisionError: division by zero", "--debug")
    with pytest.raises(ZeroDivisionError):
        cli_main(["--debug", "data", "info", str(series_file)])


# ================================================================ 13. accepted but wrong
@pytest.mark.parametrize("stamp, found", [("9999-01-01 00:00", "9999-01-01"), ("1000-01-01 00:00", "1000-01-01"),
                                          ("2020-01-01 00:05+99:99", "+99:99")])
def test_csv_timestamps_that_would_wrap_or_do_not_exist(tmp_path, stamp, found):
    path = tmp_path / "t.csv"
    path.write_text(f"timestamp,a\n2020-01-01 00:00,1\n{stamp},2\n")
    with pytest.raises(DataFormatError) as info:
        read_series(path)
    _has(str(info.value), "t.csv", "line 3", "column 'timestamp'", found)


def test_adjacency_weight_beyond_float32_is_refused(tmp_path):
    path = tmp_path / "adj_mx.pkl"
    path.write_bytes(pickle.dumps([["a", "b"], {"a": 0, "b": 1}, np.array([[0, 1e300], [1, 0]])], protocol=2))
    with pytest.raises(GraphError, match=r"adj_mx\.pkl.*beyond-float32.*1e\+300"):
        from_adj_pickle(path)
    e = tmp_path / "e.csv"
    e.write_text("source,target,weight\na,b,1e300\n")
    with pytest.raises(GraphError, match="float32"):
        read_graph(e)


def test_two_dimensional_sensor_ids_are_refused(tmp_path):
    path = tmp_path / "ids.h5"
    with h5py.File(path, "w") as f:
        f["values"] = np.ones((8, 2, 1), dtype="f4")
        f["timestamps"] = (T0 + np.arange(8) * FIVE).astype(np.int64)
        f.create_dataset("sensor_ids", data=np.array([["s0"], ["s1"]], dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(DataFormatError, match=r"ids\.h5.*'sensor_ids' has shape \(2, 1\)"):
        read_series(path)
    with pytest.raises(SeriesError, match=r"sensor_ids\[0\] is a list \(\['s0'\]\)"):
        Series(np.ones((8, 2, 1)), T0 + np.arange(8) * FIVE, [["s0"], ["s1"]])


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.001\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    _has(str(info.value), "dup.yaml", "key 'lr' appears twice", "line 4")


# ================================================================ 14. messages that name file and field
def test_non_utf8_config_names_the_file(tmp_path):
    path = tmp_path / "cp1252.yaml"
    path.write_bytes("train:\n  lr: 0.001  # Stra\u00dfe\n".encode("cp1252"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    _has(str(info.value), "cp1252.yaml", "not UTF-8", "byte 0xdf", "line 2")


@pytest.mark.parametrize("override, parts", [
    ("data.split=[a, b, c]", ["data.split", "three positive ratios"]),
    (f"train.seed={2**70}", ["train.seed", str(2**70), "0 to 4294967295"]),
])
def test_config_values_name_their_field(tmp_path, series_file, capsys, override, parts):
    _has(_cli(capsys, "train", "--data", series_file, "--out", tmp_path / "r", *SMALL, "--set", override), *parts)


def test_deeply_nested_json_names_the_file(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    _has(_cli(capsys, "graph", "info", path), "deep.json", "nested too deeply")


def test_array_valued_ids_in_an_adjacency_pickle(tmp_path):
    path = tmp_path / "adj_mx.pkl"
    path.write_bytes(pickle.dumps([[np.array(["a", "b"]), np.array(["c", "d"])], {}, np.eye(2)], protocol=2))
    with pytest.raises(DataFormatError, match=r"adj_mx\.pkl.*item 0 \(sensor_ids\)\[0\] is a ndarray"):
        from_adj_pickle(path)


def test_hdf5_attribute_problem_names_the_attribute_not_corruption(tmp_path, capsys):
    s = Series(np.ones((8, 2, 1)), T0 + np.arange(8) * FIVE, ["a", "b"], ["speed"])
    path = write_series(s, tmp_path / "frame.h5", layout="pandas")
    with h5py.File(path, "a") as f:
        f["df"].attrs["nblocks"] = "two"
    err = _cli(capsys, "data", "info", path)
    _has(err, "frame.h5", "attribute 'nblocks' of /df is", "'two'", "expected an integer")
    assert "corrupted" not in err


def test_plot_out_folder_and_predict_suffix_checked_before_anything_is_made(run, tmp_path, capsys):
    adir = tmp_path / "adir"
    adir.mkdir()
    _has(_cli(capsys, "plot", run, "--out", adir), "adir", "is a folder", "forecast.png")
    assert list(adir.iterdir()) == [] and not (tmp_path / "adir.png").exists()
    _has(_cli(capsys, "predict", run, "--out", tmp_path / "new" / "deep" / "f.txt"), "f.txt", ".csv or .h5")
    assert not (tmp_path / "new").exists()


def test_run_stores_absolute_paths_and_works_from_another_folder(tmp_path, series_file, graph_file):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "s.h5").write_bytes(series_file.read_bytes())
    (work / "g.csv").write_bytes(graph_file.read_bytes())
    cmd = [sys.executable, "-m", "stgraph.cli.main"]
    train = subprocess.run(cmd + ["train", "--data", "s.h5", "--graph", "g.csv", "--out", "run", *SMALL],
                           cwd=work, capture_output=True, text=True, env=_env(), timeout=120)
    assert train.returncode == 0, train.stderr
    cfg = load_config(work / "run" / "config.yaml")
    assert cfg.data.path == str(work / "s.h5") and cfg.data.graph == str(work / "g.csv")
    ev = subprocess.run(cmd + ["evaluate", str(work / "run")], cwd=elsewhere, capture_output=True, text=True,
                        env=_env(), timeout=120)
    assert ev.returncode == 0, ev.stderr


def test_os_errors_name_the_path(tmp_path, run, capsys):
    """[Errno 17] File exists: a run directory where a file is."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    _has(_cli(capsys, "train", "--data", run.parent / "speed.h5", "--out", blocker, *SMALL), "afile", "is a file")


# ================================================================ issue 24, class 3: only what stgraph wrote is replaced
def _bytes(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _user_folder(folder: Path, config: bool = True) -> Path:
    folder.mkdir()
    if config:
        (folder / "config.yaml").write_text("services:\n  web: {image: nginx}\n")  # the user's own config.yaml
    (folder / "notes.txt").write_text("field notes, irreplaceable")
    (folder / "sub").mkdir()
    (folder / "sub" / "survey.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_train_never_deletes_a_folder_holding_a_config_yaml_it_did_not_write(tmp_path, series_file, capsys, flags):
    proj = _user_folder(tmp_path / "proj")
    before = _bytes(proj)
    err = _cli(capsys, "train", "--data", series_file, "--out", proj, *SMALL, *flags)
    _has(err, "config.yaml", "stgraph did not write")
    if flags:
        _has(err, "notes.txt", "sub", "--force")
    assert _bytes(proj) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".proj")]  # no stage, no lock left


def test_overwrite_of_a_run_holding_user_files_is_refused_then_forced(run, series_file, capsys):
    (run / "my_analysis.ipynb").write_text("{}")
    (run / "figures").mkdir()
    (run / "figures" / "fig1.png").write_bytes(b"\x89PNG user figure")
    (run / "checkpoints" / "hand_tuned.pt").write_bytes(b"a user's weights")
    before = _bytes(run)
    err = _cli(capsys, "train", "--data", series_file, "--out", run, "--overwrite", *SMALL)
    _has(err, "checkpoints/hand_tuned.pt", "figures", "my_analysis.ipynb", "stgraph did not write", "--force")
    assert _bytes(run) == before
    _ok(capsys, "train", "--data", series_file, "--out", run, "--overwrite", "--force", *SMALL)
    assert not (run / "my_analysis.ipynb").exists() and (run / "checkpoints" / "last.pt").is_file()
    # a run stgraph made, holding only its own files (drift's report included): --overwrite alone replaces it
    (run / "drift").mkdir()
    (run / "drift" / "drift.csv").write_text("sensor_id\n")
    _ok(capsys, "evaluate", run)
    _ok(capsys, "train", "--data", series_file, "--out", run, "--overwrite", *SMALL)


@pytest.mark.parametrize("names", [["metrics.csv"], ["train_summary.json", "evaluation_test.json"],
                                   ["checkpoints/last.pt"], ["run.json", "gates.json"]])
def test_user_files_with_run_file_names_in_a_folder_without_a_run_are_kept(tmp_path, series_file, capsys, names):
    out = _user_folder(tmp_path / "mine", config=False)
    for name in names:
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(f"user data in {name}".encode())
    before = _bytes(out)
    _has(_cli(capsys, "train", "--data", series_file, "--out", out, *SMALL), names[0], "stgraph did not write",
         "--force")
    assert _bytes(out) == before


def test_drift_report_never_replaces_user_tables_and_stays_part_of_the_run(run, tmp_path, series_file, capsys):
    report = _user_folder(tmp_path / "report", config=False)
    (report / "errors.csv").write_text("my own error log\n")
    before = _bytes(report)
    drift = ["drift", run, "--data", series_file, "--period", "1h"]
    _has(_cli(capsys, *drift, "--out", report), "errors.csv", "stgraph did not write", "--force")
    assert _bytes(report) == before
    _ok(capsys, *drift)  # into RUN/drift, twice: its own files are replaced
    _ok(capsys, *drift)
    _ok(capsys, "train", "--data", series_file, "--out", run, "--overwrite", *SMALL)  # drift/ is the run's


def _real_dcrnn_files(folder: Path) -> Path:
    folder.mkdir()
    (folder / "adj_mx.pkl").write_bytes(pickle.dumps([["7"], {"7": 0}, np.ones((1, 1), np.float32)], protocol=2))
    (folder / "graph_sensor_locations.csv").write_text("index,sensor_id,latitude,longitude\n0,7,34.1,-118.2\n")
    (folder / "graph_sensor_ids.txt").write_text("7")
    (folder / "distances.csv").write_text("from,to,cost\n7,7,0\n")
    (folder / "synthetic.h5").write_bytes(b"\x89HDF\r\n\x1a\n a user's file")
    (folder / "counts.csv").write_text("timestamp,7\n2020-01-01,3\n")
    (folder / "graph.json").write_text("{}")
    (folder / "rain.csv").write_text("timestamp,rain_mm_h\n")
    return folder


@pytest.mark.parametrize("keep", ["adj_mx.pkl", "graph_sensor_locations.csv", "graph_sensor_ids.txt",
                                  "distances.csv", "synthetic.h5"])
@pytest.mark.parametrize("kind", [[], ["--kind", "counts"], ["--rain"]])
def test_data_synth_never_replaces_real_files_it_did_not_write(tmp_path, capsys, keep, kind):
    real = _real_dcrnn_files(tmp_path / "metr-la")
    for name in {"adj_mx.pkl", "graph_sensor_locations.csv", "graph_sensor_ids.txt", "distances.csv", "synthetic.h5",
                 "counts.csv", "graph.json", "rain.csv"} - {keep, "graph_sensor_locations.csv" if kind else keep}:
        (real / name).unlink()
    if kind == ["--kind", "counts"] and keep not in ("graph_sensor_locations.csv",):
        (real / "counts.csv").write_text("timestamp,7\n2020-01-01,3\n")  # the counts layout's own name
        keep = "counts.csv"
    before = _bytes(real)
    err = _cli(capsys, "data", "synth", "--out", real, "--sensors", "6", "--days", "1", *kind)
    _has(err, "stgraph did not write", "--force")
    assert _bytes(real) == before


def test_data_synth_replaces_its_own_files_and_force_replaces_others(tmp_path, capsys):
    out = tmp_path / "syn"
    _ok(capsys, "data", "synth", "--out", out, "--sensors", "6", "--days", "1")
    _ok(capsys, "data", "synth", "--out", out, "--sensors", "6", "--days", "1", "--seed", "2")  # its own: replaced
    (out / "adj_mx.pkl").write_bytes(b"edited by hand")  # changed since stgraph wrote it: the user's now
    _has(_cli(capsys, "data", "synth", "--out", out, "--sensors", "6", "--days", "1"), "adj_mx.pkl")
    assert (out / "adj_mx.pkl").read_bytes() == b"edited by hand"
    _ok(capsys, "data", "synth", "--out", out, "--sensors", "6", "--days", "1", "--force")
    assert from_adj_pickle(out / "adj_mx.pkl").number_of_nodes() == 6


def test_graph_partition_and_predict_outputs_never_replace_unrelated_files(run, tmp_path, series_file, graph_file,
                                                                             capsys):
    table = tmp_path / "distances.csv"
    table.write_text("from,to,cost\na,b,100\n")
    big = tmp_path / "metr-la.h5"
    big.write_bytes(series_file.read_bytes())
    series_csv = tmp_path / "series.csv"
    series_csv.write_text("timestamp,a\n2020-01-01T00:00,1\n")
    cases = [(["graph", "build", "--graph", graph_file, "--out", table], table),
             (["graph", "build", "--graph", graph_file, "--out", tmp_path / "g.json"], None),
             (["federated", "partition", "--data", series_file, "--graph", graph_file, "--clients", "2",
               "--partition", "random", "--out", series_csv], series_csv),
             (["predict", run, "--out", big], big), (["predict", run, "--out", series_csv], series_csv)]
    for args, victim in cases:
        if victim is None:
            continue
        before = victim.read_bytes()
        _has(_cli(capsys, *args), str(victim), "stgraph did not write", "--force")
        assert victim.read_bytes() == before
    # stgraph's own outputs are replaced on a rerun, and --force replaces the others
    for args in (["predict", run, "--out", tmp_path / "fc.csv"], ["graph", "build", "--graph", graph_file, "--out",
                                                                   tmp_path / "g.json"]):
        _ok(capsys, *args)
        _ok(capsys, *args)
    _ok(capsys, "predict", run, "--out", big, "--force")
    assert h5py.is_hdf5(big) and "forecast" in h5py.File(big, "r")


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` (and what is in it) refuse every write, as a read-only mount does (also for root)."""
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def ro_open(path, flags, *a, **k):
        if flags & writing and str(os.path.abspath(path)).startswith(str(folder)):
            raise OSError(30, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)
    monkeypatch.setattr(os, "open", ro_open)


def test_evaluate_works_on_a_read_only_run_and_locks_leave_nothing_behind(run, tmp_path, series_file, capsys,
                                                                           monkeypatch):
    before = _bytes(tmp_path)
    with monkeypatch.context() as m:
        _read_only(m, tmp_path)
        rc = cli_main(["evaluate", str(run)])
        out, err = capsys.readouterr()
    assert rc == 0, err
    _has(out + err, "average", "read-only")
    assert _bytes(tmp_path) == before
    # refused and finished commands alike leave no lock file beside the run
    _cli(capsys, "train", "--data", series_file, "--out", run, *SMALL, "--lr", "0.5")
    _ok(capsys, "evaluate", run)
    _ok(capsys, "predict", run, "--out", tmp_path / "fc.csv")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")]


# ================================================================ issue 24, class 4: results match the command
def test_resume_refuses_a_hand_edited_config_naming_the_fields(run, series_file, graph_file, capsys):
    cfg = run / "config.yaml"
    text = cfg.read_text()
    assert "lr: 0.001" in text and "input_len: 3" in text
    cfg.write_text(text.replace("lr: 0.001", "lr: 0.05").replace("input_len: 3", "input_len: 4"))
    before = _bytes(run)
    err = _cli(capsys, "train", "--out", run, "--resume", "--data", series_file, "--graph", graph_file,
               "--no-progress")
    _has(err, "cannot resume", "config.yaml", "train.lr", "0.05", "data.input_len", "last.pt")
    assert _bytes(run) == before


def _bench_cfgs(out: Path) -> dict[str, RunConfig]:
    return {str(p.parent.relative_to(out / "runs")): load_config(p) for p in sorted((out / "runs").rglob("config.yaml"))}


def test_bench_rerun_with_other_settings_retrains_instead_of_reusing(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    rng = np.random.default_rng(1)
    values = rng.uniform(20, 70, (160, 4, 1))
    values[::7, 1] = 0.0  # zeros: a null under --null-value 0, a reading under nan
    data = write_series(Series(values, T0 + np.arange(160) * FIVE, ["a", "b", "c", "d"], ["speed"]),
                        tmp_path / "z.h5")
    out = tmp_path / "bench"
    base = ["bench", "--data", data, "--models", "last,user_model:TinyUserModel", "--seeds", "2", "--out", out,
            "--set", "data.input_len=3", "--set", "data.horizon=3", "--set", "train.batch_size=16"]

    def bench(*extra) -> dict[str, float]:
        _ok(capsys, *base, *extra)
        return {str(p.parent.relative_to(out / "runs")): json.loads(p.read_text())["average"]["mae"]
                for p in sorted((out / "runs").rglob("bench_eval.json"))}

    first = bench("--epochs", "1", "--null-value", "0")
    second = bench("--epochs", "2", "--null-value", "nan")
    cfgs = _bench_cfgs(out)
    assert {k: (c.train.epochs, str(c.data.null_value)) for k, c in cfgs.items() if k.startswith("user")} == {
        "user_model.TinyUserModel/seed0": (2, "nan"), "user_model.TinyUserModel/seed1": (2, "nan")}
    assert str(cfgs["last/seed0"].data.null_value) == "nan"
    assert all(first[k] != second[k] for k in first)  # every number is the new command's
    # a bench interrupted after one seed and resumed with another --set never mixes settings across seeds
    (out / "runs" / "user_model.TinyUserModel" / "seed1" / "bench_eval.json").unlink()
    bench("--epochs", "2", "--null-value", "nan", "--set", "train.lr=0.01")
    assert {k: c.train.lr for k, c in _bench_cfgs(out).items()} == {
        "last/seed0": 0.01, "user_model.TinyUserModel/seed0": 0.01, "user_model.TinyUserModel/seed1": 0.01}
    # the same command again: every run reused as it is
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("bench_eval.json")}
    bench("--epochs", "2", "--null-value", "nan", "--set", "train.lr=0.01")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("bench_eval.json")} == stamps
