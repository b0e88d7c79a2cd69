"""Edge tables read as the user meant them: :func:`read_edge_table`.

An edge table is a CSV (or rows in memory) with a source and a target column and, optionally, a weight,
a distance and a time column. Nothing in it is guessed beyond the plain cases:

* ``source,target`` (unweighted) and ``source,target,weight`` (or a headerless 2- or 3-column table) read
  as before; a ``distance``/``cost`` column is kept as the edge's distance;
* any other column (``date``, ``flow``, ``mode``, ...) is an error until the caller says which column is
  the weight (``weight_column='flow'``, ``--weight-column flow``) and what it means (``weights=`` one of
  :data:`EDGE_WEIGHTS`), and either names the time column (``time_column=``, a graph that changes over
  time) or says how rows that repeat a pair are combined (``aggregate=`` one of :data:`AGGREGATES`),
  which also lets the remaining columns go unread;
* a pair (with ``time_column``: a pair at one time) listed twice is an error unless ``aggregate`` is given:
  ``sum``, ``mean``, ``max`` or ``last`` (the last row in file order) of its weights (and distances).

What the weights mean is recorded, not applied here: :func:`~stgraph.graph.convert.edge_similarity` turns
them into the similarities in [0, 1] that models use (``flow``: ``log1p(flow) / log1p(largest flow)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataFormatError, GraphError, where
from .convert import WEIGHT_MEANINGS
from .nodes import table_ids
from .table import DIST_NAMES, FROM_NAMES, TO_NAMES, WEIGHT_NAMES, find_column, float_column, read_table, \
    rows_from_object

__all__ = ["EdgeTable", "read_edge_table", "AGGREGATES", "EDGE_WEIGHTS"]

#: how rows repeating a pair are combined (``--aggregate``)
AGGREGATES = ("sum", "mean", "max", "last")
#: what a weight column can mean (``--weights``): the meanings :func:`~stgraph.graph.convert.edge_similarity` knows
EDGE_WEIGHTS = WEIGHT_MEANINGS

_FLAGS = ("--weight-column COLUMN --weights similarity|distance|flow, and --aggregate sum|mean|max|last "
          "(API: weight_column=, weights=, aggregate=)")


@dataclass
class EdgeTable:
    """The edges of a table, one row per pair (per pair and time with a time column), in file order.

    Attributes:
        src, dst: ``[E]`` str sensor ids (spreadsheet escapes undone).
        weight: ``[E]`` float64 raw weights as in the file (aggregated), or ``None`` without a weight column.
        distance: ``[E]`` float64 distances (a ``distance``/``cost`` column), or ``None``.
        time: ``[E]`` str cells of the time column, or ``None``.
        meaning: what the weights mean (``similarity``, ``distance``, ``flow``) or ``None`` (undeclared).
        notes: what was done with each column, one sentence each (``graph build`` prints them).
        source: the file read, or ``None`` for rows given in memory.
    """

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray | None
    distance: np.ndarray | None
    time: np.ndarray | None
    meaning: str | None
    notes: list = field(default_factory=list)
    source: Path | None = None

    @property
    def ids(self) -> list[str]:
        """Sensor ids in order of first appearance (sources and targets interleaved, row by row)."""
        both = np.stack([self.src, self.dst], axis=1).reshape(-1)
        _, first = np.unique(both, return_index=True)
        return both[np.sort(first)].tolist()


def _first_rows(header: list[str] | None, cells: np.ndarray, rows: Any = None, limit: int = 3) -> str:
    """``header; row k: a,b,c; ...`` -- the named rows (0-based data rows, shown 1-based) or the first ones."""
    rows = list(range(min(limit, cells.shape[0]))) if rows is None else list(rows)[:limit]
    head = f"header {','.join(header)}; " if header is not None else ""
    return head + "; ".join(f"row {r + 1}: {','.join(map(str, cells[r].tolist()))}" for r in rows)


def _named(header: list[str] | None, name: str, flag: str, source: Any, cells: np.ndarray) -> int:
    if header is None:
        raise DataFormatError(f"{where(source)}: {flag} {name} names a column, but the table has no header "
                              f"({_first_rows(None, cells)}); expected a header line such as date,source,target,flow")
    if name.strip().lower() not in header:
        raise DataFormatError(f"{where(source)}: {flag} {name}: no such column; the header is {header}")
    return header.index(name.strip().lower())


def _check_choices(weights: str | None, aggregate: str | None, source: Any) -> None:
    if weights is not None and weights not in EDGE_WEIGHTS:
        raise DataFormatError(f"{where(source)}: weights={weights!r} (--weights); expected one of {list(EDGE_WEIGHTS)}")
    if aggregate is not None and aggregate not in AGGREGATES:
        raise DataFormatError(f"{where(source)}: aggregate={aggregate!r} (--aggregate); expected one of "
                              f"{list(AGGREGATES)}")


def _columns(header, cells, source, weight_column, weights, aggregate, time_column):
    """``(source col, target col, weight col, distance col, time col, notes)`` of the table."""
    ncol = cells.shape[1]
    sc, tc = find_column(header, FROM_NAMES, 0), find_column(header, TO_NAMES, 1)
    if ncol < 2 or sc is None or tc is None:
        raise DataFormatError(f"{where(source)}: edge table has columns {header or f'({ncol} unnamed)'}; expected "
                              f"a source and a target column, e.g. source,target,weight")
    if header is None:
        if weight_column or time_column:
            _named(None, weight_column or time_column, "--weight-column" if weight_column else "time column",
                   source, cells)
        if ncol > 3:
            raise DataFormatError(
                f"{where(source)}: edge table has {ncol} unnamed columns ({_first_rows(None, cells)}); expected "
                f"source,target[,weight]. Add a header naming the columns and say which one is the weight: {_FLAGS}")
        return sc, tc, (2 if ncol == 3 else None), None, None, []
    wc = (_named(header, weight_column, "--weight-column", source, cells) if weight_column
          else find_column(header, WEIGHT_NAMES, None))
    tmc = _named(header, time_column, "time column", source, cells) if time_column else None
    dc = next((k for k, h in enumerate(header) if h in DIST_NAMES and k not in (wc, tmc)), None)
    used = {sc, tc, wc, dc, tmc}
    unknown = [h for k, h in enumerate(header) if k not in used]
    if unknown and aggregate is None:
        named = [h for h in unknown if h not in ("date", "time", "timestamp", "datetime")] or unknown
        example = "--aggregate sum" if wc is not None else f"--weight-column {named[-1]} --weights flow --aggregate sum"
        timed = [h for h in unknown if "date" in h or "time" in h]
        raise DataFormatError(
            f"{where(source)}: column(s) {unknown} of the edge table are not read by default "
            f"({_first_rows(header, cells)}); say which column is the weight and what it means, and how rows that "
            f"repeat a pair are combined (over {unknown}): {_FLAGS}, e.g. {example}"
            + (f". With a time column ({timed[0]}) the file is also a graph that changes over time, which stgraph "
               f"train --graph reads as such (README 'Graphs that change over time')" if timed else ""))
    if weight_column and weights is None:
        raise DataFormatError(f"{where(source)}: --weight-column {weight_column} needs --weights "
                              f"similarity|distance|flow: what larger values of '{header[wc]}' mean")
    notes = [f"{header[sc]}: source", f"{header[tc]}: target"]
    notes += [f"{header[tmc]}: time of each edge (a graph per time)"] if tmc is not None else []
    notes += [f"{header[dc]}: edge distance"] if dc is not None else []
    notes += [f"{h}: not read (rows aggregated over it by {aggregate})" for h in unknown]
    return sc, tc, wc, dc, tmc, notes


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of equal ``keys`` ``[R]``: ``(first row [G] in file order, group of each row [R], rows per group [G])``."""
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order], rank[inverse.reshape(-1)], counts[order]


def _combine(values: np.ndarray, group: np.ndarray, counts: np.ndarray, how: str) -> np.ndarray:
    """``values`` ``[R]`` combined per group (``[G]``) by ``how`` (:data:`AGGREGATES`)."""
    g = counts.size
    if how in ("sum", "mean"):
        out = np.bincount(group, weights=values, minlength=g)
        return out / counts if how == "mean" else out
    if how == "max":
        out = np.full(g, -np.inf)
        np.maximum.at(out, group, values)
        return out
    last = np.zeros(g, dtype=np.int64)
    np.maximum.at(last, group, np.arange(values.size))
    return values[last]


def read_edge_table(edges: str | Path | Any, *, weight_column: str | None = None, weights: str | None = None,
                    aggregate: str | None = None, time_column: str | None = None) -> EdgeTable:
    """Read an edge table as the caller declared it (module doc: the rules).

    Args:
        edges: a CSV path (comma, tab or whitespace separated; header optional for 2-3 columns), a DataFrame,
            or ``[R, 2..3]`` rows ``(source, target[, weight])``.
        weight_column: the column holding the weight (default: one named ``weight``/``w``/``value``, else none:
            weights 1). Needs ``weights``.
        weights: what the weights mean: ``similarity`` (larger = closer), ``distance`` or ``flow`` (trips, counts:
            similarities after ``log1p`` and scaling to [0, 1], see :func:`~stgraph.graph.convert.edge_similarity`).
        aggregate: combine rows repeating a pair (at one time): ``sum``, ``mean``, ``max`` or ``last``; also lets
            columns other than source/target/weight/distance/time go unread.
        time_column: the column giving each row's time (a graph that changes over time): pairs are grouped
            per time; the cells are returned as text, unparsed.

    Returns:
        :class:`EdgeTable` with ``E`` rows (``[E]`` arrays); ``.ids`` the sensors in order of appearance.

    Raises:
        MissingFileError, DataFormatError: no file, unreadable, an undeclared extra column, non-numeric weights.
        GraphError: no rows, or a repeated pair without ``aggregate`` (the pair, its rows and the flag named).
    """
    if isinstance(edges, (str, Path)):
        source: Path | None = Path(edges)
        header, cells = read_table(source)
    else:
        source = None
        header, cells = rows_from_object(edges, source)
    _check_choices(weights, aggregate, source)
    if cells.ndim != 2 or cells.shape[0] == 0:
        raise GraphError(f"{where(source)}: edge list has no rows; expected at least one edge")
    sc, tc, wc, dc, tmc, notes = _columns(header, cells, source, weight_column, weights, aggregate, time_column)
    names = header or ["source", "target", "weight"]
    src, dst = table_ids(cells[:, sc]), table_ids(cells[:, tc])
    time = None if tmc is None else np.char.strip(cells[:, tmc].astype(str))
    weight = None if wc is None else float_column(cells[:, wc], names[wc], source)
    dist = None if dc is None else float_column(cells[:, dc], names[dc], source)
    _, codes = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = int(codes.max()) + 1
    keys = codes[:src.size].astype(np.int64) * n + codes[src.size:]
    if time is not None:
        keys = np.unique(time, return_inverse=True)[1].reshape(-1).astype(np.int64) * n * n + keys
    first, group, counts = _group(keys)
    if (counts > 1).any():
        if aggregate is None:
            g = int(np.nonzero(counts > 1)[0][0])
            rows = np.nonzero(group == g)[0]
            at = f" at time {str(time[rows[0]])!r}" if time is not None else ""
            raise GraphError(
                f"{where(source)}: pair {str(src[rows[0]])!r} -> {str(dst[rows[0]])!r}{at} is listed {rows.size} times "
                f"({_first_rows(header, cells, rows)}); {int((counts > 1).sum())} pairs repeat. Expected one row per "
                f"pair{' and time' if time is not None else ''}, or say how to combine them: --aggregate "
                f"sum|mean|max|last (API: aggregate=)")
        weight = None if weight is None else _combine(weight, group, counts, aggregate)
        dist = None if dist is None else _combine(dist, group, counts, aggregate)
        done = f" ({aggregate} over {int((counts > 1).sum())} repeated pairs)"
    else:
        weight, dist, done = (None if weight is None else weight[first]), (None if dist is None else dist[first]), ""
    if wc is not None:
        notes.insert(2, f"{names[wc]}: weight, {weights or 'undeclared'}{done}")
    elif done:
        notes.append(f"repeated pairs kept once{done}")
    return EdgeTable(src[first], dst[first], weight, dist, None if time is None else time[first], weights, notes,
                     source)
