"""Issue 26: short series handled honestly -- window counts per split, the split gap, evaluate's window note."""
from __future__ import annotations

import numpy as np
import pytest

from stgraph.cli.main import main
from stgraph.data import ForecastData
from stgraph.data.split import Split, apply_gap, make_split, split_by_ratio
from stgraph.errors import SeriesError
from stgraph.io.series import Series


def daily_series(days: int, n: int = 3, interval: str = "D") -> Series:
    t = np.datetime64("2020-03-01") + np.arange(days).astype(f"timedelta64[{interval}]")
    rng = np.random.default_rng(0)
    return Series(rng.poisson(5.0, (days, n, 1)).astype(np.float32), t.astype("datetime64[ns]"),
                  [f"r{i}" for i in range(n)], ["cases"], null_value=float("nan"))


def _rows(data, name):
    """``(first row, last row)`` of the windows of split ``name``."""
    s = np.asarray(data.split[name])
    return int(s.min()), int(s.max()) + data.input_len + data.horizon - 1


def test_window_counts_of_the_issue():
    """61 days with 7 in / 7 out: 48 windows, 34 / 4 / 10; 35 weeks with 4 in / 4 out: 28, 20 / 2 / 6."""
    d = ForecastData.from_series(daily_series(61), input_len=7, horizon=7)
    assert d.split.sizes() == {"train": 34, "val": 4, "test": 10}
    w = ForecastData.from_series(daily_series(35, interval="W"), input_len=4, horizon=4)
    assert w.split.sizes() == {"train": 20, "val": 2, "test": 6}
    # the published protocol (no gap): neighbouring splits share span - 1 = 13 rows at each boundary
    assert _rows(d, "train")[1] - _rows(d, "val")[0] + 1 == 13


def test_split_gap_leaves_no_shared_step():
    series = daily_series(61)
    for gap in (1, 3):
        d = ForecastData.from_series(series, input_len=7, horizon=7, split_gap=gap)
        ts = series.timestamps
        (_, train_end), (val_start, val_end), (test_start, _) = (_rows(d, n) for n in ("train", "val", "test"))
        # no row of one split in the next, and exactly `gap` days unused between them
        assert ts[val_start] - ts[train_end] == np.timedelta64(gap + 1, "D")
        assert ts[test_start] - ts[val_end] == np.timedelta64(gap + 1, "D")
        # the ratios share out what the boundaries leave: 48 - 2 * (14 + gap - 1) windows
        left = 48 - 2 * (13 + gap)
        sizes = d.split.sizes()
        assert sum(sizes.values()) == left and sizes["test"] == round(left * 0.2) and sizes["val"] >= 1
    assert ForecastData.from_series(series, input_len=7, horizon=7, split_gap=1).split.sizes() == \
        {"train": 14, "val": 2, "test": 4}
    with pytest.raises(SeriesError, match=r"data.split_gap = 30: the 48 windows leave none"):
        ForecastData.from_series(series, input_len=7, horizon=7, split_gap=30)


def test_gap_with_a_stride_and_with_time_boundaries():
    starts = np.arange(0, 100, 2)  # stride 2, span 10
    s = make_split((0.7, 0.1, 0.2), starts, None, 10, gap=2)
    assert s.val[0] - (s.train[-1] + 9) - 1 >= 2 and s.test[0] - (s.val[-1] + 9) - 1 >= 2
    assert s.val[0] - (s.train[-1] + 9) - 1 < 4  # no more windows dropped than the gap needs
    given = Split(np.array([0, 1, 2]), np.array([3, 4, 5, 6, 7]), np.array([8, 9, 10, 11, 12, 13]))
    got = apply_gap(given, 3, 1)  # last train row 4: val from row 6 on; last val row 9: test from 11 on
    assert got.val.tolist() == [6, 7] and got.test.tolist() == [11, 12, 13]
    assert apply_gap(given, 3, 0) is given
    assert make_split((0.7, 0.1, 0.2), starts, None, 10).sizes() == split_by_ratio(starts).sizes()


def test_train_and_evaluate_print_window_counts(tmp_path, capsys):
    csv = tmp_path / "cases.csv"
    s = daily_series(61)
    lines = ["timestamp," + ",".join(s.sensor_ids)]
    lines += [f"{str(t)[:10]}," + ",".join(str(int(v)) for v in row[:, 0]) for t, row in zip(s.timestamps, s.values)]
    csv.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    rc = main(["train", "--data", str(csv), "--model", "last", "--set", "data.input_len=7", "--set", "data.horizon=7",
               "--split-gap", "1", "--no-progress", "--out", str(run)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "windows: 14 train, 2 validation, 4 test (input 7 + horizon 7 steps each)" in out + err
    rc = main(["evaluate", str(run)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "windows: 14 train, 2 validation, 4 test (input 7 + horizon 7 steps each); scored: 4 test" in out
    assert "the test figures rest on only 4 windows (fewer than 30" in out + err
    import stgraph
    result = stgraph.evaluate(stgraph.open_run(run), "test", write=False)
    assert result["windows"] == 4 and "rest on only 4 windows" in result["windows_note"]
