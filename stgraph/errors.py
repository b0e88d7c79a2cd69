"""The package's own exceptions.

Every error stgraph raises on bad input is one of these. They subclass the
builtin a caller would expect (``ValueError`` for bad content,
``FileNotFoundError`` for a missing file) so ``except ValueError`` keeps
working, and their message names the file or field, what was found and what
was expected.
"""
from __future__ import annotations


class StgraphError(Exception):
    """Base class of every error raised by stgraph on bad input."""


class DataFormatError(StgraphError, ValueError):
    """A data file has an unknown layout or inconsistent content."""


class BadRowError(DataFormatError):
    """One row of a table (a reports file's line, a request's record) is refused: ``row`` (its line or index)
    and ``reason`` (what is wrong with it), beside the full message."""

    def __init__(self, message: str, row: int, reason: str):
        super().__init__(message)
        self.row, self.reason = int(row), reason


class SeriesError(StgraphError, ValueError):
    """A sensor series is invalid (timestamps, shapes, values, length)."""


class GraphError(StgraphError, ValueError):
    """A road graph is invalid or does not match the series it serves."""


class ConfigError(StgraphError, ValueError):
    """A configuration value or key is invalid."""


class DownloadError(StgraphError, OSError):
    """A dataset file could not be downloaded or failed verification."""


class UnsafePickleError(StgraphError, ValueError):
    """A pickle asked to construct an object outside the allow-list."""


class MissingFileError(StgraphError, FileNotFoundError):
    """A required file is absent; the message says where to put it."""


class RunDirError(StgraphError, ValueError):
    """A run directory is missing, incomplete, damaged, in use or holds a different run."""


class ForeignFileError(RunDirError):
    """A file or folder stgraph did not write is where it would write: it is never replaced or deleted
    without ``force=True`` (``--force``); the message names it."""


class FederationError(StgraphError, RuntimeError):
    """A federated round cannot complete (too few valid client updates, a client lost): the server stops
    with this message, the last good global model kept."""


class RequestError(StgraphError, ValueError):
    """A request (to ``stgraph serve``, or of :func:`stgraph.explain.explain`) that cannot be answered: ``field``
    names the part of the request at fault (``values``, ``timestamps[3]``, ``sensors``, ``body``, ...) and
    ``status`` is the HTTP status it gets (422, 413, ...)."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.detail, self.status = field, message, status


class StgraphWarning(UserWarning):
    """Input stgraph accepts but that probably is not what the analyst meant
    (e.g. a sensor with no reading at all); the message says what to check."""


def where(path) -> str:
    """Format a path for an error message."""
    return f"'{path}'" if path is not None else "<in-memory>"


#: the longest message :func:`one_line` keeps
MAX_MESSAGE = 600


def one_line(e: BaseException, with_type: bool = True) -> str:
    """The exception as one line, at most :data:`MAX_MESSAGE` characters (how the CLI and the bench's
    table report a failure). ``with_type`` names the type of a ``MemoryError`` / ``RecursionError``."""
    if isinstance(e, OSError) and not isinstance(e, StgraphError) and e.filename is not None:
        msg = f"'{e.filename}': {e.strerror or e}"
    elif isinstance(e, KeyError) and not isinstance(e, StgraphError):
        msg = f"missing key {e}"
    else:
        msg = " ".join(str(e).split())
    msg = msg or type(e).__name__
    if isinstance(e, (MemoryError, RecursionError)) and with_type:
        msg = f"{type(e).__name__}: {msg}"
    if len(msg) > MAX_MESSAGE:
        msg = msg[:MAX_MESSAGE] + f" ... ({len(msg) - MAX_MESSAGE} more characters; --debug shows all)"
    return msg
