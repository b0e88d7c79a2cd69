"""Text cells of the CSV files stgraph writes, safe to open in a spreadsheet (OWASP's CSV-injection advice).

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before
one) as a formula: a sensor id ``=HYPERLINK(...)`` in a forecast would run when the file is opened. Every text
cell stgraph writes into a CSV goes through :func:`safe_cell`, which puts an apostrophe before such a cell
(and before a cell that already begins with one, so that the escape can be undone exactly); numbers are
written as they are. stgraph's CSV reader (:func:`stgraph.io.csv.read_rows`) undoes it with
:func:`read_cell`, so reading a file back gives the original text.
"""
from __future__ import annotations

#: first characters that make a spreadsheet read a cell as a formula (OWASP), and the escape itself
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def safe_cell(value):
    """``value`` for a CSV cell: a text beginning with one of :data:`FORMULA_STARTS` or with ``'`` gets a
    leading ``'``; anything else (numbers, other text) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS + (ESCAPE,)):
        return ESCAPE + value
    return value


def read_cell(text: str) -> str:
    """The text :func:`safe_cell` was given: one leading ``'`` removed."""
    return text[1:] if text.startswith(ESCAPE) else text
