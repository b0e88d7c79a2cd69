"""stgraph.io readers and writers: real METR-LA week, round trips, pandas cross-checks, errors."""
import re

import h5py
import numpy as np
import pytest

from stgraph.errors import ConfigError, DataFormatError, MissingFileError
from stgraph.io import Series, read_series, sniff_format, write_series


def make_series(interval="5min", T=12, N=4, C=1, null=0.0, start="2021-06-01T00:00"):
    step = {"5min": 300, "1h": 3600, "1D": 86400, "1W": 7 * 86400}[interval]
    rng = np.random.default_rng(T * 31 + N + C)
    values = rng.uniform(1, 70, size=(T, N, C)).astype(np.float32)
    if np.isnan(null):
        values[1, 2, 0] = np.nan
    ts = np.datetime64(start, "ns") + np.arange(T) * np.timedelta64(step, "s")
    chans = ["speed"] if C == 1 else ["flow", "occupancy", "speed"][:C]
    return Series(values, ts, [f"s{i}" for i in range(N)], chans, null)


def assert_same(a: Series, b: Series):
    np.testing.assert_array_equal(a.values, b.values)  # NaN == NaN here
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.sensor_ids == b.sensor_ids
    assert a.channels == b.channels
    assert (np.isnan(a.null_value) and np.isnan(b.null_value)) or a.null_value == b.null_value


# ------------------------------------------------------------ real data
def test_metr_week_h5_matches_h5py(metr_week_dir):
    path = metr_week_dir / "metr-la-week.h5"
    s = read_series(path)
    assert s.shape == (2016, 207, 1)
    assert s.sensor_ids[0] == "773869"
    assert s.timestamps[0] == np.datetime64("2012-03-01T00:00")
    assert s.timestamps[-1] == np.datetime64("2012-03-07T23:55")
    assert s.interval == np.timedelta64(5, "m")
    assert s.null_value == 0.0 and s.source == str(path)
    with h5py.File(path, "r") as f:  # independent read: values [T, N] in axis0 order
        raw = f["df/block0_values"]
        ids = [b.decode() for b in f["df/axis0"][()]]
        assert [b.decode() for b in f["df/block0_items"][()]] == ids
        for t, n in [(0, 0), (100, 50), (2015, 206)]:
            assert s.values[t, n, 0] == np.float32(raw[t, n])
        us = f["df/axis1"][()]
    assert s.sensor_ids == ids
    # the index is stored in microseconds (kind datetime64[us]), not ns
    assert us[1] - us[0] == 300_000_000


def test_los_speed_csv_is_the_same_week(metr_week_dir):
    h5 = read_series(metr_week_dir / "metr-la-week.h5")
    with pytest.raises(DataFormatError, match=r"los_speed\.csv.*no timestamp column.*pass start="):
        read_series(metr_week_dir / "los_speed.csv")
    csv = read_series(metr_week_dir / "los_speed.csv", start="2012-03-01 00:00", freq="5min")
    assert csv.shape == (2016, 207, 1)
    assert csv.sensor_ids == h5.sensor_ids
    np.testing.assert_array_equal(csv.timestamps, h5.timestamps)
    np.testing.assert_allclose(csv.values, h5.values, atol=1e-5)


def test_format_comes_from_content_not_suffix(metr_week_dir, tmp_path):
    link = tmp_path / "looks_like.csv"
    link.symlink_to(metr_week_dir / "metr-la-week.h5")  # a link, not a copy of the data
    assert sniff_format(link) == "hdf5"
    assert read_series(link).shape == (2016, 207, 1)
    with pytest.raises(DataFormatError, match=r"format='csv' was requested but the content is hdf5"):
        read_series(link, format="csv")


# ------------------------------------------------------------ round trips
@pytest.mark.parametrize("interval", ["5min", "1h", "1D", "1W"])
def test_plain_round_trip(tmp_path, interval):
    s = make_series(interval, C=3, null=float("nan"))
    path = write_series(s, tmp_path / "s.h5")
    back = read_series(path)
    assert_same(back, s)
    assert back.interval == s.interval
    assert back.summary()["interval"] == interval


@pytest.mark.parametrize("interval", ["5min", "1h", "1D"])
def test_pandas_round_trip_and_read_hdf(tmp_path, interval):
    pd = pytest.importorskip("pandas")
    s = make_series(interval, T=30, N=5)
    s.sensor_ids[3] = "767541"
    path = write_series(s, tmp_path / "frame.h5", layout="pandas")
    df = pd.read_hdf(path)  # pytables reads what h5py wrote
    assert list(df.columns) == s.sensor_ids
    np.testing.assert_array_equal(df.index.values.astype("datetime64[ns]"), s.timestamps)
    np.testing.assert_array_equal(df.to_numpy(), s.values[:, :, 0])
    assert pd.read_hdf(path, "df").shape == (30, 5)
    back = read_series(path)
    assert_same(back, s)
    assert back.interval == s.interval


def test_pandas_layout_keeps_nan_null_and_channel_name(tmp_path):
    s = make_series("1h", null=float("nan"))
    back = read_series(write_series(s, tmp_path / "f.h5", layout="pandas", key="t"))
    assert np.isnan(back.null_value) and np.isnan(back.values[1, 2, 0])
    assert back.channels == ["speed"]
    assert read_series(tmp_path / "f.h5", null_value=0.0).values[1, 2, 0] == 0.0  # NaN means missing


def test_pandas_layout_multi_channel(tmp_path):
    s = make_series(C=3)
    with pytest.raises(DataFormatError, match=r"3 channels \['flow', 'occupancy', 'speed'\].*pass channel="):
        write_series(s, tmp_path / "f.h5", layout="pandas")
    back = read_series(write_series(s, tmp_path / "f.h5", layout="pandas", channel="speed"))
    np.testing.assert_array_equal(back.values[:, :, 0], s.values[:, :, 2])
    assert back.channels == ["speed"]


# ------------------------------------------------------------ frames written by pandas
def test_largest_style_frame_int_columns_hourly(tmp_path):
    pd = pytest.importorskip("pandas")
    idx = pd.date_range("2019-01-01", periods=24, freq="h")
    df = pd.DataFrame(np.arange(24 * 3, dtype=float).reshape(24, 3), index=idx, columns=[317802, 312134, 400001])
    df.iloc[2, 1] = np.nan
    df.to_hdf(tmp_path / "ca_his_2019.h5", key="t")
    s = read_series(tmp_path / "ca_his_2019.h5")
    assert s.sensor_ids == ["317802", "312134", "400001"]
    assert s.interval == np.timedelta64(1, "h")
    assert s.timestamps[0] == np.datetime64("2019-01-01")
    assert s.values[2, 1, 0] == 0.0  # NaN -> default null 0
    assert np.isnan(read_series(tmp_path / "ca_his_2019.h5", null_value=float("nan")).values[2, 1, 0])
    np.testing.assert_array_equal(s.values[3, :, 0], [9, 10, 11])


def test_frame_with_several_blocks_keeps_column_order(tmp_path):
    pd = pytest.importorskip("pandas")
    idx = pd.date_range("2020-01-01", periods=7, freq="D")
    df = pd.DataFrame({"a": np.arange(7.0), "b": np.arange(7) * 10, "c": np.arange(7.0) + 0.5,
                       "d": np.arange(7, dtype=np.int32)}, index=idx)
    df.to_hdf(tmp_path / "mixed.h5", key="df")
    with h5py.File(tmp_path / "mixed.h5") as f:
        assert int(f["df"].attrs["nblocks"]) >= 2
    s = read_series(tmp_path / "mixed.h5")
    assert s.sensor_ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(s.values[:, :, 0], df.to_numpy(dtype=np.float32))
    assert s.interval == np.timedelta64(1, "D")


@pytest.mark.parametrize("kind,unit", [("datetime64[s]", "s"), ("datetime64[ms]", "ms"), ("datetime64", "ns")])
def test_index_unit_comes_from_kind(tmp_path, kind, unit):
    pd = pytest.importorskip("pandas")
    s = make_series("5min")
    path = write_series(s, tmp_path / "f.h5", layout="pandas")
    with h5py.File(path, "r+") as f:
        ax = f["df/axis1"]
        ax[...] = s.timestamps.astype(f"datetime64[{unit}]").astype(np.int64)
        ax.attrs.create("kind", np.bytes_(kind.encode()), dtype=h5py.string_dtype("utf-8", len(kind)))
    back = read_series(path)
    np.testing.assert_array_equal(back.timestamps, s.timestamps)
    np.testing.assert_array_equal(pd.read_hdf(path).index.values.astype("datetime64[ns]"), s.timestamps)


def test_frame_choice_and_unsupported_frames(tmp_path):
    pd = pytest.importorskip("pandas")
    idx = pd.date_range("2020-01-01", periods=4, freq="h")
    df = pd.DataFrame(np.ones((4, 2)), index=idx, columns=["x", "y"])
    two = tmp_path / "two.h5"
    df.to_hdf(two, key="first")
    (df * 2).to_hdf(two, key="second")
    with pytest.raises(DataFormatError, match=r"two\.h5.*2 pandas frames.*pass key="):
        read_series(two)
    assert read_series(two, key="second").values.max() == 2.0
    with pytest.raises(DataFormatError, match=r"no group 'third'.*groups found: \['first', 'second'\]"):
        read_series(two, key="third")

    df.to_hdf(tmp_path / "table.h5", key="df", format="table")
    with pytest.raises(DataFormatError, match=r"table\.h5.*format='table'.*format='fixed'"):
        read_series(tmp_path / "table.h5")

    plain_idx = pd.DataFrame(np.ones((4, 2)), columns=["x", "y"])
    plain_idx.to_hdf(tmp_path / "noidx.h5", key="df")
    with pytest.raises(DataFormatError, match=r"index .* holds integer values, not timestamps.*pass start="):
        read_series(tmp_path / "noidx.h5")
    s = read_series(tmp_path / "noidx.h5", start="2020-01-01", freq="1h")
    assert s.timestamps[-1] == np.datetime64("2020-01-01T03:00")


# ------------------------------------------------------------ npz
def test_npz_pems_channels_and_timeline(tmp_path):
    data = np.random.default_rng(0).uniform(0, 300, size=(10, 5, 3))
    data[4, 1, 0] = np.nan
    np.savez(tmp_path / "pems04.npz", data=data)
    s = read_series(tmp_path / "pems04.npz", start="2018-01-01", freq="5min")
    assert s.shape == (10, 5, 3) and s.channels == ["flow", "occupancy", "speed"]
    assert s.sensor_ids == ["0", "1", "2", "3", "4"]
    assert s.timestamps[-1] == np.datetime64("2018-01-01T00:45")
    assert np.isnan(s.null_value) and np.isnan(s.values[4, 1, 0]) and s.values[3, 2, 1] == np.float32(data[3, 2, 1])
    np.savez_compressed(tmp_path / "pems07.npz", data=data[:, :, 0])
    one = read_series(tmp_path / "pems07.npz", start="2017-05-01", freq="1D", channels=["veh"])
    assert one.shape == (10, 5, 1) and one.channels == ["veh"] and one.interval == np.timedelta64(1, "D")
    np.save(tmp_path / "plain.npy", data[:, :, :2])
    two = read_series(tmp_path / "plain.npy", start="2017-05-01", freq="1h")
    assert two.channels == ["channel_0", "channel_1"]


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "p.npz", data=np.ones((6, 2, 3)))
    with pytest.raises(DataFormatError, match=r"p\.npz.*a \.npz array has no timestamps.*no start and freq.*pass start="):
        read_series(tmp_path / "p.npz")
    with pytest.raises(DataFormatError, match=r"no freq was given"):
        read_series(tmp_path / "p.npz", start="2018-01-01")
    with pytest.raises(DataFormatError, match=r"freq: interval 'fortnight'"):
        read_series(tmp_path / "p.npz", start="2018-01-01", freq="fortnight")
    with pytest.raises(DataFormatError, match=r"channels=\['a'\] names 1 channel\(s\) but the file has 3"):
        read_series(tmp_path / "p.npz", start="2018-01-01", freq="5min", channels=["a"])
    np.savez(tmp_path / "k.npz", x=np.ones((3, 2)), y=np.zeros(2))
    with pytest.raises(DataFormatError, match=r"k\.npz.*no array 'data'; arrays found: \['x', 'y'\]"):
        read_series(tmp_path / "k.npz", start="2018-01-01", freq="5min")
    assert read_series(tmp_path / "k.npz", key="x", start="2018-01-01", freq="5min").shape == (3, 2, 1)
    with pytest.raises(DataFormatError, match=r"array 'y' has shape \(2,\); expected \[T, N, C\]"):
        read_series(tmp_path / "k.npz", key="y", start="2018-01-01", freq="5min")
    blob = (tmp_path / "p.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.npz.*truncated or corrupted"):
        read_series(tmp_path / "cut.npz", start="2018-01-01", freq="5min")


# ------------------------------------------------------------ csv
def test_csv_with_timestamp_column(tmp_path):
    p = tmp_path / "hourly.csv"
    p.write_text("timestamp,717447,717446\n"
                 "2020-01-01 00:00:00,1.5,2\n"
                 "2020-01-01 01:00:00,,NA\n"
                 "2020-01-01T02:00:00Z,3,4.25\n")
    s = read_series(p)
    assert s.sensor_ids == ["717447", "717446"] and s.shape == (3, 2, 1)
    assert s.interval == np.timedelta64(1, "h")
    np.testing.assert_array_equal(s.values[:, :, 0], [[1.5, 2], [np.nan, np.nan], [3, 4.25]])
    assert np.isnan(s.null_value)  # a CSV carries no convention: empty cells are missing, zeros are not
    np.testing.assert_array_equal(read_series(p, null_value=0.0).values[:, :, 0], [[1.5, 2], [0, 0], [3, 4.25]])
    with pytest.raises(DataFormatError, match=r"first timestamp is 2020-01-01T00:00.*start='2021-01-01'"):
        read_series(p, start="2021-01-01")
    with pytest.raises(DataFormatError, match=r"interval is 1h but freq='5min'"):
        read_series(p, freq="5min")


def test_csv_detects_unnamed_date_column_and_offsets(tmp_path):
    p = tmp_path / "daily.csv"
    p.write_text(",a,b\n2020/1/1,1,2\n2020/1/2,3,4\n2020/1/3,5,6\n")
    s = read_series(p)
    assert s.sensor_ids == ["a", "b"] and s.interval == np.timedelta64(1, "D")
    assert s.timestamps[0] == np.datetime64("2020-01-01")
    q = tmp_path / "tz.csv"
    q.write_text("time;x\n2020-01-01T02:00+02:00;1\n2020-01-01T01:00:00+00:00;2\n")
    assert read_series(q).timestamps[1] == np.datetime64("2020-01-01T01:00")
    r = tmp_path / "weekly.csv"
    r.write_text("when,x\n2020-01-06,1\n2020-01-13,2\n")
    assert read_series(r, key="when").summary()["interval"] == "1W"


def test_csv_without_timestamps(tmp_path):
    p = tmp_path / "speed.csv"
    p.write_text("10,20,30\n1,2,3\n4,5,6\n")
    with pytest.raises(DataFormatError, match=r"speed\.csv.*no timestamp column.*pass start="):
        read_series(p)
    s = read_series(p, start="2020-01-01", freq="1h", channels=["speed"])
    assert s.sensor_ids == ["10", "20", "30"] and s.channels == ["speed"]
    assert s.timestamps[1] == np.datetime64("2020-01-01T01:00")
    np.testing.assert_array_equal(s.values[:, :, 0], [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("text,message", [
    ("a,b\n1,2\n3\n4,5\n", r"line 3 has 1 fields but the header \(line 1\) has 2"),
    ("a,b\n1,2\n\n3,abc\n", r"line 4, column 'b': 'abc' is not a number"),
    ("timestamp\n2020-01-01\n2020-01-02\n", r"no sensor columns"),
    ("time,a\n2020-01-01,1\nyesterday,2\n", r"line 3, column 'time': 'yesterday' is not a timestamp"),
    ("time,a\n2020-01-01,1\n2020-02-30,2\n", r"line 3, column 'time': '2020-02-30' is not a valid date"),
    ("1.5,2.5\n3.5,4.5\n", r"line 1 looks like data"),
    ("a,b\n", r"only a header line, no data rows"),
    ("\n \n", r"empty \(only blank lines\)"),
    ("a,,c\n1,2,3\n", r"column 2 has an empty header"),
])
def test_csv_errors(tmp_path, text, message):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataFormatError, match=r"bad\.csv.*" + message):
        read_series(p, start="2020-01-01", freq="1D")


# ------------------------------------------------------------ file-level errors
def test_missing_empty_truncated_and_unknown_files(tmp_path):
    with pytest.raises(MissingFileError, match=r"nope\.h5.*not found") as err:
        read_series(tmp_path / "nope.h5")
    assert isinstance(err.value, FileNotFoundError)
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"empty\.h5.*empty \(0 bytes\)"):
        read_series(tmp_path / "empty.h5")
    full = write_series(make_series(T=200, N=20), tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(full[: len(full) // 3])
    with pytest.raises(DataFormatError, match=r"cut\.h5.*not a readable HDF5 file.*truncated or corrupted"):
        read_series(tmp_path / "cut.h5")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    with pytest.raises(DataFormatError, match=r"blob\.bin.*unknown file format"):
        read_series(tmp_path / "blob.bin")
    with pytest.raises(DataFormatError, match=r"is a directory"):
        read_series(tmp_path)
    with pytest.raises(ConfigError, match=r"format='parquet' is unknown"):
        read_series(tmp_path / "full.h5", format="parquet")


def test_hdf5_layout_errors(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("speed", data=np.ones(3))
    with pytest.raises(DataFormatError, match=r"other\.h5.*no pandas frame.*holds \['speed'\]"):
        read_series(tmp_path / "other.h5")
    with h5py.File(tmp_path / "half.h5", "w") as f:
        f.create_dataset("values", data=np.ones((3, 2, 1)))
        f.create_dataset("sensor_ids", data=["a", "b"])
    with pytest.raises(DataFormatError, match=r"half\.h5.*lacks dataset\(s\) \['timestamps'\]"):
        read_series(tmp_path / "half.h5")


def test_write_series_errors(tmp_path):
    s = make_series()
    with pytest.raises(ConfigError, match=r"layout='csv' is unknown"):
        write_series(s, tmp_path / "x.h5", layout="csv")
    with pytest.raises(MissingFileError, match=re.escape(str(tmp_path / "no")) + r".*does not exist"):
        write_series(s, tmp_path / "no" / "x.h5")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


@pytest.mark.parametrize("transposed", [True, False])
def test_frame_blocks_are_copied_in_slices(tmp_path, transposed):
    from stgraph.io.hdf5_frame import copy_block
    block = np.arange(23 * 3, dtype=np.float64).reshape(23, 3)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        ds = f.create_dataset("v", data=block if transposed else block.T)
        out = np.full((23, 5), -1, dtype=np.float32)
        copy_block(ds, transposed, out, np.array([4, 0, 2]), cells_per_read=7)  # 2 rows a read
    np.testing.assert_array_equal(out[:, [4, 0, 2]], block)
    assert (out[:, [1, 3]] == -1).all()


def test_parse_interval_is_the_one_parser():
    from stgraph.errors import SeriesError
    from stgraph.io import format_interval, parse_interval

    sec = lambda text: int(parse_interval(text) / np.timedelta64(1, "s"))
    for text, want in [("5min", 300), ("5T", 300), ("5t", 300), ("5MIN", 300), (" 15 min ", 900), ("H", 3600),
                       ("1h", 3600), ("1d", 86400), ("1D", 86400), ("1W", 604800), ("300s", 300), ("30sec", 30)]:
        assert sec(text) == want, text
    for delta in (300, 3600, 86400, 604800, 90):
        assert sec(format_interval(np.timedelta64(delta, "s"))) == delta
    with pytest.raises(SeriesError, match="unknown unit 'M'"):
        parse_interval("1M")  # month or minute: refused
    with pytest.raises(SeriesError, match="unknown unit 'often'"):
        parse_interval("often")
    with pytest.raises(SeriesError, match="not understood"):
        parse_interval("5 min 3")
    with pytest.raises(SeriesError, match="zero"):
        parse_interval("0min")


def test_nan_to_null_and_the_value_checks_go_in_row_blocks():
    from stgraph.errors import SeriesError
    from stgraph.io.read import _nan_to_null
    from stgraph.io.series import Series

    v = np.arange(10 * 2 * 1, dtype=np.float32).reshape(10, 2, 1)
    v[[0, 4, 9], [1, 0, 1], 0] = np.nan
    want = np.where(np.isnan(v), np.float32(-1), v)
    got = _nan_to_null(v.copy(), np.float32(-1), rows=3)  # blocks of 3, 3, 3 and 1 rows
    np.testing.assert_array_equal(got, want)
    same = v.copy()
    assert _nan_to_null(same, np.float32(-1), rows=3) is same  # in place: no second array
    ro = v.copy()
    ro.flags.writeable = False
    out = _nan_to_null(ro, np.float32(-1), rows=3)  # a read-only array is not written to
    np.testing.assert_array_equal(out, want)
    assert np.isnan(ro[0, 1, 0])

    ts = np.datetime64("2012-03-01T00:00") + np.arange(10) * np.timedelta64(5, "m")
    bad = np.zeros((10, 2, 1), dtype=np.float32)
    bad[8, 1, 0] = np.inf  # past the first block of rows
    s = Series(np.zeros((10, 2, 1), dtype=np.float32), ts, ["a", "b"], ["v"], 0.0)
    s.values = bad
    with pytest.raises(SeriesError, match="infinite value at step 8, sensor 'b'"):
        s._check_all_values(False, rows=3)
    bad[8, 1, 0] = np.nan
    with pytest.raises(SeriesError, match="NaN at step 8, sensor 'b'"):
        s._check_all_values(False, rows=3)
    s._check_all_values(True, rows=3)  # NaN allowed when it is the null value


@pytest.mark.parametrize("code, named", [(32001, "HDF5 filter Blosc (id 32001)"), (32015, "Zstandard (id 32015)"),
                                         (40123, "(id 40123)")])
def test_unavailable_hdf5_filter_is_named_with_its_package_not_called_corrupt(tmp_path, code, named):
    """A chunk stored through a valid filter this h5py lacks is reported naming the filter and the package
    that provides it; the same pipeline whose chunks skipped the (optional) filter reads as usual."""
    import h5py

    from stgraph.errors import DataFormatError
    from stgraph.io import read_series

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("values", data=np.arange(40, dtype="f4").reshape(10, 4, 1), chunks=(5, 4, 1),
                         compression=code, allow_unknown_filter=True)
        f["timestamps"] = (np.arange(10) * 300 * 10**9).astype("i8")
        f["sensor_ids"] = np.array(["a", "b", "c", "d"], dtype=h5py.string_dtype())
    assert read_series(path).values.sum() == np.arange(40).sum()  # no chunk went through the filter
    before = path.read_bytes()
    with h5py.File(path, "a") as f:  # a chunk as a machine with the plugin wrote it
        f["values"].id.write_direct_chunk((0, 0, 0), b"\x02\x01" + bytes(100), filter_mask=0)
    with pytest.raises(DataFormatError) as e:
        read_series(path)
    msg = str(e.value)
    assert named in msg and "dataset '/values'" in msg and "not damaged" in msg and "corrupt" not in msg
    assert ("pip install hdf5plugin" in msg) == (code != 40123) and before != path.read_bytes()
