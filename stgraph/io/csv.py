"""Wide CSV series: a header of sensor ids, one row per time step.

Layout::

    timestamp,773869,767541,...      <- header: optional time column + sensor ids
    2012-03-01 00:00:00,64.375,67.625,...

The time column is found by name (``timestamp``, ``time``, ``date``,
``datetime``, ``ts``, case-insensitive, or ``key=``), else the first column is
used when its values are ISO dates (``YYYY-MM-DD[ HH:MM[:SS[.fff]]][Z|+HH:MM]``,
``/`` also accepted; offsets are converted to naive UTC). Without one (e.g.
T-GCN's ``los_speed.csv``) the caller passes ``start``/``freq``. Empty cells
and ``nan``/``NA``/``null`` are missing readings (NaN). The delimiter is the
most frequent of ``,``, ``;`` and tab in the header line (:func:`sniff_delimiter`,
the one delimiter rule of the package: covariate files and graph tables use it too).

:func:`read_rows` (every non-blank row with its line number) and :func:`read_header` (the first
line's fields) are the CSV reader the other text formats (covariate files) go through.
"""
from __future__ import annotations

import csv as _csv
import io
import re
from pathlib import Path

import numpy as np

from ..cells import read_cell
from ..errors import DataFormatError, where
from .raw import RawTable

#: the delimiters a CSV may use, in the order ties are broken
DELIMITERS = (",", ";", "\t")
TIME_NAMES = {"timestamp", "timestamps", "time", "date", "datetime", "date_time", "ts"}
MISSING_TOKENS = ["", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"]
_TS = re.compile(
    r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?")
_DATA_LIKE = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")
_NS_MIN = np.datetime64("1677-09-22T00:00:00", "s")
_NS_MAX = np.datetime64("2262-04-11T00:00:00", "s")
NO_TIME = ("the CSV has no timestamp column (looked for a column named timestamp/time/date/datetime, "
           "or a first column of ISO dates)")


def parse_csv(path: str | Path, *, key: str | None = None) -> RawTable:
    """Parse a wide CSV into a :class:`RawTable` (values ``[T, N]``).

    Args:
        key: name of the timestamp column, when detection is not enough.

    Raises:
        DataFormatError: not UTF-8, no header or no data rows, ragged rows (the
            line number is given), text in a sensor column (line and column),
            unparseable timestamps, or no sensor columns.
    """
    rows, lines = read_rows(path)
    header = [h.strip() for h in rows[0]]
    if all(_DATA_LIKE.fullmatch(h) for h in header):
        raise DataFormatError(
            f"{where(path)}: line {lines[0]} looks like data ({header[:3]} ...), not a header of "
            f"sensor ids; add a first line with one sensor id per column")
    if len(rows) < 2:
        raise DataFormatError(f"{where(path)}: only a header line, no data rows; expected one row per time step")
    widths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    ragged = np.flatnonzero(widths != len(header))
    if ragged.size:
        i = int(ragged[0])
        raise DataFormatError(
            f"{where(path)}: line {lines[i]} has {widths[i]} fields but the header (line {lines[0]}) "
            f"has {len(header)}; every row needs one value per column. Fix or remove that line")
    cells = np.array(rows[1:], dtype=str)
    data_lines = np.asarray(lines[1:])

    tcol = _time_column(header, cells, key, path)
    sensor_cols = [j for j in range(len(header)) if j != tcol]
    if not sensor_cols:
        raise DataFormatError(
            f"{where(path)}: no sensor columns; the only column is the time column '{header[tcol]}'. "
            f"Expected a header of sensor ids, one column per sensor")
    empty = [j for j in sensor_cols if not header[j]]
    if empty:
        raise DataFormatError(
            f"{where(path)}: column {empty[0] + 1} has an empty header; expected a sensor id for "
            f"every sensor column")
    values = _numbers(cells[:, sensor_cols], data_lines, [header[j] for j in sensor_cols], path)
    if tcol is None:
        return RawTable(values, None, [header[j] for j in sensor_cols], no_time_reason=NO_TIME)
    timestamps = _timestamps(cells[:, tcol], data_lines, header[tcol], path)
    return RawTable(values, timestamps, [header[j] for j in sensor_cols])


def sniff_delimiter(line: str, candidates: tuple[str, ...] = DELIMITERS, *, rule: str = "most") -> str | None:
    """The delimiter of a delimited text file, told from one line (its first).

    Args:
        line: the line.
        candidates: the delimiters it may use, in order of preference.
        rule: ``"most"``: the candidate that occurs most often in ``line`` (the first candidate on a tie,
            also when none occurs); ``"first"``: the first candidate that occurs at all, ``None`` when none
            does (then the fields are separated by whitespace, as the graph tables allow).
    """
    if rule == "most":
        return max(candidates, key=line.count)
    if rule == "first":
        return next((d for d in candidates if d in line), None)
    raise ValueError(f"sniff_delimiter: rule={rule!r}; expected 'most' or 'first'")


def read_header(path) -> list[str]:
    """The fields of the first line of a CSV (``[]`` for an empty file), split by :func:`sniff_delimiter`.

    Raises:
        DataFormatError: the file is not UTF-8 text.
    """
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as fh:
            first = fh.readline()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{where(path)}: not UTF-8 text ({e}); save the CSV as UTF-8") from None
    return [read_cell(c) for c in next(_csv.reader(io.StringIO(first), delimiter=sniff_delimiter(first)), [])]


def read_rows(path) -> tuple[list[list[str]], list[int]]:
    """Non-blank rows of a CSV (the header first) and the line number each ends on; the delimiter is
    :func:`sniff_delimiter`'s on the first non-blank line.

    Raises:
        DataFormatError: not UTF-8, only blank lines or delimiters, or malformed CSV (the line is given).
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{where(path)}: not UTF-8 text ({exc}); save the CSV as UTF-8") from None
    first = next((ln for ln in text.splitlines() if ln.strip()), None)
    if first is None:
        raise DataFormatError(f"{where(path)}: the file is empty (only blank lines); expected a CSV "
                              f"with a header of sensor ids and one row per time step")
    delim = sniff_delimiter(first)
    reader = _csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    rows, lines = [], []
    try:
        for row in reader:
            if row and any(c.strip() for c in row):
                rows.append([read_cell(c) for c in row])  # the apostrophe of stgraph.cells.safe_cell
                lines.append(reader.line_num)
    except _csv.Error as exc:
        raise DataFormatError(f"{where(path)}: line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataFormatError(f"{where(path)}: every line is empty (only delimiters {delim!r}); expected a "
                              f"CSV with a header of sensor ids and one row per time step")
    return rows, lines


def _time_column(header: list[str], cells: np.ndarray, key, path) -> int | None:
    if key is not None:
        if key not in header:
            raise DataFormatError(
                f"{where(path)}: no column '{key}' (key=) in the header; columns are {header[:10]}"
                f"{' ...' if len(header) > 10 else ''}")
        return header.index(key)
    named = [j for j, h in enumerate(header) if h.lower() in TIME_NAMES]
    if len(named) > 1:
        raise DataFormatError(
            f"{where(path)}: several columns look like time columns {[header[j] for j in named]}; "
            f"pass key= to name the one to use")
    if named:
        return named[0]
    if _TS.fullmatch(cells[0, 0].strip()):
        return 0
    return None


def _numbers(cells: np.ndarray, lines: np.ndarray, names: list[str], path) -> np.ndarray:
    """``[T, N]`` float64; missing tokens become NaN."""
    cells = np.char.strip(cells)
    cells = np.where(np.isin(cells, MISSING_TOKENS), "nan", cells)
    try:
        return cells.astype(np.float64)
    except ValueError:
        pass
    for i, row in enumerate(cells):  # error path only: find the first bad cell
        for j, cell in enumerate(row):
            try:
                float(cell)
            except ValueError:
                raise DataFormatError(
                    f"{where(path)}: line {lines[i]}, column '{names[j]}': {str(cell)!r} is not a number; "
                    f"expected numeric readings (leave the cell empty or write nan for a missing one)"
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _timestamps(cells: np.ndarray, lines: np.ndarray, name: str, path) -> np.ndarray:
    """ISO-like strings -> ``datetime64[ns]`` (offsets applied, naive UTC)."""
    iso, offsets = [], np.zeros(len(cells), dtype=np.int64)
    for i, text in enumerate(cells):
        m = _TS.fullmatch(text.strip())
        if m is None:
            hint = " (numbers: write ISO dates instead)" if text.strip().lstrip("-").isdigit() else ""
            raise DataFormatError(
                f"{where(path)}: line {lines[i]}, column '{name}': {str(text)!r} is not a timestamp{hint}; "
                f"expected ISO 8601 like '2012-03-01 00:00:00'")
        y, mo, d, h, mi, s, frac, tz = m.groups()
        iso.append(f"{y}-{int(mo):02d}-{int(d):02d}T{int(h or 0):02d}:{mi or '00'}:{s or '00'}{frac or ''}")
        if tz and tz != "Z":
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            hh, mm = int(digits[:2]), int(digits[2:])
            if hh > 14 or mm > 59:
                raise DataFormatError(
                    f"{where(path)}: line {lines[i]}, column '{name}': {str(text)!r} has the UTC offset {tz}, "
                    f"which does not exist; expected an offset from -14:00 to +14:00 with minutes below 60")
            offsets[i] = sign * (hh * 60 + mm)
    try:
        secs = np.array(iso, dtype="datetime64[s]")
    except ValueError:
        secs = None
    if secs is not None:
        # datetime64[ns] holds 1677-09-21 .. 2262-04-11; numpy wraps other years silently
        out = (secs < _NS_MIN) | (secs > _NS_MAX)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise DataFormatError(
                f"{where(path)}: line {lines[i]}, column '{name}': {str(cells[i])!r} is outside the range of "
                f"timestamps stgraph handles (1677-09-22 to 2262-04-11, nanosecond precision); expected a real "
                f"measurement time")
    try:
        ts = np.array(iso, dtype="datetime64[ns]")
    except ValueError:
        for i, t in enumerate(iso):
            try:
                np.datetime64(t)
            except ValueError:
                raise DataFormatError(
                    f"{where(path)}: line {lines[i]}, column '{name}': {str(cells[i])!r} is not a valid "
                    f"date; expected ISO 8601 like '2012-03-01 00:00:00'") from None
        raise  # pragma: no cover
    return ts - offsets * np.timedelta64(60_000_000_000, "ns")
