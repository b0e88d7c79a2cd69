"""How an entry point shows the library's messages: one handler on the ``stgraph`` logger, for the length of
one command (the ``stgraph`` command, ``make demo``).

Library modules log through ``logging.getLogger(__name__)`` (children of ``stgraph``) and print nothing;
the command shows their messages: plain lines on stdout at INFO (``-v``: DEBUG, ``-q``: WARNING only),
warnings as ``warning: ...`` on stderr. With ``--json`` stdout holds the JSON alone: the messages go to
stderr, warnings only unless ``-v``.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager


class _CommandHandler(logging.Handler):
    """Messages below WARNING as plain lines on stdout (stderr with ``to_stderr``), warnings and errors as
    ``warning: ...`` / ``error: ...`` on stderr. The streams are looked up at each message, so a swapped
    ``sys.stdout`` (pytest's capture, a redirect) gets them."""

    def __init__(self, to_stderr: bool = False, rewrite=None) -> None:
        super().__init__()
        self.to_stderr = to_stderr
        self.rewrite = rewrite or (lambda message: message)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.rewrite(record.getMessage())
            if record.levelno >= logging.WARNING:
                stream, msg = sys.stderr, f"{'error' if record.levelno >= logging.ERROR else 'warning'}: {msg}"
            else:
                stream = sys.stderr if self.to_stderr else sys.stdout
            stream.write(msg + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: a failed message never fails the command
            self.handleError(record)


def level_of(verbose: bool, quiet: bool, as_json: bool) -> int:
    """``-v``: DEBUG; ``-q``: WARNING; ``--json`` alone: WARNING (stdout is the JSON's); else INFO."""
    if verbose:
        return logging.DEBUG
    if quiet or as_json:
        return logging.WARNING
    return logging.INFO


@contextmanager
def show_messages(*, verbose: bool = False, quiet: bool = False, as_json: bool = False, rewrite=None):
    """Show the ``stgraph`` logger's messages while the ``with`` block runs; afterwards the logger is as it was
    (a Python caller of an entry point keeps its own logging). ``rewrite(message)``: the text shown (the
    command says ``--resume`` where the library says ``resume=True``)."""
    logger = logging.getLogger("stgraph")
    handler = _CommandHandler(to_stderr=as_json, rewrite=rewrite)
    level = level_of(verbose, quiet, as_json)
    handler.setLevel(level)
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
