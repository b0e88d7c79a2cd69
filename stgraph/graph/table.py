"""Small delimited text tables (graph files): parse them and pick columns.

:func:`read_table` reads a comma, tab or whitespace separated file of strings with an optional
header; :func:`find_column` and :func:`float_column` pick and parse its columns;
:func:`rows_from_object` takes the same rows from memory (a DataFrame or a 2-D array). The graph
builders (:mod:`.build`) and readers (:mod:`.io`) use them.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataFormatError, MissingFileError, where
from ..io.csv import sniff_delimiter

__all__ = ["read_table", "find_column", "float_column", "rows_from_object",
           "FROM_NAMES", "TO_NAMES", "DIST_NAMES", "WEIGHT_NAMES", "KNOWN_NAMES"]

# Column names recognised in table headers.
FROM_NAMES = ("from", "source", "src", "u", "start")
TO_NAMES = ("to", "target", "dst", "v", "end")
DIST_NAMES = ("cost", "distance", "dist", "length")
WEIGHT_NAMES = ("weight", "w", "value")
KNOWN_NAMES = set(FROM_NAMES + TO_NAMES + DIST_NAMES + WEIGHT_NAMES) | {
    "index", "sensor_id", "id", "latitude", "longitude", "lat", "lon", "lng",
}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_table(path: str | Path) -> tuple[list[str] | None, np.ndarray]:
    """Read a small delimited text table of strings.

    Comma, tab or whitespace separated (chosen from the first line by
    :func:`~stgraph.io.csv.sniff_delimiter`: a comma if there is one, else a tab, else whitespace); lines
    starting with ``#`` are comments. The first line is a header when one of
    its fields is a known column name (``from``, ``to``, ``cost``, ``source``,
    ``weight``, ``sensor_id``, ``latitude``, ...).

    Returns:
        ``(header, cells)``: lower-cased header names or ``None``, and an
        ``[rows, cols]`` array of stripped strings.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"{where(path)}: table not found; expected a CSV file here. Put the file at "
            "this path or pass the right one"
        )
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise DataFormatError(
            f"{where(path)}: is a binary file (first bytes {raw[:8]!r}), not a text table; expected a "
            "CSV such as from,to,cost or source,target,weight")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{where(path)}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); expected "
            "a UTF-8 CSV table. Save it as 'CSV UTF-8' or convert it (iconv -f CP1252 -t UTF-8)"
        ) from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataFormatError(f"{where(path)}: the table is empty; expected at least one row")
    first = lines[0]
    delim = sniff_delimiter(first, (",", "\t"), rule="first")  # a comma anywhere wins; neither: whitespace
    fields = [f.strip().strip('"').strip().lower() for f in (first.split(delim))]
    header = fields if any(f in KNOWN_NAMES for f in fields) else None
    body = lines[1:] if header is not None else lines
    if not body:
        return header, np.empty((0, len(fields)), dtype=str)
    try:
        cells = np.loadtxt(io.StringIO("\n".join(body)), dtype=str, delimiter=delim,
                           ndmin=2, comments=None, quotechar='"')
    except ValueError as exc:
        raise DataFormatError(
            f"{where(path)}: rows have different numbers of fields ({exc}); expected "
            f"{len(fields)} fields on every row like the first line {first!r}"
        ) from exc
    cells = np.char.strip(cells)
    if header is not None and cells.shape[1] != len(header):
        raise DataFormatError(
            f"{where(path)}: header has {len(header)} columns {header} but rows have "
            f"{cells.shape[1]}; expected the same number. Fix the header or the rows"
        )
    return header, cells


def find_column(header: list[str] | None, names: Sequence[str], default: int | None) -> int | None:
    """Index of the first of ``names`` in ``header`` (or ``default`` without a header)."""
    if header is None:
        return default
    for name in names:
        if name in header:
            return header.index(name)
    return None


def float_column(values: np.ndarray, field: str, source: Any) -> np.ndarray:
    """Parse a column as float64; DataFormatError naming the first bad cell."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.asarray(values, dtype=object)
        bad = [(k, v) for k, v in enumerate(arr.tolist()) if not _is_number(str(v))][:5]
        raise DataFormatError(
            f"{where(source)}: column '{field}' must hold numbers; found {bad} "
            "(row, value). Fix or remove those rows"
        ) from None


def rows_from_object(table: Any, source: Any) -> tuple[list[str] | None, np.ndarray]:
    """Rows given in memory: a DataFrame (header from its columns) or a 2-D array/list."""
    if hasattr(table, "columns") and hasattr(table, "to_numpy"):
        header = [str(c).strip().lower() for c in table.columns]
        return header, np.asarray(table.to_numpy(dtype=object), dtype=object)
    arr = np.asarray(table, dtype=object)
    if arr.ndim != 2:
        raise DataFormatError(
            f"{where(source)}: rows must form a 2-D table; got an array of shape {arr.shape}. "
            "Pass a list of (from, to, value) rows or a CSV path"
        )
    return None, arr
