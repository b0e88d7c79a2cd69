"""Bad input gets a clear error: one test case per bad input, checking what the message says.

Sections, one per failure mode:

1. files   -- missing, empty, truncated or corrupted HDF5, unknown layouts, npz without
              ``data``, CSV with ragged rows / text / no sensors / wrong encoding, ...
2. series  -- timestamps duplicated, unsorted or irregular, NaN/inf, dead sensors,
              too short for one window, more sensors than the graph, ...
3. graphs  -- ids not matching the series, self loops only, empty, bad weights,
              distance tables naming unknown sensors, ...
4. configs -- unknown keys (nearest key suggested), wrong types, impossible values,
              a run directory holding a different run, ...
4b. fit    -- data that do not fit a run (predict, evaluate, drift, update): another interval,
              other sensors or channels, older data, windows over a gap or without a reading,
              ``--at`` with a UTC offset; drift settings refused where they are parsed.
5. properties (hypothesis) -- random shapes, nulls, lengths and bytes raise only the
              package's own errors, and every window lies inside its split.

Every case goes through the command line too where an analyst would meet it: the
failure is one ``error: ...`` line on stderr, exit status 2, no traceback. Each case
asserts the message names the file or field, what was found and what was expected.
"""
from __future__ import annotations

import gzip
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stgraph.cli.main import main as cli_main
from stgraph.config import RunConfig, apply_override, load_config
from stgraph.data import ForecastData, WindowIndex, make_split
from stgraph.errors import (ConfigError, DataFormatError, GraphError, MissingFileError, SeriesError,
                            StgraphError, StgraphWarning)
from stgraph.graph import read_graph, to_pyg, write_graph
from stgraph.io import Series, read_series, write_series

T0 = np.datetime64("2020-01-01T00:00", "ns")
FIVE = np.timedelta64(5, "m")
HEADER = "timestamp,a,b,c\n"


def _rows(n: int, start: int = 0, step_min: int = 5) -> str:
    return "".join(f"2020-01-01 {(start + i * step_min) // 60:02d}:{(start + i * step_min) % 60:02d},"
                   f"{50 + i % 7},{40 + i % 5},{30 + i % 3}\n" for i in range(n))


def _series(T=40, N=4, null=0.0, values=None, ts=None, ids=None, source=None) -> Series:
    v = np.random.default_rng(T + N).uniform(20, 70, (T, N, 1)) if values is None else values
    return Series(v, T0 + np.arange(T) * FIVE if ts is None else ts, ids or list("abcd")[:N] or None,
                  ["speed"], null, source)


def _cli(capsys, *args) -> str:
    """Run the CLI in-process; assert a one-line error and exit status 2; return the line."""
    rc = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == 2, f"rc={rc}\nstdout={out}\nstderr={err}"
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _has(text: str, *needles: str) -> None:
    missing = [n for n in needles if n not in text]
    assert not missing, f"{missing} not in message:\n{text}"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """12 sensors x 3 days, METR-LA layout (series, adj pickle, distance table, ids)."""
    from stgraph.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("bad_inputs_synth"), num_sensors=12, days=3, seed=0)


# ==================================================================================== 1. files
def _valid_h5(path: Path, T: int = 200, N: int = 20, layout: str = "plain") -> Path:
    return write_series(_series(T=T, N=N, ids=[f"s{i}" for i in range(N)]), path, layout=layout)


def f_missing(d):
    return d / "nope.h5"


def f_empty(d):
    (d / "empty.h5").write_bytes(b"")
    return d / "empty.h5"


def f_truncated_h5(d):
    full = _valid_h5(d / "full.h5").read_bytes()
    (d / "cut.h5").write_bytes(full[: len(full) // 3])
    return d / "cut.h5"


def f_garbage_h5(d):
    (d / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(0).bytes(4000))
    return d / "garbage.h5"


def f_damaged_frame(d):
    """A pandas-layout file whose object headers were overwritten (h5py raises RuntimeError)."""
    raw = bytearray(_valid_h5(d / "frame.h5", layout="pandas").read_bytes())
    i = int(len(raw) * 0.1)
    raw[i:i + 512] = b"\xff" * 512
    (d / "damaged.h5").write_bytes(bytes(raw))
    return d / "damaged.h5"


def f_unknown_layout(d):
    with h5py.File(d / "other.h5", "w") as f:
        f.create_dataset("speed", data=np.ones((20, 3)))
        f.create_group("meta").create_dataset("ids", data=np.array([b"x", b"y", b"z"]))
    return d / "other.h5"


def f_h5_empty_container(d):
    h5py.File(d / "hollow.h5", "w").close()
    return d / "hollow.h5"


def f_npz_no_data(d):
    np.savez(d / "pems.npz", speed=np.ones((6, 2)), ids=np.arange(2))
    return d / "pems.npz"


def f_npz_truncated(d):
    np.savez(d / "full.npz", data=np.ones((50, 4, 3)))
    blob = (d / "full.npz").read_bytes()
    (d / "cut.npz").write_bytes(blob[: len(blob) // 2])
    return d / "cut.npz"


def f_npz_text(d):
    np.savez(d / "text.npz", data=np.array([["1", "2"], ["3", "x"]]))
    return d / "text.npz"


def f_npz_1d(d):
    np.savez(d / "flat.npz", data=np.arange(5.0))
    return d / "flat.npz"


def f_npz_overflow(d):
    data = np.full((6, 3), 50.0)
    data[2, 1] = 1e300
    np.savez(d / "huge.npz", data=data)
    return d / "huge.npz"


def f_xlsx(d):
    with zipfile.ZipFile(d / "speeds.xlsx", "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
        zf.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return d / "speeds.xlsx"


def f_zip_of_csv(d):
    with zipfile.ZipFile(d / "metr-la.zip", "w") as zf:
        zf.writestr("metr-la/speed.csv", HEADER + _rows(3))
    return d / "metr-la.zip"


def f_gzip(d):
    (d / "speed.csv.gz").write_bytes(gzip.compress((HEADER + _rows(3)).encode()))
    return d / "speed.csv.gz"


def f_pickle_as_series(d):
    (d / "adj_mx.pkl").write_bytes(pickle.dumps([["a", "b"], {"a": 0, "b": 1}, np.eye(2)], protocol=2))
    return d / "adj_mx.pkl"


def f_directory(d):
    (d / "folder.h5").mkdir()
    return d / "folder.h5"


def f_csv_ragged(d):
    (d / "ragged.csv").write_text(HEADER + "2020-01-01 00:00,1,2,3\n2020-01-01 00:05,1,2\n")
    return d / "ragged.csv"


def f_csv_text(d):
    (d / "text.csv").write_text(HEADER + "2020-01-01 00:00,1,2,3\n2020-01-01 00:05,1,fast,3\n")
    return d / "text.csv"


def f_csv_no_sensors(d):
    (d / "times.csv").write_text("timestamp\n2020-01-01 00:00\n2020-01-01 00:05\n")
    return d / "times.csv"


def f_csv_utf16(d):
    (d / "unicode.csv").write_bytes((HEADER + _rows(3)).encode("utf-16"))
    return d / "unicode.csv"


def f_csv_cp1252(d):
    (d / "excel.csv").write_bytes(("timestamp,Stra\u00dfe 1,b\n" + "2020-01-01 00:00,1,2\n").encode("cp1252"))
    return d / "excel.csv"


def f_csv_only_delimiters(d):
    (d / "blank.csv").write_text(";;;\n;;;\n")
    return d / "blank.csv"


def f_csv_header_only(d):
    (d / "header.csv").write_text(HEADER)
    return d / "header.csv"


def f_npz_no_start(d):
    np.savez(d / "pems04.npz", data=np.ones((10, 3, 3)))
    return d / "pems04.npz"


# (id, builder, exception, message parts); CLI: stgraph data info PATH [--start --freq]
FILE_CASES = [
    ("missing file", f_missing, MissingFileError, ["nope.h5", "series file not found", "HDF5, .npz or CSV"]),
    ("empty file", f_empty, DataFormatError, ["empty.h5", "empty (0 bytes)", "expected an HDF5, .npz or CSV"]),
    ("truncated hdf5", f_truncated_h5, DataFormatError, ["cut.h5", "not a readable HDF5 file", "truncated"]),
    ("corrupted hdf5 bytes", f_garbage_h5, DataFormatError, ["garbage.h5", "truncated or corrupted"]),
    ("hdf5 damaged object headers", f_damaged_frame, DataFormatError, ["damaged.h5", "truncated or corrupted"]),
    ("hdf5 unknown layout", f_unknown_layout, DataFormatError,
     ["other.h5", "none of the known HDF5 layouts", "speed (20, 3) float64", "meta/ids (3,)",
      "pandas frame", "'values' [T, N, C]", "'speed' may hold the readings"]),
    ("hdf5 without any dataset", f_h5_empty_container, DataFormatError,
     ["hollow.h5", "an empty file (no groups, no datasets)", "Expected either a pandas frame"]),
    ("npz without data", f_npz_no_data, DataFormatError,
     ["pems.npz", "no array 'data'", "arrays found: ['speed', 'ids']", "key="]),
    ("truncated npz", f_npz_truncated, DataFormatError, ["cut.npz", "truncated or corrupted"]),
    ("npz of text", f_npz_text, DataFormatError, ["text.npz", "dtype <U1", "expected numeric sensor readings"]),
    ("npz 1-d array", f_npz_1d, DataFormatError, ["flat.npz", "shape (5,)", "[T, N, C] or [T, N]"]),
    ("npz value beyond float32", f_npz_overflow, DataFormatError,
     ["huge.npz", "value 1e+300 at step 2, sensor '1'", "float32 range"]),
    ("npz without start/freq", f_npz_no_start, DataFormatError,
     ["pems04.npz", "no timestamps", "no start and freq was given", "freq='5min'", "--start/--freq",
      "--set data.start="]),
    ("excel workbook", f_xlsx, DataFormatError, ["speeds.xlsx", "Excel workbook", "CSV UTF-8"]),
    ("zip of a csv", f_zip_of_csv, DataFormatError,
     ["metr-la.zip", "zip archive without numpy arrays", "metr-la/speed.csv", "Unzip"]),
    ("gzip file", f_gzip, DataFormatError, ["speed.csv.gz", "gzip-compressed", "gunzip"]),
    ("graph pickle as series", f_pickle_as_series, DataFormatError, ["adj_mx.pkl", "Python pickle", "--graph"]),
    ("directory", f_directory, DataFormatError, ["folder.h5", "is a directory", "expected a series file"]),
    ("csv ragged rows", f_csv_ragged, DataFormatError,
     ["ragged.csv", "line 3 has 3 fields but the header (line 1) has 4"]),
    ("csv text in numeric column", f_csv_text, DataFormatError,
     ["text.csv", "line 3, column 'b': 'fast' is not a number", "expected numeric readings"]),
    ("csv no sensor columns", f_csv_no_sensors, DataFormatError,
     ["times.csv", "no sensor columns", "'timestamp'", "one column per sensor"]),
    ("csv utf-16", f_csv_utf16, DataFormatError, ["unicode.csv", "UTF-16", "CSV UTF-8"]),
    ("csv cp1252", f_csv_cp1252, DataFormatError, ["excel.csv", "not UTF-8", "byte 0xdf", "line 1", "iconv"]),
    ("csv only delimiters", f_csv_only_delimiters, DataFormatError, ["blank.csv", "every line is empty"]),
    ("csv header only", f_csv_header_only, DataFormatError, ["header.csv", "only a header line, no data rows"]),
]


@pytest.mark.parametrize("builder, error, parts", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_series_file(tmp_path, capsys, builder, error, parts):
    path = builder(tmp_path)
    with pytest.raises(error) as info:
        read_series(path)
    assert isinstance(info.value, StgraphError)
    _has(str(info.value), str(path), *parts)
    _has(_cli(capsys, "data", "info", path), *parts)


def test_cli_error_from_the_installed_entry_point_is_one_line(tmp_path):
    """The real process: exit status 2, one line on stderr, no traceback, nothing on stdout."""
    proc = subprocess.run([sys.executable, "-m", "stgraph.cli.main", "data", "info", str(tmp_path / "nope.h5")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    _has(proc.stderr, "error: ", "nope.h5", "not found")


# =================================================================================== 2. series
def s_duplicated(d):
    (d / "dup.csv").write_text(HEADER + _rows(3) + _rows(1, start=10))
    return d / "dup.csv"


def s_unsorted(d):
    (d / "unsorted.csv").write_text(HEADER + _rows(3) + _rows(1, start=5))
    return d / "unsorted.csv"


def s_irregular(d):
    (d / "irregular.csv").write_text(HEADER + _rows(3) + _rows(3, start=17))
    return d / "irregular.csv"


def s_inf_csv(d):
    (d / "inf.csv").write_text(HEADER + "2020-01-01 00:00,1,2,3\n2020-01-01 00:05,1,inf,3\n")
    return d / "inf.csv"


def s_neg_inf_npz(d):
    data = np.full((6, 3), 50.0)
    data[4, 2] = -np.inf
    np.savez(d / "neginf.npz", data=data)
    return d / "neginf.npz"


def s_bad_date(d):
    (d / "baddate.csv").write_text(HEADER + "2020-01-01 00:00,1,2,3\n2020-02-30 00:05,1,2,3\n")
    return d / "baddate.csv"


def s_dup_sensor(d):
    (d / "dupsensor.csv").write_text("timestamp,a,b,a\n" + _rows(2))
    return d / "dupsensor.csv"


# read through a file (data info): (id, builder, error, parts)
SERIES_FILE_CASES = [
    ("duplicated timestamps", s_duplicated, SeriesError,
     ["dup.csv", "timestamps are duplicated at row 3", "2020-01-01T00:10", "sort the rows by time and drop duplicates"]),
    ("non-monotonic timestamps", s_unsorted, SeriesError,
     ["unsorted.csv", "timestamps are not increasing at row 3", "2020-01-01T00:10", "then 2020-01-01T00:05"]),
    ("irregular intervals", s_irregular, SeriesError,
     ["irregular.csv", "irregular sampling", "rows 2 -> 3", "7min apart", "smallest step 5min",
      "resample the series"]),
    ("inf in a csv", s_inf_csv, SeriesError, ["inf.csv", "infinite value at step 1, sensor 'b'"]),
    ("-inf in an npz", s_neg_inf_npz, SeriesError, ["neginf.npz", "infinite value at step 4, sensor '2'"]),
    ("impossible date", s_bad_date, DataFormatError,
     ["baddate.csv", "line 3, column 'timestamp': '2020-02-30 00:05' is not a valid date", "ISO 8601"]),
    ("duplicated sensor ids", s_dup_sensor, SeriesError,
     ["dupsensor.csv", "duplicated sensor ids ['a']", "must be unique"]),
]


@pytest.mark.parametrize("builder, error, parts", [c[1:] for c in SERIES_FILE_CASES],
                         ids=[c[0] for c in SERIES_FILE_CASES])
def test_bad_series_content(tmp_path, capsys, builder, error, parts):
    path = builder(tmp_path)
    kwargs = {"start": "2020-01-01", "freq": "5min"} if path.suffix == ".npz" else {}
    with pytest.raises(error) as info:
        s = read_series(path, **kwargs)
        s.summary()  # the interval is inferred here
    _has(str(info.value), str(path), *parts)
    flags = ["--start", "2020-01-01", "--freq", "5min"] if path.suffix == ".npz" else []
    _has(_cli(capsys, "data", "info", path, *flags), *parts)


def test_nan_where_null_is_zero_in_memory_is_refused():
    v = _series().values.copy()
    v[3, 1, 0] = np.nan
    with pytest.raises(SeriesError) as info:
        _series(values=v, source="speeds.h5")
    _has(str(info.value), "'speeds.h5'", "NaN at step 3, sensor 'b' while null_value is 0.0",
         "pass null_value=nan")
    assert np.isnan(_series(values=v, null=float("nan")).values[3, 1, 0])  # allowed when NaN means missing


def test_nan_where_null_is_zero_in_a_file_is_read_as_missing(tmp_path):
    """The clean recovery: a file's NaN always means missing, stored as the null value."""
    p = tmp_path / "gaps.csv"
    p.write_text(HEADER + "2020-01-01 00:00,1,nan,3\n2020-01-01 00:05,,5,NA\n")
    s = read_series(p, null_value=0.0)
    assert s.null_value == 0.0 and not np.isnan(s.values).any()
    assert s.missing_mask()[:, :, 0].tolist() == [[False, True, False], [True, False, True]]


def test_missing_timestamp_in_memory():
    ts = T0 + np.arange(40) * FIVE
    ts[7] = np.datetime64("NaT")
    with pytest.raises(SeriesError, match=r"'s\.h5': timestamp at row 7 is missing \(NaT\)"):
        _series(ts=ts, source="s.h5")


def test_sensor_null_throughout_is_kept_with_a_warning_naming_it():
    v = _series().values.copy()
    v[:, 2] = 0.0  # sensor 'c' never reports
    with pytest.warns(StgraphWarning) as rec:
        data = ForecastData.from_series(_series(values=v, source="metr.h5"), input_len=3, horizon=3)
    _has(str(rec[0].message), "'metr.h5'", "1 of 4 sensor(s) have no reading at all in ['speed']",
         "['c']", "null value 0.0", "masked out of the loss", "check null_value")
    assert data.dead_sensors == ["c"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ForecastData.from_series(_series(), input_len=3, horizon=3).dead_sensors == []


def test_every_sensor_null_is_refused():
    with pytest.raises(SeriesError) as info:
        ForecastData.from_series(_series(values=np.zeros((40, 4, 1))), input_len=3, horizon=3)
    _has(str(info.value), "channel(s) ['speed'] have no non-null reading in training rows", "check null_value")


def test_fewer_steps_than_input_plus_horizon(tmp_path, capsys):
    p = tmp_path / "short.csv"
    p.write_text(HEADER + _rows(20))
    err = _cli(capsys, "train", "--data", p, "--out", tmp_path / "run", "--model", "last")
    _has(err, "short.csv", "series has 20 time steps", "input_len + horizon = 12 + 12 = 24",
         "shorter windows", "data.horizon")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_time_split_leaving_no_training_window():
    with pytest.raises(SeriesError) as info:
        ForecastData.from_series(_series(source="s.h5"), input_len=3, horizon=3,
                                 split=("2019-01-01", "2019-01-02"))
    _has(str(info.value), "'s.h5'", "the training split has no window", "later train_end", "35 windows in all")


def test_more_sensors_than_the_graph(synth, tmp_path, capsys):
    s = read_series(synth["data"])
    g = read_graph(synth["adj"])
    g.remove_nodes_from(s.sensor_ids[-2:])
    small = write_graph(g, tmp_path / "small.json")
    err = _cli(capsys, "train", "--data", synth["data"], "--graph", small, "--out", tmp_path / "run", "--model", "last")
    _has(err, "small.json", "in the series but not the graph", repr(s.sensor_ids[-2]), repr(s.sensor_ids[-1]),
         "(2 in all)", "Expected the same sensors")


# =================================================================================== 3. graphs
def g_foreign_ids(d):
    g = nx.DiGraph([("x1", "x2"), ("x2", "x3")])
    return write_graph(g, d / "other_city.json")


def g_self_loops(d):
    (d / "loops.csv").write_text("source,target,weight\na,a,1\nb,b,1\n")
    return d / "loops.csv"


def g_empty_json(d):
    (d / "empty.json").write_text('{"directed": true, "multigraph": false, "graph": {}, "nodes": [], "links": []}')
    return d / "empty.json"


def g_no_rows(d):
    (d / "noedges.csv").write_text("source,target,weight\n")
    return d / "noedges.csv"


def g_zero_matrix(d):
    (d / "zero.pkl").write_bytes(pickle.dumps([list("abcd"), {s: i for i, s in enumerate("abcd")},
                                               np.zeros((4, 4), np.float32)], protocol=2))
    return d / "zero.pkl"


def g_negative(d):
    (d / "neg.csv").write_text("source,target,weight\na,b,-1\nb,c,1\n")
    return d / "neg.csv"


def g_nan_matrix(d):
    adj = np.eye(4, dtype=np.float32)
    adj[0, 1] = np.nan
    (d / "nan.pkl").write_bytes(pickle.dumps([list("abcd"), {s: i for i, s in enumerate("abcd")}, adj], protocol=2))
    return d / "nan.pkl"


def g_inf_json(d):
    (d / "inf.json").write_text(
        '{"directed": true, "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}], '
        '"edges": [{"source": "a", "target": "b", "weight": Infinity}, {"source": "b", "target": "c"}]}')
    return d / "inf.json"


def g_unknown_in_distances(d):
    (d / "distances.csv").write_text("from,to,cost\na,b,100\nb,zz,200\nqq,a,300\nc,d,50\n")
    return d / "distances.csv"


def g_negative_distance(d):
    (d / "negdist.csv").write_text("from,to,cost\na,b,100\nb,c,-5\n")
    return d / "negdist.csv"


def g_series_file(d):
    return _valid_h5(d / "metr-la.h5", T=10, N=4)


def g_not_utf8(d):
    (d / "cp1252.csv").write_bytes("source,target,weight\nStra\u00dfe,b,1\n".encode("cp1252"))
    return d / "cp1252.csv"


def g_pickle_dict(d):
    (d / "dict.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    return d / "dict.pkl"


def g_truncated_pickle(d):
    (d / "cut.pkl").write_bytes(pickle.dumps([list("abcd"), {}, np.ones((4, 4))], protocol=2)[:40])
    return d / "cut.pkl"


def g_pickle_huge_length(d):
    # found by hypothesis: BINBYTES8 declaring ~2**63 bytes made the unpickler raise MemoryError
    (d / "huge.pkl").write_bytes(b"\x80\x02M\x00\x00\x8e\x00\x00\x00\x00\x00\x00\x00\x01")
    return d / "huge.pkl"


def g_pickle_overflow_length(d):
    # found by hypothesis: BINUNICODE8 with a length past the platform's maximum -> OverflowError
    (d / "over.pkl").write_bytes(b"\x80\x02M\x00\x00\x8d\x00\x00\x00\x00\x00\x00\x00\x80")
    return d / "over.pkl"


def g_truncated_json(d):
    (d / "cut.json").write_text('{"directed": true, "nodes": [{"id": "a"}')
    return d / "cut.json"


# graph cases for a 4-sensor series a,b,c,d: (id, builder, error, parts)
GRAPH_CASES = [
    ("graph ids not matching the series", g_foreign_ids, GraphError,
     ["other_city.json", "in the series but not the graph: ['a', 'b', 'c', 'd'] (4 in all)",
      "in the graph but not the series: ['x1', 'x2', 'x3'] (3 in all)"]),
    ("self loops only", g_self_loops, GraphError, ["loops.csv", "all 2 edges are self loops"]),
    ("empty graph", g_empty_json, GraphError, ["empty.json", "the graph is empty (0 nodes)"]),
    ("edge list without rows", g_no_rows, GraphError, ["noedges.csv", "edge list has no rows"]),
    ("all-zero adjacency", g_zero_matrix, GraphError, ["zero.pkl", "4 nodes but no edges"]),
    ("negative weight", g_negative, GraphError,
     ["neg.csv", "negative or not finite", "('a', 'b', -1.0)", "expected finite weights >= 0"]),
    ("nan weight", g_nan_matrix, GraphError, ["nan.pkl", "('a', 'b', nan)", "expected finite weights >= 0"]),
    ("infinite weight", g_inf_json, GraphError, ["inf.json", "('a', 'b', inf)", "expected finite weights >= 0"]),
    ("distance table naming unknown sensors", g_unknown_in_distances, GraphError,
     ["distances.csv", "2 rows name sensors not in sensor_ids: ['qq', 'zz'] (2 in all)", "ignore_unknown"]),
    ("negative distance", g_negative_distance, DataFormatError,
     ["negdist.csv", "[('b', 'c', -5.0)]", "expected distances >= 0"]),
    ("series file given as the graph", g_series_file, DataFormatError,
     ["metr-la.h5", "is an HDF5 file (a sensor series?), not a road graph", "swap"]),
    ("graph table not utf-8", g_not_utf8, DataFormatError, ["cp1252.csv", "not UTF-8 text", "byte 0xdf"]),
    ("pickle of something else", g_pickle_dict, DataFormatError,
     ["dict.pkl", "pickle holds a dict", "[sensor_ids, sensor_id_to_index, adj_mx]"]),
    ("truncated pickle", g_truncated_pickle, DataFormatError, ["cut.pkl", "not a readable pickle"]),
    ("pickle declaring a huge object", g_pickle_huge_length, DataFormatError,
     ["huge.pkl", "declares an object larger than the whole file (14 bytes", "Fetch the file again"]),
    ("pickle length past the platform maximum", g_pickle_overflow_length, DataFormatError,
     ["over.pkl", "declares an object larger than the whole file (14 bytes", "OverflowError"]),
    ("truncated json", g_truncated_json, DataFormatError, ["cut.json", "not valid JSON"]),
]


@pytest.fixture(scope="module")
def abcd_series(tmp_path_factory):
    """A 4-sensor series (a, b, c, d), 48 steps."""
    path = tmp_path_factory.mktemp("abcd") / "abcd.csv"
    path.write_text(HEADER.replace("c\n", "c,d\n") + "".join(
        f"2020-01-01 {i * 5 // 60:02d}:{i * 5 % 60:02d},{50 + i % 3},{40 + i % 4},{30 + i % 5},{20 + i % 2}\n"
        for i in range(48)))
    return path


@pytest.mark.parametrize("builder, error, parts", [c[1:] for c in GRAPH_CASES], ids=[c[0] for c in GRAPH_CASES])
def test_bad_graph(tmp_path, capsys, abcd_series, builder, error, parts):
    path = builder(tmp_path)
    ids = read_series(abcd_series).sensor_ids
    with pytest.raises(error) as info:
        to_pyg(read_graph(path, sensor_ids=ids), ids)
    _has(str(info.value), str(path), *parts)
    err = _cli(capsys, "train", "--data", abcd_series, "--graph", path, "--out", tmp_path / "run", "--model", "last")
    _has(err, *parts)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("suffix", [".json", ".graphml"])
def test_graph_with_a_non_finite_weight_is_not_written(tmp_path, suffix):
    """JSON/GraphML cannot store inf/NaN: writing it silently would read back as weight 1.0."""
    g = nx.DiGraph()
    g.add_edge("a", "b", weight=float("nan"))
    g.add_edge("b", "c", weight=0.5)
    with pytest.raises(GraphError) as info:
        write_graph(g, tmp_path / f"g{suffix}")
    _has(str(info.value), f"g{suffix}", "not written", "('a', 'b', nan)", "expected finite weights")
    assert not (tmp_path / f"g{suffix}").exists()


def test_distance_table_without_sensor_order(tmp_path, capsys):
    path = g_unknown_in_distances(tmp_path)
    _has(_cli(capsys, "graph", "info", path), "distances.csv", "is a distance table",
         "columns ['from', 'to', 'cost']", "--sensors")


# ================================================================================== 4. configs
def _yaml(d: Path, text: str) -> Path:
    (d / "run.yaml").write_text(text)
    return d / "run.yaml"


# YAML files: (id, text, names the file, parts). Errors found while reading the file name it;
# impossible values are found when the whole config is validated, model errors when it is built.
YAML_CASES = [
    ("unknown key", "data:\n  horizn: 6\n", True, ["unknown key 'horizn'", "did you mean 'horizon'", "valid keys"]),
    ("unknown section", "trian:\n  lr: 0.01\n", True, ["unknown section 'trian'", "did you mean 'train'"]),
    ("wrong type for a number", "train:\n  lr: fast\n", True, ["train.lr = 'fast'", "expected a number, got str"]),
    ("float for an integer", "train:\n  epochs: 2.5\n", True,
     ["train.epochs = 2.5", "expected an integer, got float"]),
    ("list for a section", "train: [1, 2]\n", True, ["train: expected a mapping of fields, got list"]),
    ("string for a list", "data:\n  split: 70/10/20\n", True, ["data.split = '70/10/20'", "expected a list"]),
    ("invalid yaml", "data:\n  path: x\n   bad: indent\n", True, ["is not valid YAML", "line 3"]),
    ("horizon 0", "data:\n  horizon: 0\n", False, ["data.horizon = 0", "expected a positive integer"]),
    ("negative lr", "train:\n  lr: -0.001\n", False, ["train.lr = -0.001", "expected a positive finite number"]),
    ("infinite lr", "train:\n  lr: .inf\n", False, ["train.lr = inf", "expected a positive finite number"]),
    ("split not summing to 1", "data:\n  split: [0.5, 0.6, 0.1]\n", False,
     ["data.split = [0.5, 0.6, 0.1]", "sum to 1"]),
    ("negative weight decay", "train:\n  weight_decay: -1\n", False,
     ["train.weight_decay = -1", "expected a finite number >= 0"]),
    ("scheduler typo", "train:\n  scheduler: cosin\n", False,
     ["train.scheduler = 'cosin'", "did you mean 'cosine'", "['cosine', 'multistep', 'none']"]),
    ("unknown device", "train:\n  device: gpu\n", False, ["train.device = 'gpu'", "'auto', 'cpu' or 'cuda[:k]'"]),
    ("empty model name", "model:\n  name: ''\n", False, ["model.name is empty"]),
    ("model argument typo", "model:\n  params:\n    hiden: 16\n", False,
     ["model.params.hiden", "has no such argument", "did you mean 'hidden'"]),
    ("unknown model", "model:\n  name: stgtt\n", False, ["unknown model 'stgtt'", "did you mean 'stgt'"]),
]


@pytest.mark.parametrize("text, names_file, parts", [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_bad_config_file(tmp_path, capsys, abcd_series, text, names_file, parts):
    cfg = _yaml(tmp_path, text)
    err = _cli(capsys, "train", "--data", abcd_series, "--config", cfg, "--out", tmp_path / "run")
    _has(err, *parts)
    if names_file:
        _has(err, f"config file '{cfg}'")
    assert not (tmp_path / "run").exists()


# --set overrides: (id, assignment, parts)
OVERRIDE_CASES = [
    ("override without section", "lr=0.1", ["override 'lr=0.1'", "unknown key 'lr'", "did you mean 'train.lr'"]),
    ("override section typo", "trian.lr=0.1", ["unknown key 'trian.lr'", "did you mean 'train.lr'"]),
    ("override field typo", "train.batchsize=8", ["override 'train.batchsize=8'", "did you mean 'batch_size'"]),
    ("override model argument without prefix", "hidden=16", ["unknown key 'hidden'", "model.params.hidden="]),
    ("override without value", "train.lr", ["override 'train.lr'", "expected section.field=value"]),
    ("override NaN lr", "train.lr=.nan", ["train.lr = nan", "expected a positive finite number"]),
    # one line asking for more than any machine has: refused by the bounds (stgraph/limits.py) before anything
    # is read, built or forked
    ("threads beyond the machine", "train.threads=10000", ["train.threads = 10000", "per CPU of this machine"]),
    ("workers beyond the machine", "train.workers=1000", ["train.workers = 1000", "one per CPU of this machine"]),
    ("huge batch", "train.batch_size=100000000", ["train.batch_size = 100000000", "at most 1,048,576"]),
    ("huge epochs", "train.epochs=10000000000", ["train.epochs = 10000000000", "at most 1,000,000"]),
    ("huge input", "data.input_len=10000000", ["data.input_len = 10000000", "at most 100,000"]),
    ("huge chunk cache", "data.cache_mb=10000000000", ["data.cache_mb = 10000000000", "1 TiB"]),
    ("huge max_batches", "train.max_batches=1099511627776",
     ["train.max_batches = 1099511627776", "at most 2,147,483,648"]),
    ("depth beyond bound", "model.params.encoder_layers=100000",
     ["model.params.encoder_layers = 100000", "at most 256", "a depth"]),
    ("heads beyond bound", "model.params.heads=100000", ["model.params.heads = 100000", "at most 256"]),
    ("width beyond bound", "model.params.hidden=100000000",
     ["model.params.hidden = 100000000", "at most 1,048,576"]),
]


@pytest.mark.parametrize("assignment, parts", [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES])
def test_bad_override(tmp_path, capsys, abcd_series, assignment, parts):
    err = _cli(capsys, "train", "--data", abcd_series, "--out", tmp_path / "run", "--set", assignment)
    _has(err, *parts)


def test_predict_threads_beyond_the_machine_is_refused_before_the_run_is_read(tmp_path, capsys):
    import os

    for n in (4096, 4 * (os.cpu_count() or 1) + 1, 0, -3):
        err = _cli(capsys, "predict", tmp_path / "no-run", "--out", tmp_path / "f.csv", "--threads", n)
        _has(err, f"--threads = {n}", "per CPU of this machine")


def test_negative_learning_rate_flag(tmp_path, capsys, abcd_series):
    _has(_cli(capsys, "train", "--data", abcd_series, "--out", tmp_path / "run", "--lr", "-0.1"),
         "train.lr = -0.1", "expected a positive finite number")


def test_missing_config_file(tmp_path, capsys, abcd_series):
    _has(_cli(capsys, "train", "--data", abcd_series, "--out", tmp_path / "run", "--config", tmp_path / "nope.yaml"),
         "config file", "nope.yaml", "not found")


def test_yaml_scientific_notation_is_a_number(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as text; the config accepts it as the number it means."""
    cfg = load_config(_yaml(tmp_path, "train:\n  lr: 1e-3\n  weight_decay: 5E-4\n")).validate()
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 0.0005
    assert apply_override(RunConfig(), "train.lr=2e-4").train.lr == 0.0002


def test_yaml_dates_in_text_fields_are_kept_as_text(tmp_path, capsys):
    """YAML reads ``2018-01-01`` as a date; data.start wants the text (an npz has no timestamps)."""
    cfg = load_config(_yaml(tmp_path, "data:\n  start: 2018-01-01\n  freq: 5min\n")).validate()
    assert cfg.data.start == "2018-01-01"
    assert apply_override(RunConfig(), "data.start=2018-01-01 06:00").data.start == "2018-01-01 06:00"
    np.savez(tmp_path / "pems.npz", data=np.ones((40, 3, 1)))
    assert cli_main(["train", "--data", str(tmp_path / "pems.npz"), "--out", str(tmp_path / "run"), "--model",
                     "last", "--set", "data.start=2018-01-01", "--set", "data.freq=5min"]) == 0


def test_run_directory_holding_a_different_run(tmp_path, capsys, abcd_series):
    run = tmp_path / "run"
    common = ["train", "--data", str(abcd_series), "--out", str(run), "--model", "last", "--no-progress",
              "--set", "data.input_len=3"]
    assert cli_main(common + ["--set", "data.horizon=3"]) == 0
    capsys.readouterr()
    saved = (run / "config.yaml").read_text()
    err = _cli(capsys, *common, "--set", "data.horizon=2")
    _has(err, f"run directory '{run}' already holds a different run", "--resume", "--overwrite", "another --out")
    assert (run / "config.yaml").read_text() == saved  # untouched
    err = _cli(capsys, *common, "--set", "data.horizon=3")  # the same run again: still refused, said so
    _has(err, "already holds a run with the same config", "--resume")
    assert cli_main(common + ["--set", "data.horizon=2", "--overwrite"]) == 0
    assert load_config(run / "config.yaml").data.horizon == 2


def test_resume_without_a_checkpoint(tmp_path, capsys, abcd_series):
    _has(_cli(capsys, "train", "--data", abcd_series, "--out", tmp_path / "fresh", "--resume"),
         "cannot resume", "checkpoints/last.pt' does not exist", "start without --resume")


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_from_a_damaged_checkpoint(tmp_path, capsys, abcd_series, damage):
    run = tmp_path / "run"
    args = ["train", "--data", str(abcd_series), "--out", str(run), "--model", "last", "--no-progress",
            "--set", "data.input_len=3", "--set", "data.horizon=3"]
    assert cli_main(args) == 0
    capsys.readouterr()
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(b"" if damage == "empty" else last.read_bytes()[:200])
    err = _cli(capsys, *args, "--resume")
    _has(err, str(last), "empty (0 bytes)" if damage == "empty" else "truncated or damaged", "train again")


# ================================================================= 4b. data that do not fit a run
D = 288  # 5-minute steps a day


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory, synth):
    """A last-value run trained on the last two of the synthetic network's three days, and files that do not fit
    it: ``files(name)`` writes one (``hourly``, ``renamed`` sensors, ``fewer`` sensors, ``flow`` channel,
    ``older`` readings, a ``gap`` and a ``dark`` hour of null readings just before the end)."""
    from stgraph.training.run import train

    root = tmp_path_factory.mktemp("fit_run")
    s = read_series(synth["data"])

    def cut(name, values=None, ts=None, ids=None, channels=None, rows=slice(D, None)):
        v = s.values[rows] if values is None else values
        t = s.timestamps[rows] if ts is None else ts
        out = Series(v, t, ids or s.sensor_ids, channels or s.channels, s.null_value)
        return str(write_series(out, root / f"{name}.h5", layout="pandas"))

    gap = np.r_[D:3 * D - 8, 3 * D - 2:3 * D]  # 6 steps (30 minutes) missing 2 steps before the end
    dark = s.values[D:].copy()
    dark[-12:] = 0.0  # the last hour null at every sensor
    files = {"own": cut("own"), "hourly": cut("hourly", rows=slice(0, None, 12)),
             "renamed": cut("renamed", ids=[f"x{i}" for i in s.sensor_ids]),
             "fewer": cut("fewer", values=s.values[D:, 2:], ids=s.sensor_ids[2:]),
             "flow": cut("flow", channels=["flow"]), "older": cut("older", rows=slice(0, 2 * D)),
             "gap": cut("gap", values=s.values[gap], ts=s.timestamps[gap]), "dark": cut("dark", values=dark)}
    from stgraph.config import with_fields
    cfg = with_fields(RunConfig(), {"data.path": files["own"], "data.graph": str(synth["adj"]), "model.name": "last",
                                    "train.progress": False})
    train(cfg, root / "run")
    return root / "run", files, root


def _command(kind, run, data, out):
    return {"predict": ["predict", run, "--data", data, "--out", out / "fc.csv"],
            "evaluate": ["evaluate", run, "--data", data],
            "drift": ["drift", run, "--data", data, "--out", out / "drift", "--period", "6h"],
            "update": ["update", run, "--data", data, "--out", out / "upd", "--epochs", "1", "--no-progress"]}[kind]


FITS = ["predict", "evaluate", "drift", "update"]


@pytest.mark.parametrize("kind", FITS)
def test_data_at_another_interval_are_refused_naming_both(fit_run, tmp_path, capsys, kind):
    run, files, _ = fit_run
    err = _cli(capsys, *_command(kind, run, files["hourly"], tmp_path))
    _has(err, "hourly.h5", "one reading every 1h", f"the run in '{run}' was trained on readings every 5min",
         "Resample the file to 5min")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("kind", FITS)
def test_data_with_other_channels_are_refused(fit_run, tmp_path, capsys, kind):
    run, files, _ = fit_run
    _has(_cli(capsys, *_command(kind, run, files["flow"], tmp_path)), "flow.h5", "channels ['flow']",
         "was trained on ['speed']")


@pytest.mark.parametrize("kind", ["predict", "evaluate", "drift"])
def test_data_with_other_sensors_are_refused_naming_them(fit_run, tmp_path, capsys, kind):
    run, files, _ = fit_run
    ids = read_series(files["own"]).sensor_ids
    _has(_cli(capsys, *_command(kind, run, files["fewer"], tmp_path)), "fewer.h5",
         f"2 it needs but are absent ({ids[:2]})", "needs its 12 sensors in the same order")
    _has(_cli(capsys, *_command(kind, run, files["renamed"], tmp_path)), "12 sensor(s) the run does not know")


def test_update_with_no_sensor_in_common_is_refused(fit_run, tmp_path, capsys):
    run, files, _ = fit_run
    err = _cli(capsys, *_command("update", run, files["renamed"], tmp_path))
    _has(err, "renamed.h5", "none of its 12 sensor(s)", f"is one of the 12 sensor(s) of the run in '{run}'",
         "at least one sensor in common")
    assert not (tmp_path / "upd").exists()


def test_update_on_data_older_than_the_run_is_refused(fit_run, tmp_path, capsys):
    run, files, _ = fit_run
    err = _cli(capsys, *_command("update", run, files["older"], tmp_path))
    _has(err, "older.h5", "its readings end at 2012-03-02T23:55:00", "up to 2012-03-03T23:55:00",
         "an update continues a run on newer data")
    assert not (tmp_path / "upd").exists()


def test_a_run_without_the_time_in_run_json_is_checked_against_its_training_file(fit_run, tmp_path):
    """A run written before run.json recorded its time span: the interval comes from its training file."""
    import json
    import shutil

    from stgraph.api import open_run

    run, files, _ = fit_run
    old = tmp_path / "old-run"
    shutil.copytree(run, old)
    info = json.loads((old / "run.json").read_text())
    info.pop("time", None)
    (old / "run.json").write_text(json.dumps(info))
    with pytest.raises(SeriesError, match="one reading every 1h, but the run in .* every 5min"):
        open_run(old, data=files["hourly"])


def test_predict_refuses_a_window_over_a_gap_and_forecasts_after_it(fit_run, tmp_path, capsys):
    run, files, _ = fit_run
    err = _cli(capsys, "predict", run, "--data", files["gap"], "--out", tmp_path / "fc.csv")
    _has(err, "at=2012-03-03T23:55:00: the input window 2012-03-03T22:30:00 .. 2012-03-03T23:55:00",
         "gap.h5", "crosses a gap in time", "no reading from 2012-03-03T23:15:00 to 2012-03-03T23:50:00",
         "6 step(s) of 5min missing", "Training drops windows over a gap")
    assert not (tmp_path / "fc.csv").exists()
    capsys.readouterr()
    assert cli_main(["predict", str(run), "--data", files["gap"], "--at", "2012-03-03T23:15", "--out",
                     str(tmp_path / "fc.csv")]) == 0  # the window before the gap


def test_predict_refuses_a_window_where_every_reading_is_null(fit_run, tmp_path, capsys):
    run, files, _ = fit_run
    err = _cli(capsys, "predict", run, "--data", files["dark"], "--out", tmp_path / "fc.csv")
    _has(err, "every reading of the input window 2012-03-03T23:00:00 .. 2012-03-03T23:55:00", "dark.h5",
         "null (the null value 0.0) at all 12 sensors", "a forecast from it would be the model's guess")
    assert not (tmp_path / "fc.csv").exists()
    capsys.readouterr()
    with pytest.warns(StgraphWarning, match=r"dark.h5'?: \d\d% of the readings of the input window 2012-03-03T22:35:00"):
        assert cli_main(["predict", str(run), "--data", files["dark"], "--at", "2012-03-03T23:30", "--out",
                         str(tmp_path / "fc.csv")]) == 0  # 7 of its 12 steps null: forecast, with a warning


@pytest.mark.parametrize("at, utc", [("2012-03-03T20:00+05:00", "2012-03-03T15:00:00"),
                                     ("2012-03-03T20:00:00Z", "2012-03-03T20:00:00"),
                                     ("2012-03-03 20:00-0130", "2012-03-03T21:30:00")])
def test_predict_at_with_a_utc_offset_is_refused_not_moved(fit_run, tmp_path, capsys, at, utc):
    run, files, _ = fit_run
    err = _cli(capsys, "predict", run, "--at", at, "--out", tmp_path / "fc.csv")
    _has(err, f"at='{at}' has the UTC offset", "carry no time zone", f"{utc} if its times are UTC",
         "2012-03-03T20:00:00 if they are local times")
    assert not (tmp_path / "fc.csv").exists()


@pytest.mark.parametrize("flags, parts", [
    (["--jump", "nan"], ["argument --jump", "jump = 'nan'", "finite number > 0"]),
    (["--jump", "-1"], ["jump = '-1'", "finite number > 0"]),
    (["--jump", "inf"], ["jump = 'inf'"]),
    (["--baseline", "0"], ["argument --baseline", "baseline = 0: expected an integer >= 1"]),
    (["--recent", "0"], ["argument --recent", "recent = 0: expected an integer >= 1"]),
    (["--recent", "1.5"], ["recent = '1.5'"]),
    (["--stride", "0"], ["stride = 0"]),
    (["--period", "soon"], ["argument --period", "period = 'soon'", "unknown unit 'soon'"]),
    (["--period", "0h"], ["period = '0h'", "is zero"])])
def test_drift_settings_are_refused_where_they_are_parsed(tmp_path, capsys, flags, parts):
    with pytest.raises(SystemExit) as stop:
        cli_main(["drift", str(tmp_path / "run"), "--data", str(tmp_path / "x.h5"), *flags])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: stgraph drift: ") and err.count("\n") == 1, err
    _has(err, *parts)


def test_drift_settings_are_refused_by_the_library_too(fit_run, tmp_path):
    from stgraph.online.drift import drift_report, flag_sensors

    run, files, _ = fit_run
    errors = np.random.default_rng(0).uniform(1, 2, (6, 4))
    for kw, text in [({"jump": float("nan")}, "jump = nan"), ({"jump": -1}, "jump = -1"),
                     ({"baseline": 0, "recent": 0}, "baseline = 0"), ({"recent": 0}, "recent = 0")]:
        with pytest.raises(ConfigError, match=text):
            flag_sensors(errors, **{"baseline": 2, "recent": 2, **kw})
        with pytest.raises(ConfigError, match=text):
            drift_report(run, files["own"], tmp_path / "d", **kw)
    for period, stride, text in [("1min", 1, r"period = '1min' is shorter than .* \(1 step\(s\) of 5min"),
                                 ("30min", 12, r"period = '30min' .* \(12 step\(s\) of 5min, stride = 12\)"
                                               r".* at least 1h")]:
        with pytest.raises(ConfigError, match=text):
            drift_report(run, files["own"], tmp_path / "d", period=period, stride=stride)
    assert not (tmp_path / "d").exists()


def test_evaluate_on_another_file_reports_without_recording(fit_run, tmp_path, capsys):
    run, files, _ = fit_run
    before = sorted(p.name for p in run.iterdir())
    assert cli_main(["evaluate", str(run), "--data", files["gap"], "--json"]) == 0
    assert sorted(p.name for p in run.iterdir()) == before  # no evaluation_test.json of another file
    assert "mae" in capsys.readouterr().out


# ============================================================================== 5. properties
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
_TMP = {}


def _scratch(tmp_path_factory) -> Path:
    if "dir" not in _TMP:
        _TMP["dir"] = tmp_path_factory.mktemp("hypothesis")
    return _TMP["dir"]


def _read_or_own_error(path: Path, **kwargs):
    """read_series either returns a valid Series or raises one of the package's errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            s = read_series(path, **kwargs)
        except StgraphError as exc:
            assert str(exc)  # a message, never empty
            return None
    s.validate()
    T, N, C = s.shape
    assert T >= 1 and N >= 1 and C >= 1 and len(s.sensor_ids) == N and s.timestamps.shape == (T,)
    return s


@PROPS
@given(text=st.text(alphabet=",;\t\n 0123456789.-:eEaTZnN/\"x", max_size=120))
def test_property_csv_text_raises_only_own_errors(tmp_path_factory, text):
    p = _scratch(tmp_path_factory) / "random.csv"
    p.write_text(text)
    _read_or_own_error(p)
    _read_or_own_error(p, start="2020-01-01", freq="5min")


@PROPS
@given(prefix=st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"PK\x03\x04", b"\x93NUMPY", b"\x80\x02", b"\xff\xfe"]),
       body=st.binary(max_size=300))
def test_property_random_bytes_raise_only_own_errors(tmp_path_factory, prefix, body):
    p = _scratch(tmp_path_factory) / "random.bin"
    p.write_bytes(prefix + body)
    _read_or_own_error(p, start="2020-01-01", freq="5min")
    try:
        read_graph(p, sensor_ids=["a", "b"])
    except StgraphError:
        pass


@PROPS
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
       dtype=st.sampled_from(["f4", "f8", "i4", "u1", "?", "c8", "U2", "M8[s]"]),
       fill=st.floats(allow_nan=True, allow_infinity=True), npy=st.booleans())
def test_property_numpy_arrays_raise_only_own_errors(tmp_path_factory, shape, dtype, fill, npy):
    arr = np.zeros(shape, dtype=dtype)
    if arr.size and dtype[0] in "fc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            arr.flat[arr.size // 2] = fill
    p = _scratch(tmp_path_factory) / ("random.npy" if npy else "random.npz")
    np.save(p, arr) if npy else np.savez(p, data=arr)
    s = _read_or_own_error(p, start="2020-01-01", freq="5min")
    if s is not None:
        # readings are finite; NaN only where it is the missing marker (the .npz default, issue 11)
        missing = np.isnan(s.values) if np.isnan(s.null_value) else np.zeros(s.values.shape, bool)
        assert s.shape[:2] == tuple(shape[:2]) and (np.isfinite(s.values) | missing).all()
        assert not np.isinf(s.values).any()


@PROPS
@given(vshape=st.lists(st.integers(0, 4), min_size=0, max_size=4), tlen=st.integers(0, 5),
       nids=st.integers(0, 5), vdtype=st.sampled_from(["f4", "i8", "S3"]), unsorted=st.booleans())
def test_property_plain_hdf5_raises_only_own_errors(tmp_path_factory, vshape, tlen, nids, vdtype, unsorted):
    p = _scratch(tmp_path_factory) / "random.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("values", data=np.ones(vshape, dtype=vdtype))
        ts = np.arange(tlen, dtype=np.int64) * 300_000_000_000
        f.create_dataset("timestamps", data=ts[::-1] if unsorted else ts)
        f.create_dataset("sensor_ids", data=np.array([f"s{i}" for i in range(nids)], dtype="S3"))
    _read_or_own_error(p)


# derandomized: libhdf5 takes seconds on a few damaged files (garbage variable-length string
# addresses) before it reports them; a fixed set of examples keeps the run time stable
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), layout=st.sampled_from(["plain", "pandas"]),
       n_hits=st.integers(1, 4))
def test_property_damaged_hdf5_raises_only_own_errors(tmp_path_factory, seed, layout, n_hits):
    d = _scratch(tmp_path_factory)
    key = f"valid_{layout}"
    if key not in _TMP:
        _TMP[key] = _valid_h5(d / f"{key}.h5", T=30, N=4, layout=layout).read_bytes()
    raw = bytearray(_TMP[key])
    rng = np.random.default_rng(seed)
    for _ in range(n_hits):
        i = int(rng.integers(8, len(raw)))
        raw[i:i + 32] = rng.bytes(len(raw[i:i + 32]))
    p = d / "damaged.h5"
    p.write_bytes(bytes(raw))
    _read_or_own_error(p)


@PROPS
@given(text=st.text(alphabet=",\t\n 0123456789.-abfromtcsinweightd", max_size=80))
def test_property_graph_tables_raise_only_own_errors(tmp_path_factory, text):
    p = _scratch(tmp_path_factory) / "random_graph.csv"
    p.write_text(text)
    for ids in (["a", "b", "1", "2"], None):
        try:
            g = read_graph(p, sensor_ids=ids)
        except StgraphError:
            continue
        assert g.number_of_edges() > 0 and all(isinstance(u, str) for u in g.nodes)


@settings(max_examples=80, deadline=None)
@given(T=st.integers(-3, 400), input_len=st.integers(-1, 30), horizon=st.integers(-1, 30),
       stride=st.integers(-1, 9), spec=st.one_of(
           st.tuples(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8)),
           st.tuples(st.integers(-20, 420), st.integers(-20, 420))))
def test_property_every_window_lies_inside_its_split(T, input_len, horizon, stride, spec):
    """Random lengths and split specs: only the package's errors, and windows never leave their split."""
    ts = T0 + np.arange(max(T, 0)) * FIVE
    try:
        w = WindowIndex(T, input_len, horizon, stride)
        if len(spec) == 3:
            ratios = tuple(r / sum(spec) for r in spec)
            split = make_split(ratios, w.starts, ts, w.span)
        else:
            bounds = tuple(str(T0 + b * FIVE) for b in spec)
            split = make_split(bounds, w.starts, ts, w.span)
    except (ConfigError, SeriesError) as exc:
        assert str(exc)
        return
    assert input_len >= 1 and horizon >= 1 and stride >= 1 and T >= input_len + horizon
    seen = []
    for name in ("train", "val", "test"):
        starts = split[name]
        assert np.all(np.diff(starts) > 0)  # ascending, no repeats
        assert np.all(starts >= 0) and np.all(starts + w.span <= T)  # inside the series
        if len(spec) == 2 and len(starts):  # time split: every row (input and target) inside the period
            lo = {"train": None, "val": spec[0], "test": spec[1]}[name]
            hi = {"train": spec[0], "val": spec[1], "test": None}[name]
            if lo is not None:
                assert starts.min() >= lo
            if hi is not None:
                assert (starts + w.span - 1).max() < hi
        seen.append(starts)
    if len(spec) == 3:  # ratio split: the three blocks partition the windows in time order
        assert np.array_equal(np.concatenate(seen), w.starts)
    else:
        every = np.concatenate(seen)
        assert len(np.unique(every)) == len(every) and np.isin(every, w.starts).all()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(T=st.integers(10, 120), N=st.integers(1, 4), null_frac=st.floats(0, 0.6), gap_at=st.integers(0, 119),
       input_len=st.integers(1, 6), horizon=st.integers(1, 6), seed=st.integers(0, 1000))
def test_property_batches_respect_splits_gaps_and_nulls(T, N, null_frac, gap_at, input_len, horizon, seed):
    """ForecastData on random series with nulls and a time gap: only own errors; batches hold their split's
    windows, never straddle the gap, and read exactly the series' rows."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(10, 70, (T, N, 1)).astype(np.float32)
    values[rng.random((T, N, 1)) < null_frac] = 0.0
    ts = T0 + np.arange(T) * FIVE
    if gap_at < T - 1:
        ts[gap_at + 1:] += np.timedelta64(1, "h")
    s = Series(values, ts, [f"s{i}" for i in range(N)], ["speed"], 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StgraphWarning)
        try:
            data = ForecastData.from_series(s, input_len=input_len, horizon=horizon)
        except (ConfigError, SeriesError) as exc:
            assert str(exc)
            return
    span = input_len + horizon
    for name in ("train", "val", "test"):
        allowed = set(data.split[name].tolist())
        for batch in data.loader(name, 7, shuffle=True):
            starts = batch.starts.numpy()
            assert set(starts.tolist()) <= allowed
            assert not ((starts <= gap_at) & (starts + span - 1 > gap_at)).any() or gap_at >= T - 1
            rows = starts[:, None] + np.arange(input_len, span)
            assert np.array_equal(batch.y.numpy()[..., 0], values[rows, :, 0])
