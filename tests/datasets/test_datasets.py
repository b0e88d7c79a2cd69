"""Named datasets: manifests, the safe downloader, archive extraction, fetch/load.

Downloads are tested against the local HTTP server of ``conftest.py`` (127.0.0.1,
a free port) serving the real one-week METR-LA files from the shared data folder.
It supports ``Range`` requests and can be told to cut a transfer halfway once, to
serve corrupted bytes, to ignore ``Range``, to answer with an HTML page, and to
redirect (e.g. to a ``file://`` URL).
"""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stgraph.datasets import (Dataset, fetch, get_manifest, list_datasets, load, load_manifest,
                              manifest_dirs)
from stgraph.datasets.archives import extract
from stgraph.datasets.download import download, sha256_file
from stgraph.datasets.manifest import builtin_manifest_dir
from stgraph.datasets.validation import parse_manifest
from stgraph.errors import ConfigError, DownloadError, MissingFileError

BUILTIN = {
    "metr-la": 207, "pems-bay": 325, "pems03": 358, "pems04": 307, "pems07": 883,
    "pems08": 170, "pemsd7m": 228, "largest-sd": 716, "largest-gba": 2352,
    "largest-gla": 3834, "largest-ca": 8600,
}
REQUIRED = ("name", "description", "files", "sensors", "interval", "channels", "null_value",
            "format", "graph", "citation", "source")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("STGRAPH_MANIFESTS", raising=False)
    monkeypatch.delenv("STGRAPH_DATA", raising=False)


@pytest.fixture(scope="module")
def week_files():
    """Bytes of the real METR-LA week files (skips when the shared data are absent)."""
    from stgraph.shared_data import shared_data_dir

    root = shared_data_dir()
    folder = None if root is None else root / "metr-la-week"
    if folder is None or not (folder / "metr-la-week.h5").is_file():
        import os
        msg = "real data metr-la-week not found beside the project (../shared/data)"
        if os.environ.get("STGRAPH_REQUIRE_SHARED_DATA"):
            pytest.fail(msg + " and STGRAPH_REQUIRE_SHARED_DATA is set")
        pytest.skip(msg)
    return {"/metr-la-week.h5": (folder / "metr-la-week.h5").read_bytes(),
            "/adj_mx.pkl": (folder / "adj_mx.pkl").read_bytes()}


@pytest.fixture
def server(week_files, local_server):
    """The local HTTP server (conftest) serving the real week files."""
    with local_server(week_files) as srv:
        yield srv


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dl(url, dest, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("timeout", 10)
    kw.setdefault("backoff", 0.0)
    return download(url, dest, **kw)


# ----------------------------------------------------------------- download
def test_full_download_verified(server, week_files, tmp_path):
    want = week_files["/metr-la-week.h5"]
    dest = tmp_path / "sub" / "metr-la-week.h5"
    out = _dl(server.base + "/metr-la-week.h5", dest, sha256=_sha(want))
    assert out == dest
    assert dest.read_bytes() == want
    assert sha256_file(dest) == _sha(want)
    assert not dest.with_name(dest.name + ".part").exists()
    assert server.state.log == [("/metr-la-week.h5", None)]


def test_cut_download_resumes_with_range_and_verifies(server, week_files, tmp_path):
    want = week_files["/metr-la-week.h5"]
    server.state.cut_once.add("/metr-la-week.h5")
    dest = tmp_path / "metr-la-week.h5"
    _dl(server.base + "/metr-la-week.h5", dest, sha256=_sha(want), retries=2)
    assert dest.read_bytes() == want
    log = server.state.log
    assert len(log) == 2 and log[0][1] is None
    m = re.fullmatch(r"bytes=(\d+)-", log[1][1] or "")
    assert m and 0 < int(m.group(1)) < len(want)


def test_cut_download_without_retries_keeps_part_then_resumes(server, week_files, tmp_path):
    want = week_files["/adj_mx.pkl"]
    server.state.cut_once.add("/adj_mx.pkl")
    dest = tmp_path / "adj_mx.pkl"
    part = tmp_path / "adj_mx.pkl.part"
    with pytest.raises(DownloadError, match="resume"):
        _dl(server.base + "/adj_mx.pkl", dest, sha256=_sha(want), retries=0)
    assert not dest.exists()
    assert 0 < part.stat().st_size < len(want)
    have = part.stat().st_size
    _dl(server.base + "/adj_mx.pkl", dest, sha256=_sha(want), retries=0)
    assert dest.read_bytes() == want and not part.exists()
    assert server.state.log[-1] == ("/adj_mx.pkl", f"bytes={have}-")


def test_server_ignoring_range_restarts_from_zero(server, week_files, tmp_path):
    want = week_files["/adj_mx.pkl"]
    server.state.no_range.add("/adj_mx.pkl")
    dest = tmp_path / "adj_mx.pkl"
    (tmp_path / "adj_mx.pkl.part").write_bytes(b"\x00" * 1000)  # stale bytes: must not survive
    _dl(server.base + "/adj_mx.pkl", dest, sha256=_sha(want))
    assert dest.read_bytes() == want
    assert server.state.log == [("/adj_mx.pkl", "bytes=1000-")]


def test_oversized_part_gets_416_and_restarts(server, week_files, tmp_path):
    want = week_files["/adj_mx.pkl"]
    dest = tmp_path / "adj_mx.pkl"
    (tmp_path / "adj_mx.pkl.part").write_bytes(b"\x00" * (len(want) + 10))
    _dl(server.base + "/adj_mx.pkl", dest, sha256=_sha(want), retries=1)
    assert dest.read_bytes() == want


def test_corrupted_download_detected_and_not_used(server, week_files, tmp_path):
    want = week_files["/adj_mx.pkl"]
    server.state.corrupt.add("/adj_mx.pkl")
    dest = tmp_path / "adj_mx.pkl"
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        _dl(server.base + "/adj_mx.pkl", dest, sha256=_sha(want))
    assert _sha(want) in str(info.value) and str(dest) in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "adj_mx.pkl.part").exists()
    assert (tmp_path / "adj_mx.pkl.corrupt").exists()  # kept aside for inspection, never used
    # a later good download starts clean and succeeds
    server.state.corrupt.clear()
    _dl(server.base + "/adj_mx.pkl", dest, sha256=_sha(want))
    assert dest.read_bytes() == want


def test_redirect_to_file_url_refused(server, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("local file that must not be read")
    server.state.redirects["/evil"] = secret.as_uri()
    dest = tmp_path / "out" / "x.bin"
    with pytest.raises(DownloadError, match="redirect") as info:
        _dl(server.base + "/evil", dest, retries=0)
    assert "file" in str(info.value)
    assert not dest.exists() and not dest.with_name("x.bin.part").exists()


def test_http_redirect_followed(server, week_files, tmp_path):
    server.state.redirects["/moved"] = server.base + "/adj_mx.pkl"
    dest = tmp_path / "adj_mx.pkl"
    _dl(server.base + "/moved", dest, sha256=_sha(week_files["/adj_mx.pkl"]))
    assert dest.read_bytes() == week_files["/adj_mx.pkl"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,hello",
                                 "/etc/passwd", "127.0.0.1/x"])
def test_non_http_urls_refused(url, tmp_path):
    with pytest.raises(DownloadError, match="http"):
        _dl(url, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_html_page_instead_of_file_refused(server, tmp_path):
    server.state.html.add("/drive")
    with pytest.raises(DownloadError, match="HTML"):
        _dl(server.base + "/drive", tmp_path / "metr-la.h5", retries=0)
    assert not (tmp_path / "metr-la.h5").exists()


def test_http_error_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        _dl(server.base + "/nope.h5", tmp_path / "nope.h5", retries=0)


def test_git_lfs_pointer_refused(server, tmp_path):
    server.state.files["/lfs.npz"] = (b"version https://git-lfs.github.com/spec/v1\n"
                                      b"oid sha256:abc\nsize 123\n")
    with pytest.raises(DownloadError, match="LFS"):
        _dl(server.base + "/lfs.npz", tmp_path / "lfs.npz")
    assert not (tmp_path / "lfs.npz").exists()


# ------------------------------------------------------------------ extract
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


@pytest.mark.parametrize("member", ["../x", "a/../../x", "/abs/x", "..\\x"])
def test_zip_slip_refused(tmp_path, member):
    arch = _zip(tmp_path / "evil.zip", {"ok.txt": b"fine", member: b"escaped"})
    target = tmp_path / "target"
    with pytest.raises(DownloadError, match="outside|refusing"):
        extract(arch, target)
    assert not (tmp_path / "x").exists()
    assert not any(target.rglob("*"))  # checked before anything is written


def test_tar_dotdot_member_refused(tmp_path):
    arch = _tar(tmp_path / "evil.tar.gz", [tarfile.TarInfo("ok.txt"), tarfile.TarInfo("../x")],
                {"ok.txt": b"fine", "../x": b"escaped"})
    target = tmp_path / "target"
    with pytest.raises(DownloadError, match="outside"):
        extract(arch, target)
    assert not (tmp_path / "x").exists() and not any(target.rglob("*"))


def test_tar_absolute_member_refused(tmp_path):
    arch = _tar(tmp_path / "evil.tar.gz", [tarfile.TarInfo(str(tmp_path / "abs.txt"))],
                {str(tmp_path / "abs.txt"): b"x"})
    with pytest.raises(DownloadError):
        extract(arch, tmp_path / "target")
    assert not (tmp_path / "abs.txt").exists()


@pytest.mark.parametrize("link", ["../../outside", "/etc/passwd"])
def test_tar_symlink_out_refused(tmp_path, link):
    info = tarfile.TarInfo("data/link")
    info.type = tarfile.SYMTYPE
    info.linkname = link
    arch = _tar(tmp_path / "evil.tar.gz", [info])
    with pytest.raises(DownloadError, match="link"):
        extract(arch, tmp_path / "target")
    assert not (tmp_path / "target" / "data" / "link").exists()


def test_tar_hardlink_out_refused(tmp_path):
    info = tarfile.TarInfo("hard")
    info.type = tarfile.LNKTYPE
    info.linkname = "../../etc/passwd"
    arch = _tar(tmp_path / "evil.tar.gz", [info])
    with pytest.raises(DownloadError, match="link"):
        extract(arch, tmp_path / "target")


def test_safe_archives_extract(tmp_path):
    z = _zip(tmp_path / "ok.zip", {"PeMS-M/V.csv": b"1,2\n", "PeMS-M/W.csv": b"0,1\n1,0\n"})
    out = extract(z, tmp_path / "z")
    assert sorted(p.name for p in out) == ["V.csv", "W.csv"]
    assert (tmp_path / "z" / "PeMS-M" / "V.csv").read_bytes() == b"1,2\n"
    inner = tarfile.TarInfo("d/link")
    inner.type = tarfile.SYMTYPE
    inner.linkname = "f.txt"  # a link that stays inside is fine
    t = _tar(tmp_path / "ok.tar.gz", [tarfile.TarInfo("d/f.txt"), inner], {"d/f.txt": b"hi"})
    extract(t, tmp_path / "t")
    assert (tmp_path / "t" / "d" / "f.txt").read_bytes() == b"hi"


# ---------------------------------------------------------------- manifests
def test_builtin_manifests_parse_with_required_fields():
    import yaml

    names = list_datasets()
    assert set(BUILTIN) <= set(names)
    folder = builtin_manifest_dir()
    assert folder.name == "datasets" and folder in manifest_dirs()
    for name, sensors in BUILTIN.items():
        m = get_manifest(name)
        raw = yaml.safe_load(m.path.read_text())
        missing = [k for k in REQUIRED if k not in raw]
        assert not missing, f"{m.path}: missing {missing}"
        assert m.path.parent == folder and m.path.stem == name
        assert m.sensors == sensors
        assert m.citation and m.source.startswith("https://")
        assert m.data_file in [e.name for e in m.entries()]
        m.entry(m.graph.file)
        for f in m.files:
            assert f.urls or (f.manual and (f.page or f.instructions)), f"{name}: {f.name}"
            assert all(u.startswith(("http://", "https://")) for u in f.urls)
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        if m.format in ("npz", "csv"):
            assert m.start is not None, f"{name}: a file without timestamps needs 'start'"
    assert get_manifest("pems04").start.startswith("2018-01-01")
    assert get_manifest("pems08").start.startswith("2016-07-01")
    assert get_manifest("pems03").start.startswith("2018-09-01")
    assert get_manifest("pems07").start.startswith("2017-05-01")
    assert get_manifest("pemsd7m").calendar == "weekdays"


@pytest.mark.parametrize("alias,name", [
    ("METR-LA", "metr-la"), ("metr_la", "metr-la"), ("MetrLA", "metr-la"),
    ("PEMS-BAY", "pems-bay"), ("pems_bay", "pems-bay"), ("PEMS04", "pems04"),
    ("pems_08", "pems08"), ("PeMSD7(M)", "pemsd7m"), ("LargeST-SD", "largest-sd"),
    ("largest_gla", "largest-gla"), (" pems03 ", "pems03"),
])
def test_aliases_case_insensitive(alias, name):
    assert get_manifest(alias).name == name


def test_unknown_name_suggests_nearest():
    with pytest.raises(ConfigError) as info:
        get_manifest("metr-lb")
    msg = str(info.value)
    assert "did you mean 'metr-la'" in msg and "STGRAPH_MANIFESTS" in msg
    with pytest.raises(ConfigError, match="pems08"):
        get_manifest("pems-8x")


_GOOD = {
    "name": "tiny", "description": "d", "format": "npz", "sensors": 2, "interval": "5min",
    "start": "2020-01-01", "channels": ["flow"], "null_value": 0.0, "citation": "c",
    "source": "https://example.org",
    "files": [{"name": "tiny.npz", "role": "data", "urls": ["https://example.org/tiny.npz"]},
              {"name": "tiny.csv", "role": "graph", "urls": ["https://example.org/tiny.csv"]}],
    "graph": {"method": "distances", "file": "tiny.csv"},
}


@pytest.mark.parametrize("change,field_name", [
    ({"sensors": "many"}, "sensors"),
    ({"format": "parquet"}, "format"),
    ({"interval": "often"}, "interval"),
    ({"null_value": "none"}, "null_value"),
    ({"files": [{"name": "tiny.npz", "role": "data", "sha256": "abc",
                 "urls": ["https://e.org/x"]}]}, "files[0].sha256"),
    ({"files": [{"name": "tiny.npz", "role": "data", "urls": ["file:///etc/passwd"]}]},
     "files[0].urls[0]"),
    ({"files": [{"name": "../tiny.npz", "role": "data", "urls": ["https://e.org/x"]}]},
     "files[0].name"),
    ({"files": [{"name": "tiny.npz", "role": "weights", "urls": ["https://e.org/x"]}]},
     "files[0].role"),
    ({"files": [{"name": "tiny.npz", "role": "data"}]}, "files[0].urls"),
    ({"graph": {"method": "magic", "file": "tiny.csv"}}, "graph.method"),
    ({"graph": {"method": "distances", "file": "other.csv"}}, "graph.file"),
    ({"colour": "blue"}, "colour"),
])
def test_manifest_validation_names_field(tmp_path, change, field_name):
    data = {**_GOOD, **change}
    with pytest.raises(ConfigError) as info:
        parse_manifest(data, tmp_path / "tiny.yaml")
    msg = str(info.value)
    assert str(tmp_path / "tiny.yaml") in msg and field_name in msg


@pytest.mark.parametrize("change,message", [
    ({"channels": ["flow", " "]},
     "field 'channels': found ['flow', ' '] (list); expected a list of non-empty strings. Fix the manifest"),
    ({"channels": []}, "field 'channels': found [] (list); expected at least one channel name. Fix the manifest"),
    ({"graph": {"method": "distances", "file": "tiny.csv", "sigma": -1.0}},
     "field 'graph.sigma': found -1.0 (float); expected a positive number or null (null: the std of the "
     "distances). Fix the manifest"),
    ({"graph": {"method": "distances", "file": "tiny.csv", "sigma": float("inf")}},
     "field 'graph.sigma': found inf (float); expected a finite number. Fix the manifest"),
    ({"null_value": True}, "field 'null_value': found True (bool); expected a number such as 0.0, or 'nan'. "
                           "Use 0.0 when a dead detector reads 0, 'nan' when missing readings are NaN"),
    ({"descriptoin": "d"}, "unknown field(s) ['descriptoin'] in '<top level>' (did you mean 'description'?)"),
    ({"graph": {"file": "tiny.csv"}}, "required field 'graph.method' is missing; expected one of ['adj-pickle', "
                                      "'distances', 'distance-matrix', 'adj-npy']. Add it to the manifest"),
    ({"files": [{"name": "tiny.npz", "role": "data", "urls": ["https://e.org/x"], "sha256": None,
                 "verified": True}, _GOOD["files"][1]]},
     "field 'files[0].verified': found True (bool); expected false while sha256 is null"),
])
def test_manifest_schema_messages(tmp_path, change, message):
    with pytest.raises(ConfigError) as info:
        parse_manifest({**_GOOD, **change}, tmp_path / "tiny.yaml")
    assert str(info.value).startswith(f"'{tmp_path / 'tiny.yaml'}': ") and message in str(info.value)


def test_manifest_interval_uses_the_one_parser(tmp_path):
    m = parse_manifest({**_GOOD, "interval": " 15MIN "}, tmp_path / "tiny.yaml")
    assert m.interval == "15MIN"
    import datetime
    m = parse_manifest({**_GOOD, "start": datetime.date(2020, 1, 2)}, tmp_path / "tiny.yaml")  # YAML's date
    assert m.start == "2020-01-02"
    files = [{**_GOOD["files"][0], "page": None, "notes": None}, _GOOD["files"][1]]  # null optional fields
    assert parse_manifest({**_GOOD, "files": files, "key": None}, tmp_path / "tiny.yaml").files[0].page is None


def test_manifest_missing_field_and_bad_yaml(tmp_path):
    data = {k: v for k, v in _GOOD.items() if k != "citation"}
    with pytest.raises(ConfigError, match="'citation' is missing"):
        parse_manifest(data, tmp_path / "tiny.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nfiles: [\n  - oops: : :\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*not valid YAML at line"):
        load_manifest(bad)
    assert parse_manifest(_GOOD, tmp_path / "tiny.yaml").name == "tiny"


# ---------------------------------------------------------------- fetch/load
def _write_week_manifest(folder: Path, base: str, week_files, *, sha=True) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "name": "metr-la-week", "aliases": ["metr_la_week"],
        "description": "one week of METR-LA served by the test server",
        "format": "pandas-h5", "key": "df", "sensors": 207, "steps": 2016, "interval": "5min",
        "channels": ["speed"], "null_value": 0.0, "citation": "DCRNN, ICLR 2018",
        "source": "https://github.com/liyaguang/DCRNN",
        "files": [
            {"name": "metr-la-week.h5", "role": "data", "urls": [base + "/metr-la-week.h5"],
             "sha256": _sha(week_files["/metr-la-week.h5"]) if sha else None},
            {"name": "adj_mx.pkl", "role": "graph",
             "urls": [base + "/missing-mirror.pkl", base + "/adj_mx.pkl"],
             "sha256": _sha(week_files["/adj_mx.pkl"]) if sha else None},
        ],
        "graph": {"method": "adj-pickle", "file": "adj_mx.pkl"},
    }
    path = folder / "metr-la-week.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _need_io_and_graph():
    try:
        from stgraph.graph import from_adj_pickle  # noqa: F401
        from stgraph.io import read_series  # noqa: F401
    except ImportError as e:  # pragma: no cover - modules written in parallel
        pytest.skip(f"stgraph.io.read_series / stgraph.graph.from_adj_pickle not available yet: {e}")


def test_load_downloads_from_local_server(server, week_files, tmp_path, monkeypatch):
    _need_io_and_graph()
    _write_week_manifest(tmp_path / "manifests", server.base, week_files)
    monkeypatch.setenv("STGRAPH_MANIFESTS", str(tmp_path / "manifests"))
    assert "metr-la-week" in list_datasets() and "metr-la" in list_datasets()
    root = tmp_path / "cache"
    ds = load("METR_LA_WEEK", root, progress=False, timeout=10, retries=0)
    assert isinstance(ds, Dataset) and ds.name == "metr-la-week"
    assert len(ds.series.sensor_ids) == 207 and ds.series.values.shape[1] == 207
    assert ds.graph.number_of_nodes() == 207
    assert set(ds.graph.nodes) == set(ds.series.sensor_ids)
    assert ds.paths["metr-la-week.h5"] == root / "metr-la-week" / "metr-la-week.h5"
    assert ds.paths["adj_mx.pkl"].read_bytes() == week_files["/adj_mx.pkl"]
    series, graph = ds  # unpacks as a pair
    assert series is ds.series and graph is ds.graph
    requested = [p for p, _ in server.state.log]
    assert requested.count("/missing-mirror.pkl") == 1  # first URL failed, second used
    # cached and verified: a second load downloads nothing
    n = len(server.state.log)
    again = load("metr-la-week", root, download=False, progress=False)
    assert len(server.state.log) == n
    assert np.array_equal(again.series.values, ds.series.values)


def test_fetch_returns_paths_and_replaces_corrupt_local_copy(server, week_files, tmp_path):
    man = tmp_path / "manifests"
    _write_week_manifest(man, server.base, week_files)
    root = tmp_path / "cache"
    folder = root / "metr-la-week"
    folder.mkdir(parents=True)
    (folder / "adj_mx.pkl").write_bytes(b"not the pickle")
    paths = fetch("metr-la-week", root, manifests=man, progress=False, timeout=10, retries=0)
    assert set(paths) == {"metr-la-week.h5", "adj_mx.pkl"}
    assert paths["adj_mx.pkl"].read_bytes() == week_files["/adj_mx.pkl"]
    assert (folder / "adj_mx.pkl.corrupt").read_bytes() == b"not the pickle"


def test_local_file_failing_checksum_without_download(server, week_files, tmp_path):
    man = tmp_path / "manifests"
    _write_week_manifest(man, server.base, week_files)
    folder = tmp_path / "cache" / "metr-la-week"
    folder.mkdir(parents=True)
    (folder / "metr-la-week.h5").write_bytes(b"garbage")
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        fetch("metr-la-week", tmp_path / "cache", manifests=man, download=False)
    assert str(folder / "metr-la-week.h5") in str(info.value)


def test_load_without_files_and_no_download_names_the_path(week_files, tmp_path):
    man = tmp_path / "manifests"
    _write_week_manifest(man, "https://example.invalid", week_files)
    root = tmp_path / "empty-cache"
    with pytest.raises(MissingFileError) as info:
        load("metr-la-week", root, manifests=man, download=False)
    msg = str(info.value)
    assert str(root / "metr-la-week" / "metr-la-week.h5") in msg
    assert str(root / "metr-la-week" / "adj_mx.pkl") in msg
    assert "https://example.invalid/metr-la-week.h5" in msg and "download=False" in msg
    assert not root.exists()  # nothing is created when not downloading


def test_builtin_manual_file_error_says_where_to_get_it(tmp_path):
    with pytest.raises(MissingFileError) as info:
        fetch("metr-la", tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path / "metr-la" / "metr-la.h5") in msg
    assert "drive.google.com" in msg and "DCRNN" in msg


def test_failed_downloads_listed_in_missing_error(server, week_files, tmp_path):
    import yaml

    man = tmp_path / "manifests"
    path = _write_week_manifest(man, server.base, week_files)
    data = yaml.safe_load(path.read_text())
    data["files"][0]["urls"] = [server.base + "/gone.h5"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(MissingFileError) as info:
        fetch("metr-la-week", tmp_path / "cache", manifests=man, progress=False, timeout=10,
              retries=0)
    assert "404" in str(info.value) and "gone.h5" in str(info.value)


def test_stgraph_data_env_is_default_root(tmp_path, monkeypatch):
    from stgraph.datasets import dataset_dir, default_root

    monkeypatch.setenv("STGRAPH_DATA", str(tmp_path / "data"))
    assert default_root() == tmp_path / "data"
    assert dataset_dir("largest-sd") == tmp_path / "data" / "largest"
    monkeypatch.delenv("STGRAPH_DATA")
    assert default_root() == Path.home() / ".cache" / "stgraph"


# -------------------------------------------- the other readers, on small files
def _manifest(folder: Path, data: dict) -> Path:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_load_npz_with_distance_table(tmp_path, shared_graphs_dir):
    _need_io_and_graph()
    rng = np.random.default_rng(0)
    folder = tmp_path / "cache" / "pems08-mini"
    folder.mkdir(parents=True)
    np.savez(folder / "PEMS08.npz", data=rng.random((24, 170, 3)).astype(np.float32))
    (folder / "PEMS08.csv").write_bytes((shared_graphs_dir / "pems08_distance.csv").read_bytes())
    assert get_manifest("pems08").start.startswith("2016-07-01")
    _manifest(tmp_path / "man", {
        "name": "pems08-mini", "description": "24 steps of random PEMS08-shaped data",
        "format": "npz", "key": "data", "sensors": 170, "interval": "5min",
        "start": "2016-07-01 00:00:00", "channels": ["flow", "occupancy", "speed"],
        "null_value": 0.0, "citation": "ASTGCN", "source": "https://github.com/guoshnBJTU/ASTGNN",
        "files": [{"name": "PEMS08.npz", "role": "data", "urls": ["https://example.invalid/a"]},
                  {"name": "PEMS08.csv", "role": "graph", "urls": ["https://example.invalid/b"]}],
        "graph": {"method": "distances", "file": "PEMS08.csv", "kernel": "binary"},
    })
    ds = load("pems08-mini", tmp_path / "cache", manifests=tmp_path / "man", download=False)
    assert ds.series.values.shape == (24, 170, 3)
    assert ds.series.channels == ["flow", "occupancy", "speed"]
    assert str(ds.series.timestamps[0]).startswith("2016-07-01T00:00")
    assert str(ds.series.timestamps[1]).startswith("2016-07-01T00:05")
    assert ds.graph.number_of_nodes() == 170 and ds.graph.number_of_edges() > 0
    assert {d["weight"] for *_, d in ds.graph.edges(data=True)} == {1.0}


def test_load_zip_archive_weekday_calendar_and_distance_matrix(server, tmp_path):
    _need_io_and_graph()
    n, per_day, days = 4, 288, 2
    rng = np.random.default_rng(1)
    v = rng.uniform(20, 70, (per_day * days, n))
    w = np.array([[0, 1000, 5000, 9000], [1000, 0, 1500, 7000], [5000, 1500, 0, 800],
                  [9000, 7000, 800, 0]], dtype=float)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("PeMS-M/V_4.csv", "\n".join(",".join(f"{x:.2f}" for x in r) for r in v))
        zf.writestr("PeMS-M/W_4.csv", "\n".join(",".join(f"{x:.1f}" for x in r) for r in w))
    server.state.files["/PeMS-M.zip"] = buf.getvalue()
    _manifest(tmp_path / "man", {
        "name": "pemsd7-mini", "description": "two weekdays of a 4-station PeMSD7(M)-like set",
        "format": "csv", "header": False, "sensors": n, "interval": "5min",
        "start": "2012-05-04 00:00:00", "calendar": "weekdays", "channels": ["speed"],
        "null_value": "nan", "citation": "STGCN", "source": "https://github.com/VeritasYin/STGCN_IJCAI-18",
        "files": [{"name": "PeMS-M.zip", "role": "archive", "urls": [server.base + "/PeMS-M.zip"],
                   "sha256": _sha(buf.getvalue()),
                   "members": [{"name": "PeMS-M/V_4.csv", "role": "data"},
                               {"name": "PeMS-M/W_4.csv", "role": "graph"}]}],
        "graph": {"method": "distance-matrix", "file": "PeMS-M/W_4.csv", "kernel": "gaussian",
                  "sigma": 3162.2777, "threshold": 0.5},
    })
    ds = load("pemsd7-mini", tmp_path / "cache", manifests=tmp_path / "man", progress=False,
              timeout=10, retries=0)
    assert ds.series.values.shape == (per_day * days, n, 1)
    np.testing.assert_allclose(ds.series.values[:, :, 0], v, atol=0.006)
    ts = ds.series.timestamps
    assert str(ts[0]).startswith("2012-05-04T00:00")      # a Friday
    assert str(ts[per_day]).startswith("2012-05-07T00:00")  # the weekend is skipped
    # STGCN kernel: exp(-(d/1e4)^2/0.1) >= 0.5 keeps d = 800, 1000 and 1500 only
    edges = {(a, b) for a, b in ds.graph.edges}
    assert edges == {("0", "1"), ("1", "0"), ("1", "2"), ("2", "1"), ("2", "3"), ("3", "2")}
    assert ds.graph["0"]["1"]["weight"] == pytest.approx(np.exp(-0.1), rel=1e-4)
    assert ds.paths["PeMS-M/V_4.csv"].is_file()
    # members already unpacked: the archive is not needed again
    n_req = len(server.state.log)
    fetch("pemsd7-mini", tmp_path / "cache", manifests=tmp_path / "man", download=False)
    assert len(server.state.log) == n_req


def test_load_subset_with_adjacency_npy(tmp_path):
    _need_io_and_graph()
    pd = pytest.importorskip("pandas")
    pytest.importorskip("tables")
    folder = tmp_path / "cache" / "largest"
    folder.mkdir(parents=True)
    ids = ["1001", "1002", "1003", "1004"]
    idx = pd.date_range("2019-01-01", periods=12, freq="5min")
    frame = pd.DataFrame(np.arange(48, dtype=float).reshape(12, 4), index=idx, columns=ids)
    frame.iloc[3, 1] = np.nan
    frame.to_hdf(folder / "ca_his_raw_2019.h5", key="t", mode="w")
    (folder / "ca_meta.csv").write_text(
        "ID,Lat,Lng,District,ID2\n1001,1,1,7,0\n1002,1,1,11,1\n1003,1,1,4,2\n1004,1,1,11,3\n")
    adj = np.array([[1, .5, 0, 0], [.5, 1, 0, .7], [0, 0, 1, .2], [0, .9, .2, 1]])
    np.save(folder / "ca_rn_adj.npy", adj)
    sd = yaml_load(Path(get_manifest("largest-sd").path))
    sd["name"] = "largest-mini"
    sd["sensors"] = 2
    sd["steps"] = 12
    _manifest(tmp_path / "man", sd)
    ds = load("largest-mini", tmp_path / "cache", manifests=tmp_path / "man", download=False)
    assert ds.series.sensor_ids == ["1002", "1004"]
    assert np.isnan(ds.series.values[3, 0, 0])  # null_value nan keeps the NaN
    np.testing.assert_array_equal(ds.series.values[:, 1, 0], frame["1004"].to_numpy())
    assert {(a, b): d["weight"] for a, b, d in ds.graph.edges(data=True)} == {
        ("1002", "1004"): 0.7, ("1004", "1002"): 0.9}


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_sensor_count_mismatch_is_reported(server, week_files, tmp_path):
    _need_io_and_graph()
    import yaml

    man = tmp_path / "manifests"
    path = _write_week_manifest(man, server.base, week_files)
    data = yaml.safe_load(path.read_text())
    data["sensors"] = 208
    path.write_text(yaml.safe_dump(data))
    from stgraph.errors import DataFormatError
    with pytest.raises(DataFormatError, match="207 sensors.*expects 208"):
        load("metr-la-week", tmp_path / "cache", manifests=man, progress=False, timeout=10,
             retries=0)


def test_load_needs_only_the_files_it_reads(server, week_files, tmp_path):
    _need_io_and_graph()
    import yaml

    man = tmp_path / "manifests"
    path = _write_week_manifest(man, server.base, week_files)
    data = yaml.safe_load(path.read_text())
    data["files"].append({"name": "graph_sensor_locations.csv", "role": "locations",
                          "urls": [server.base + "/locations-gone.csv"]})
    path.write_text(yaml.safe_dump(data))
    ds = load("metr-la-week", tmp_path / "cache", manifests=man, progress=False, timeout=10,
              retries=0)
    assert "graph_sensor_locations.csv" not in ds.paths
    assert "/locations-gone.csv" not in [p for p, _ in server.state.log]
    with pytest.raises(MissingFileError, match="graph_sensor_locations.csv"):
        fetch("metr-la-week", tmp_path / "cache", manifests=man, progress=False, timeout=10,
              retries=0)
    with pytest.raises(ConfigError, match="not files of metr-la-week"):
        fetch("metr-la-week", tmp_path / "cache", manifests=man, files=["nope.h5"])


def test_range_header_survives_redirect(server, week_files, tmp_path):
    want = week_files["/adj_mx.pkl"]
    server.state.redirects["/moved.pkl"] = server.base + "/adj_mx.pkl"
    (tmp_path / "adj_mx.pkl.part").write_bytes(want[:500])
    _dl(server.base + "/moved.pkl", tmp_path / "adj_mx.pkl", sha256=_sha(want))
    assert (tmp_path / "adj_mx.pkl").read_bytes() == want
    assert server.state.log == [("/moved.pkl", "bytes=500-"), ("/adj_mx.pkl", "bytes=500-")]
