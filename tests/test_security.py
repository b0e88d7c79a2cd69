"""Security: no file stgraph reads can run code, downloads are verified, archives stay in their folder.

Already covered elsewhere (not repeated here):

* ``graph/test_graph.py``: the restricted unpickler refuses ``os.system`` (nothing runs),
  ``eval``/``exec`` under pickle protocols 0, 2 and 4, and ``_codecs.encode`` other
  than latin1 -- 8 cases;
* ``datasets/test_datasets.py``: sha256 mismatch detected and the file moved aside, a redirect
  to ``file://`` refused, ``file:``/``ftp:``/``data:``/scheme-less URLs refused, HTML
  pages and Git LFS pointers refused, zip-slip (4 names), tar ``..``, absolute,
  symlink (2) and hard-link members refused -- 18 cases.

This file adds every entry point that reads a pickle (graph files, CLI, ``.npz``/``.npy``
object arrays, checkpoints), more refused globals, redirects to other schemes and
after several hops, and zip symlinks, drive-letter names, tar device/FIFO members
and links to folders outside.
"""
from __future__ import annotations

import io
import os
import pickle
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stgraph.cli.main import main as cli_main
from stgraph.datasets.archives import extract
from stgraph.datasets.download import download
from stgraph.errors import DataFormatError, DownloadError, UnsafePickleError
from stgraph.graph import from_adj_pickle, read_graph, safe_loads
from stgraph.io import read_series
from stgraph.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from stgraph.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("security_synth"), num_sensors=12, days=3, seed=0)


class _RunsCode:
    """Unpickling this calls ``os.system(command)`` (pickled as ``posix.system``)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_pickle(marker: Path, protocol: int = 2) -> bytes:
    ids = ["a", "b"]
    return pickle.dumps([ids, {"a": 0, "b": 1}, _RunsCode(f"touch {marker}")], protocol=protocol)


def _one_line_error(capsys, rc) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ====================================================================== pickles
@pytest.mark.parametrize("entry", ["read_graph .pkl", "read_graph no suffix", "from_adj_pickle",
                                   "cli graph info", "cli graph build --adj", "cli train --graph"])
def test_code_running_graph_pickle_refused_at_every_entry_point(tmp_path, capsys, synth, entry):
    marker = tmp_path / "ran"
    path = tmp_path / ("adj_mx" if entry == "read_graph no suffix" else "adj_mx.pkl")
    path.write_bytes(_evil_pickle(marker))
    if entry.startswith("cli"):
        args = {"cli graph info": ["graph", "info", str(path)],
                "cli graph build --adj": ["graph", "build", "--adj", str(path), "--out", str(tmp_path / "g.json")],
                "cli train --graph": ["train", "--data", str(synth["data"]), "--graph", str(path),
                                      "--out", str(tmp_path / "run"), "--model", "last"]}[entry]
        err = _one_line_error(capsys, cli_main(args))
        assert f"'{path}': refused to load global 'posix.system'" in err
        assert not (tmp_path / "g.json").exists() and not (tmp_path / "run" / "checkpoints").exists()
    else:
        fn = from_adj_pickle if entry == "from_adj_pickle" else read_graph
        with pytest.raises(UnsafePickleError, match=r"refused to load global 'posix\.system'.*numpy arrays"):
            fn(path)
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("subprocess", "check_call"), ("builtins", "getattr"),
                                          ("builtins", "__import__"), ("numpy", "load"),
                                          ("torch", "load"), ("shutil", "rmtree")])
def test_globals_outside_the_allow_list_are_refused_before_they_run(tmp_path, module, name):
    victim = tmp_path / "victim"
    victim.mkdir()
    data = f"c{module}\n{name}\n(S'{victim}'\ntR.".encode()  # protocol 0: module.name('<victim>')
    with pytest.raises(UnsafePickleError, match=f"refused to load global '{module}.{name}'"):
        safe_loads(data, source="evil.pkl")
    assert victim.is_dir()  # shutil.rmtree was never called


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_series_with_a_pickled_object_array_is_refused_without_running_it(tmp_path, suffix):
    marker = tmp_path / "ran"
    arr = np.empty((3, 2), dtype=object)
    arr[:] = 1.0
    arr[0, 0] = _RunsCode(f"touch {marker}")
    path = tmp_path / f"pems{suffix}"
    if suffix == ".npz":
        np.savez(path, data=arr)
    else:
        np.save(path, arr, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"cannot be loaded.*saved without pickle"):
        read_series(path, start="2018-01-01", freq="5min")
    assert not marker.exists()


# ================================================================== checkpoints
def _tampered_checkpoint(path: Path, marker: Path) -> None:
    torch.save({"model": {"w": torch.zeros(2)}, "trainer": {"epoch": 1}, "x": _RunsCode(f"touch {marker}")}, path)


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "last.pt"
    _tampered_checkpoint(path, marker)
    with pytest.raises(UnsafePickleError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert f"checkpoint '{path}' refused" in msg and "'posix.system'" in msg and "nothing from the file was run" in msg
    assert not marker.exists()


@pytest.fixture
def baseline_run(synth, tmp_path, capsys):
    """A finished run directory of the closed-form last-value model (no training: fast)."""
    run = tmp_path / "run"
    assert cli_main(["train", "--data", str(synth["data"]), "--graph", str(synth["adj"]), "--model", "last",
                     "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    return run


@pytest.mark.parametrize("command", ["evaluate", "predict", "train --resume"])
def test_cli_refuses_a_tampered_checkpoint_in_a_run_directory(baseline_run, tmp_path, capsys, synth, command):
    marker = tmp_path / "ran"
    for name in ("best.pt", "last.pt"):
        _tampered_checkpoint(baseline_run / "checkpoints" / name, marker)
    args = {"evaluate": ["evaluate", str(baseline_run)],
            "predict": ["predict", str(baseline_run), "--out", str(tmp_path / "f.csv")],
            "train --resume": ["train", "--data", str(synth["data"]), "--graph", str(synth["adj"]),
                               "--model", "last", "--out", str(baseline_run), "--resume"]}[command]
    err = _one_line_error(capsys, cli_main(args))
    assert "refused" in err and "'posix.system'" in err
    assert not marker.exists()


_TINY_MODEL = """
import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, horizon, out_channels):
        super().__init__()
        self.horizon = horizon
        self.scale = nn.Parameter(torch.ones(out_channels))

    def forward(self, x, graph=None, covariates=None):
        return (x[:, -1:, :, : self.scale.numel()] * self.scale).expand(-1, self.horizon, -1, -1)
"""


def test_checkpoints_written_by_training_load_with_weights_only(synth, tmp_path, capsys, monkeypatch):
    (tmp_path / "stgraph_security_models.py").write_text(_TINY_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = tmp_path / "run"
    assert cli_main(["train", "--data", str(synth["data"]), "--graph", str(synth["adj"]), "--out", str(run),
                     "--model", "stgraph_security_models:Scale", "--epochs", "1", "--batch-size", "32",
                     "--no-progress", "--device", "cpu", "--set", "train.max_batches=2"]) == 0
    for name in ("last.pt", "best.pt"):
        state = torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert {"model", "optimizer", "scheduler", "rng", "scaler", "config"} <= set(state)
        assert state["optimizer"]["state"]  # AdamW moments were saved, as tensors


# ==================================================================== downloads
@pytest.mark.parametrize("target", ["ftp://127.0.0.1/adj_mx.pkl", "data:,hello", "gopher://127.0.0.1/x",
                                    "file:///etc/passwd after two http hops"])
def test_redirect_to_a_non_http_scheme_is_refused(tmp_path, target, local_server):
    dest = tmp_path / "out" / "adj_mx.pkl"
    with local_server({"/real": b"x" * 100}) as srv:
        if target.endswith("hops"):
            srv.state.redirects["/start"] = srv.url("/hop")
            srv.state.redirects["/hop"] = "file:///etc/passwd"
            scheme = "file"
        else:
            srv.state.redirects["/start"] = target
            scheme = target.split(":")[0]
        with pytest.raises(DownloadError) as info:
            download(srv.url("/start"), dest, progress=False, timeout=10, retries=0)
    msg = str(info.value)
    assert "refusing redirect" in msg and f"'{scheme}'" in msg and "only http(s)" in msg
    assert not dest.exists() and not dest.with_name("adj_mx.pkl.part").exists()


def test_unverified_bytes_never_reach_the_destination_name(tmp_path, local_server):
    """sha256 is checked on the .part file; only a verified file is renamed into place."""
    good = b"published bytes" * 1000
    dest = tmp_path / "pems04.npz"
    with local_server({"/pems04.npz": b"tampered bytes!" * 1000}) as srv:
        import hashlib
        with pytest.raises(DownloadError, match="sha256 mismatch.*not used"):
            download(srv.url("/pems04.npz"), dest, sha256=hashlib.sha256(good).hexdigest(), progress=False,
                     timeout=10, retries=0)
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["pems04.npz.corrupt"]


# ===================================================================== archives
def test_zip_symlink_pointing_outside_is_refused(tmp_path):
    arch = tmp_path / "evil.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        link = zipfile.ZipInfo("data/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../../etc/passwd")
    with pytest.raises(DownloadError, match=r"link 'data/link' -> '\.\./\.\./\.\./etc/passwd' points outside"):
        extract(arch, tmp_path / "target")
    assert not any((tmp_path / "target").rglob("*"))


def test_zip_member_with_a_drive_letter_is_refused(tmp_path):
    arch = tmp_path / "evil.zip"
    with zipfile.ZipFile(arch, "w") as zf:
        zf.writestr("C:/Windows/evil.txt", b"x")
    with pytest.raises(DownloadError, match=r"'C:/Windows/evil.txt' would be written outside"):
        extract(arch, tmp_path / "target")


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_tar_device_and_fifo_members_are_refused(tmp_path, kind):
    arch = tmp_path / "evil.tar"
    with tarfile.open(arch, "w") as tf:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        dev = tarfile.TarInfo("dev/node")
        dev.type = kind
        tf.addfile(dev)
    with pytest.raises(DownloadError, match=r"'dev/node' is a device, FIFO or other special file"):
        extract(arch, tmp_path / "target")
    assert not any((tmp_path / "target").rglob("*"))


def test_tar_link_to_a_folder_outside_is_refused(tmp_path):
    """A member ``d -> ..`` would let a later ``d/x`` land beside the target."""
    arch = tmp_path / "evil.tar"
    with tarfile.open(arch, "w") as tf:
        d = tarfile.TarInfo("d")
        d.type = tarfile.SYMTYPE
        d.linkname = ".."
        tf.addfile(d)
        x = tarfile.TarInfo("d/x")
        x.size = 3
        tf.addfile(x, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match=r"link 'd' -> '\.\.' points outside"):
        extract(arch, tmp_path / "target")
    assert not (tmp_path / "x").exists()
